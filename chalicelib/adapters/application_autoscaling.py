"""Adapters: the Scaling port on Application Auto Scaling (target tracking on a SageMaker variant)."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import AwsCalls, error_code, error_message
from chalicelib.adapters.sagemaker_shapes import PRODUCTION_VARIANT
from chalicelib.domain.errors import RetryableError, TerminalHostingError
from chalicelib.domain.models import ScalingPolicy

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
# Scale in slowly (an embedding backlog comes back), out quickly.
SCALE_IN_COOLDOWN_SECONDS = 300
SCALE_OUT_COOLDOWN_SECONDS = 60


# Not refusals but "not now"; the service model gives them no 5xx status and no throttling code, so the
# generic classifier would read them as refusals and end the deploy.
# Every call we make may answer them (API reference, "Errors" of RegisterScalableTarget,
# PutScalingPolicy, Describe*, Delete*, Deregister*:
# https://docs.aws.amazon.com/autoscaling/application/APIReference/API_RegisterScalableTarget.html):
# ConcurrentUpdateException while another update of the same scalable target is pending (two
# deliveries of one swap step racing, or ours meeting a scaling activity); InternalServiceException
# for the service's own fault. Retried: SQS redelivers the step, which is safe to run twice.
TRANSIENT_AUTOSCALING_CODES = frozenset({"ConcurrentUpdateException", "InternalServiceException"})


def _refusal(exc: Exception, doing: str) -> Exception:
    if isinstance(exc, ClientError) and error_code(exc) in TRANSIENT_AUTOSCALING_CODES:
        return RetryableError(
            f"Application Auto Scaling is busy ({error_code(exc)}) while trying to {doing}: {error_message(exc)}"
        )
    if isinstance(exc, ClientError):
        return TerminalHostingError(
            f"Application Auto Scaling refused to {doing}: {error_message(exc)} ({error_code(exc)}). "
            "Check config.autoscaling and that the deploy worker may register scalable targets"
        )
    return exc


_autoscaling = AwsCalls("Application Auto Scaling", refuse=_refusal)


def _gone(exc: ClientError) -> bool:
    # AWS says ObjectNotFoundException; moto a ValidationException "No scalable target found".
    return error_code(exc) == "ObjectNotFoundException" or "No scalable target" in error_message(exc)


def resource_id(variant: str) -> str:
    return f"endpoint/{variant}/variant/{PRODUCTION_VARIANT}"


def policy_name(variant: str) -> str:
    return f"{variant}-invocations-per-instance"


class ApplicationAutoScaling:
    def __init__(self, client: Any) -> None:
        self._client = client

    def policy_of(self, variant: str) -> ScalingPolicy | None:
        where = {"ServiceNamespace": NAMESPACE, "ScalableDimension": DIMENSION}
        targets = _autoscaling(
            f"read the scalable target of {variant}",
            lambda: self._client.describe_scalable_targets(**where, ResourceIds=[resource_id(variant)]),
        ).get("ScalableTargets", [])
        if not targets:
            return None
        policies = _autoscaling(
            f"read the scaling policies of {variant}",
            lambda: self._client.describe_scaling_policies(**where, ResourceId=resource_id(variant)),
        ).get("ScalingPolicies", [])
        for policy in policies:
            tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
            metric = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
            if policy.get("PolicyType") == "TargetTrackingScaling" and metric == METRIC:
                return ScalingPolicy(
                    min_instances=int(targets[0]["MinCapacity"]),
                    max_instances=int(targets[0]["MaxCapacity"]),
                    target_invocations_per_instance=round(float(tracking["TargetValue"])),
                )
        return None

    def apply(self, variant: str, policy: ScalingPolicy) -> None:
        where = {"ServiceNamespace": NAMESPACE, "ResourceId": resource_id(variant), "ScalableDimension": DIMENSION}
        _autoscaling(
            f"register {variant} as a scalable target",
            lambda: self._client.register_scalable_target(
                **where, MinCapacity=policy.min_instances, MaxCapacity=policy.max_instances
            ),
        )
        _autoscaling(
            f"put the target-tracking policy on {variant}",
            lambda: self._client.put_scaling_policy(
                **where,
                PolicyName=policy_name(variant),
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": float(policy.target_invocations_per_instance),
                    "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
                    "ScaleInCooldown": SCALE_IN_COOLDOWN_SECONDS,
                    "ScaleOutCooldown": SCALE_OUT_COOLDOWN_SECONDS,
                },
            ),
        )

    def remove(self, variant: str) -> None:
        where = {"ServiceNamespace": NAMESPACE, "ResourceId": resource_id(variant), "ScalableDimension": DIMENSION}
        # The policy first: AWS drops it with the target, moto does not.
        _autoscaling(
            f"delete the scaling policy of {variant}",
            lambda: self._client.delete_scaling_policy(**where, PolicyName=policy_name(variant)),
            tolerate=_gone_policy,
        )
        _autoscaling(
            f"deregister {variant} as a scalable target",
            lambda: self._client.deregister_scalable_target(**where),
            tolerate=_gone,
        )


def _gone_policy(exc: ClientError) -> bool:
    return _gone(exc) or "No scaling policy found" in error_message(exc)
