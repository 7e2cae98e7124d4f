"""What AWS checks on its own (esdeploy/iam/aws_checks.py) joins a call's authorizations, and our policies pass it.

Each rule is a row with its documentation; these cases show each row turning a call into the
requirements AWS makes, a policy of the old shape denied by it, and the shipped policy allowing it.
"""
from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib import wiring
from esdeploy.iam.aws_checks import (
    OWN_CHECKS,
    SAGEMAKER_SCALING_ROLE,
    SAGEMAKER_SCALING_SERVICE,
    TARGET_SERVICE_PERMISSIONS,
    own_checks,
)
from esdeploy.iam.evaluation import Statement, evaluate
from tests.iam import recorder as recorder_module
from tests.iam.calls import UNKNOWN, ApiCall, Authorization, Unknown, authorizations, privilege
from tests.iam.policies import StackValues, function_policy
from tests.iam.recorder import Recorder, running_function

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE_ARN = (f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/{SAGEMAKER_SCALING_SERVICE}/{SAGEMAKER_SCALING_ROLE}")
VARIANT = "endpoint/esd-m1-00000000-11111111/variant/AllTraffic"
REGISTER = {"ServiceNamespace": "sagemaker", "ResourceId": VARIANT,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "MinCapacity": 1, "MaxCapacity": 2}


class Facts:
    def __init__(self, roles: set[str] | None = None) -> None:
        self.roles = roles or set()

    def tags(self, service: str, resource_type: str, arn: str) -> dict[str, str] | Unknown | None:
        return UNKNOWN

    def exists(self, service: str, resource_type: str, arn: str) -> bool | Unknown:
        return arn in self.roles if service == "iam" else UNKNOWN


def checks_of(operation: str, signing_name: str, facts: Facts | None = None, **params: Any) -> list[Authorization]:
    call = ApiCall("deploy_worker", signing_name, operation, params, REGION, ACCOUNT)
    return [a for a in authorizations(call, facts or Facts()) if a.aws_check]


def shown(found: list[Authorization]) -> set[tuple[str, str]]:
    return {(a.request.action, a.request.resource) for a in found}


def test_every_rule_names_its_documentation_and_real_iam_actions() -> None:
    assert OWN_CHECKS
    for check in OWN_CHECKS:
        assert "https://docs.aws.amazon.com/" in check.source, check.name
        assert check.why and check.denied_as and check.operations, check.name
        for requirement in check.requires:
            privilege(*requirement.action.split(":", 1))  # policy_sentry knows it, or CannotEvaluateError


def test_application_auto_scaling_validates_its_caller_for_the_sagemaker_target() -> None:
    """The documented list for SageMaker endpoints, on "*", on register and on put-policy alike."""
    expected = {(action, "*") for action in TARGET_SERVICE_PERMISSIONS["sagemaker"]}
    assert expected == {
        ("sagemaker:DescribeEndpoint", "*"), ("sagemaker:DescribeEndpointConfig", "*"),
        ("sagemaker:UpdateEndpointWeightsAndCapacities", "*"), ("cloudwatch:DescribeAlarms", "*"),
        ("cloudwatch:PutMetricAlarm", "*"), ("cloudwatch:DeleteAlarms", "*"),
    }
    role_there = Facts({ROLE_ARN})
    assert shown(checks_of("RegisterScalableTarget", "application-autoscaling", role_there, **REGISTER)) == expected
    policy = {k: REGISTER[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension")}
    assert shown(checks_of("PutScalingPolicy", "application-autoscaling", role_there, PolicyName="p",
                           **policy)) == expected
    found = checks_of("RegisterScalableTarget", "application-autoscaling", role_there, **REGISTER)
    assert {a.denied_as for a in found} == {"ValidationException"}
    # Nothing is documented for taking scaling down, and no other target service is ours.
    assert checks_of("DeregisterScalableTarget", "application-autoscaling", **policy) == []
    assert own_checks("application-autoscaling", "RegisterScalableTarget", {"ServiceNamespace": "ecs"}) == []


def test_the_first_registration_may_create_the_service_linked_role_and_later_ones_need_not() -> None:
    missing = checks_of("RegisterScalableTarget", "application-autoscaling", Facts(), **REGISTER)
    (create,) = [a for a in missing if a.request.action == "iam:CreateServiceLinkedRole"]
    assert create.request.resource == ROLE_ARN
    assert create.request.values("iam:AWSServiceName") == (SAGEMAKER_SCALING_SERVICE,)
    there = checks_of("RegisterScalableTarget", "application-autoscaling", Facts({ROLE_ARN}), **REGISTER)
    assert "iam:CreateServiceLinkedRole" not in {a.request.action for a in there}


def test_describing_composite_alarms_needs_describe_alarms_on_star() -> None:
    both = ["MetricAlarm", "CompositeAlarm"]
    composite = checks_of("DescribeAlarms", "monitoring", AlarmNames=["a"], AlarmTypes=both)
    assert shown(composite) == {("cloudwatch:DescribeAlarms", "*")}
    assert checks_of("DescribeAlarms", "monitoring", AlarmNames=["a"], AlarmTypes=["MetricAlarm"]) == []
    assert checks_of("DescribeAlarms", "monitoring", AlarmNames=["a"]) == []


def test_narrower_grants_of_the_old_policy_are_denied_and_the_deploy_worker_is_allowed() -> None:
    """The shapes infra/iam/deploy-worker.json had before (alarm:*, our prefix, no CreateServiceLinkedRole)
    fail each rule; the shipped policy passes every requirement its calls trigger."""
    old = Statement.from_document("old.json", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "cloudwatch:DescribeAlarms",
         "Resource": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:*"},
        {"Effect": "Allow", "Action": ["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig"],
         "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/esd-*"},
    ]})
    values = StackValues(
        region=REGION, account=ACCOUNT, stage="dev", resource_prefix="esd", artifact_bucket="b",
        artifact_prefix="models", ssm_prefix="/esdeploy/dev", sagemaker_role_arn=f"arn:aws:iam::{ACCOUNT}:role/x",
        default_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0",
    )
    shipped, sources = function_policy("deploy_worker", values)
    triggered = [
        *checks_of("RegisterScalableTarget", "application-autoscaling", **REGISTER),
        *checks_of("DescribeAlarms", "monitoring", AlarmNames=["a"], AlarmTypes=["CompositeAlarm"]),
    ]
    assert {a.aws_check for a in triggered} == {check.name for check in OWN_CHECKS}
    assert [a.request.action for a in triggered if evaluate(old, a.request).allowed] == []
    denied = [evaluate(shipped, a.request, sources).explain() for a in triggered
              if not evaluate(shipped, a.request, sources).allowed]
    assert denied == []


def test_a_denied_validation_fails_the_call_as_application_auto_scaling_does(
    aws_adapters: wiring.Adapters, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not AccessDenied: Application Auto Scaling answers ValidationException naming the permission,
    which the adapter turns into a task that fails with that detail (not a retry into the DLQ)."""
    real = recorder_module.function_policy

    def without_the_validation_grants(function: str, values: StackValues) -> Any:
        statements, sources = real(function, values)
        kept = tuple(s for s in statements if not s.where.endswith("#ApplicationAutoScalingChecksItsCaller"))
        assert len(kept) == len(statements) - 1
        return kept, sources

    monkeypatch.setattr(recorder_module, "function_policy", without_the_validation_grants)
    scaling = boto3.client("application-autoscaling", region_name=REGION)
    token = running_function.set("deploy_worker")
    try:
        with Recorder().installed() as recorder, pytest.raises(ClientError) as raised:
            scaling.register_scalable_target(**REGISTER)
    finally:
        running_function.reset(token)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    report = recorder.take_report()
    assert report is not None and "application-autoscaling-validates-its-caller:sagemaker" in report
    assert "security_iam_permission_validation" in report

