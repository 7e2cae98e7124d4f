"""Operator tool layer: what AWS checks on its own behalf beside a call's IAM action, one table row per documented rule.

No recorded call shows these: AWS makes them while it serves the call (Application Auto Scaling
probing its caller's permissions, CloudWatch hiding composite alarms, a service-linked role
created on first use). tests/iam adds each row's requirements to the call's authorizations, so a
policy that lacks one fails the lifecycle test as the call would fail on AWS, and the grant counts
as used; `esdeploy doctor` simulates them for a deployed role. A rule belongs here only with the
documentation that says so (`source`), never as a special case in a test.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Params = Mapping[str, Any]

# The service-linked role Application Auto Scaling uses for SageMaker variants (Application Auto
# Scaling user guide, "Amazon SageMaker AI and Application Auto Scaling": role name and principal).
SAGEMAKER_SCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
SAGEMAKER_SCALING_ROLE = "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
SAGEMAKER_SCALING_ROLE_ARN = (
    f"arn:${{Partition}}:iam::${{Account}}:role/aws-service-role/{SAGEMAKER_SCALING_SERVICE}/{SAGEMAKER_SCALING_ROLE}"
)

_AAS_GUIDE = "https://docs.aws.amazon.com/autoscaling/application/userguide"
_CLOUDWATCH_API = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference"


@dataclass(frozen=True)
class Requirement:
    """One authorization AWS makes of the caller: `resource` is "*" or an ARN with ${Partition},
    ${Region}, ${Account}; `context` holds the (lower-case) keys AWS puts in that request."""

    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def filled(self, partition: str, region: str, account: str) -> Requirement:
        resource = (
            self.resource.replace("${Partition}", partition).replace("${Region}", region).replace("${Account}", account)
        )
        return Requirement(self.action, resource, self.context)


@dataclass(frozen=True)
class OwnCheck:
    """A check AWS makes while it serves `operations` of `service` (an IAM prefix), when `applies`."""

    name: str
    service: str
    operations: frozenset[str]
    applies: Callable[[Params], bool]
    requires: tuple[Requirement, ...]
    why: str  # one line for a person: what AWS does and what a denial breaks
    source: str  # where AWS documents it
    denied_as: str  # the error code the caller gets when the check denies
    # Made only while this role does not exist (an ARN with ${Partition}, ${Account}).
    unless_role_exists: str | None = None


def _target_service(namespace: str) -> Callable[[Params], bool]:
    return lambda params: params.get("ServiceNamespace") == namespace


def _asks_for_composite_alarms(params: Params) -> bool:
    # DescribeAlarms returns metric alarms only unless AlarmTypes names CompositeAlarm (API reference).
    return "CompositeAlarm" in (params.get("AlarmTypes") or ())


# Application Auto Scaling user guide, "Permissions required for API actions on target services and
# CloudWatch": what the caller of its API must hold, per target service, all on "*". Only the
# target services esdeploy scales are listed; add a row (with its section) before scaling another.
_CLOUDWATCH_FOR_SCALING = ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms")
TARGET_SERVICE_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "sagemaker": (
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:UpdateEndpointWeightsAndCapacities",
        *_CLOUDWATCH_FOR_SCALING,
    ),
}


def _scaling_validation(namespace: str, actions: tuple[str, ...]) -> OwnCheck:
    return OwnCheck(
        name=f"application-autoscaling-validates-its-caller:{namespace}",
        service="application-autoscaling",
        # The validation page details RegisterScalableTarget and opens with "API actions" in general;
        # the identity-based policy page requires these to configure scaling (register, put a policy).
        # Not modelled: DeregisterScalableTarget / DeleteScalingPolicy, for which nothing is documented.
        operations=frozenset({"RegisterScalableTarget", "PutScalingPolicy"}),
        applies=_target_service(namespace),
        requires=tuple(Requirement(action, "*") for action in actions),
        why=(
            f"Application Auto Scaling checks that its caller may itself use the {namespace} and CloudWatch "
            "actions it will use, on \"*\", and fails the request with ValidationException otherwise"
        ),
        source=(
            f"{_AAS_GUIDE}/security_iam_id-based-policy-examples.html#application-auto-scaling-additional-permissions"
            f" ({namespace}); {_AAS_GUIDE}/security_iam_permission_validation.html; "
            "https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-prerequisites.html"
        ),
        denied_as="ValidationException",
    )


OWN_CHECKS: tuple[OwnCheck, ...] = (
    *(_scaling_validation(namespace, actions) for namespace, actions in TARGET_SERVICE_PERMISSIONS.items()),
    OwnCheck(
        name="describe-alarms-composite-needs-star",
        service="cloudwatch",
        operations=frozenset({"DescribeAlarms"}),
        applies=_asks_for_composite_alarms,
        requires=(Requirement("cloudwatch:DescribeAlarms", "*"),),
        why=(
            "CloudWatch returns composite alarms only to a caller whose cloudwatch:DescribeAlarms is scoped "
            "to \"*\"; a narrower scope (alarm:*) is refused with AccessDenied"
        ),
        source=(
            f"{_CLOUDWATCH_API}/API_DescribeAlarms.html; "
            "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/permissions-reference-cw.html "
            "(cloudwatch:DescribeAlarms); seen as AccessDenied in cdklabs/cdk-enterprise-iac#202"
        ),
        denied_as="AccessDenied",
    ),
    OwnCheck(
        name="application-autoscaling-creates-its-sagemaker-role",
        service="application-autoscaling",
        operations=frozenset({"RegisterScalableTarget"}),
        applies=_target_service("sagemaker"),
        requires=(
            Requirement(
                "iam:CreateServiceLinkedRole",
                SAGEMAKER_SCALING_ROLE_ARN,
                {"iam:awsservicename": (SAGEMAKER_SCALING_SERVICE,)},
            ),
        ),
        why=(
            f"the first RegisterScalableTarget for SageMaker in an account creates {SAGEMAKER_SCALING_ROLE}; "
            "the caller needs iam:CreateServiceLinkedRole for it (iam:AWSServiceName "
            f"{SAGEMAKER_SCALING_SERVICE}) until the role exists"
        ),
        source=(
            f"{_AAS_GUIDE}/application-auto-scaling-service-linked-roles.html#create-service-linked-role-permissions; "
            f"{_AAS_GUIDE}/services-that-can-integrate-sagemaker.html"
        ),
        denied_as="AccessDeniedException",
        unless_role_exists=SAGEMAKER_SCALING_ROLE_ARN,
    ),
)


def own_checks(service: str, operation: str, params: Params) -> list[OwnCheck]:
    """The rows AWS applies to one call (`service` is the IAM prefix, e.g. "cloudwatch")."""
    return [
        check for check in OWN_CHECKS
        if check.service == service and operation in check.operations and check.applies(params)
    ]


def by_name(name: str) -> OwnCheck:
    for check in OWN_CHECKS:
        if check.name == name:
            return check
    raise KeyError(name)
