"""Adapters: CloudWatch's wire shapes, defined once — esdeploy's alarms on a variant and the alarm state-change event.

The CloudWatch adapter speaks them to AWS; the local stack's alarm stand-in, the fakes and the
scenario harness import them from here, so that what a stand-in says is what CloudWatch says.
No boto3 here.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.adapters.eventbridge import event_envelope
from chalicelib.adapters.sagemaker_shapes import (
    MANAGED_BY,
    PRODUCTION_VARIANT,
    TAG_MANAGED_BY,
    TAG_MODEL_ID,
    TAG_TASK_ID,
)
from chalicelib.domain.messages import AlarmChanged
from chalicelib.domain.models import AlarmState
from chalicelib.domain.names import variant_alarm_names
from chalicelib.ports import VariantAlarms

# EventBridge's detail-type and source for CloudWatch alarm state changes (documented example:
# detail.alarmName, detail.state.value/reason/timestamp, detail.previousState).
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
EVENT_SOURCE = "aws.cloudwatch"
SAGEMAKER_NAMESPACE = "AWS/SageMaker"
PERIOD_SECONDS = 60
# ModelLatency is reported in microseconds.
MICROSECONDS_PER_MS = 1000


def variant_alarm_requests(alarms: VariantAlarms) -> list[dict[str, Any]]:
    """The PutMetricAlarm requests of a variant's two alarms (docs/api.md, "esdeploy's alarms")."""
    variant = alarms.variant
    errors_name, latency_name = variant_alarm_names(variant)
    common: dict[str, Any] = {
        "Namespace": SAGEMAKER_NAMESPACE,
        "Dimensions": [
            {"Name": "EndpointName", "Value": variant},
            {"Name": "VariantName", "Value": PRODUCTION_VARIANT},
        ],
        "Period": PERIOD_SECONDS,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        # No data is no traffic, not a fault: a quiet model must not roll back.
        "TreatMissingData": "notBreaching",
        "ActionsEnabled": False,
        "Tags": [
            {"Key": TAG_MANAGED_BY, "Value": MANAGED_BY},
            {"Key": TAG_MODEL_ID, "Value": alarms.embedding_model_id},
            {"Key": TAG_TASK_ID, "Value": alarms.task_id},
        ],
    }
    watched = (
        f"esdeploy watches it during the bake of {variant} (model {alarms.embedding_model_id}) "
        f"and deletes it with {variant}"
    )
    thresholds = alarms.thresholds
    return [
        {
            **common,
            "AlarmName": errors_name,
            "AlarmDescription": f"5XX invocation errors of {variant} over "
            f"{thresholds.max_5xx_errors_per_minute} a minute; {watched}",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "Threshold": float(thresholds.max_5xx_errors_per_minute),
        },
        {
            **common,
            "AlarmName": latency_name,
            "AlarmDescription": f"average model latency of {variant} over "
            f"{thresholds.max_model_latency_ms} ms in a minute; {watched}",
            "MetricName": "ModelLatency",
            "Statistic": "Average",
            "Threshold": float(thresholds.max_model_latency_ms * MICROSECONDS_PER_MS),
        },
    ]


def alarm_state_change(
    alarm_name: str,
    state: AlarmState | str,
    reason: str,
    at: datetime,
    account: str,
    region: str,
    previous: AlarmState | str = AlarmState.OK,
) -> dict[str, Any]:
    """The EventBridge event CloudWatch sends when `alarm_name` goes to `state`, as AWS documents it."""
    stamp = at.astimezone(UTC)
    when = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"
    return event_envelope(
        detail_type=ALARM_STATE_CHANGE,
        source=EVENT_SOURCE,
        account=account,
        region=region,
        at=stamp,
        resources=[f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_name}"],
        detail={
            "alarmName": alarm_name,
            "state": {"value": str(state), "reason": reason, "timestamp": when},
            "previousState": {"value": str(previous), "reason": "", "timestamp": when},
            "configuration": {"description": ""},
        },
    )


def is_alarm_state_change(body: Mapping[str, Any]) -> bool:
    return body.get("detail-type") == ALARM_STATE_CHANGE and body.get("source") == EVENT_SOURCE


def read_alarm_state_change(body: Mapping[str, Any]) -> AlarmChanged | None:
    """The event as a domain message; None when it has no alarm name or no known state."""
    detail = body.get("detail")
    if not isinstance(detail, Mapping):
        return None
    name = detail.get("alarmName")
    state = detail.get("state")
    if not isinstance(name, str) or not name or not isinstance(state, Mapping):
        return None
    try:
        value = AlarmState(str(state.get("value")))
    except ValueError:
        return None
    reason = state.get("reason")
    return AlarmChanged(
        alarm_name=name,
        state=value,
        reason=reason if isinstance(reason, str) else "",
        at=_timestamp(state.get("timestamp")),
    )


def _timestamp(text: Any) -> datetime | None:
    """CloudWatch writes `2026-12-02T03:10:00.000+0000`; anything else is no time at all."""
    if not isinstance(text, str):
        return None
    for layout in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(text, layout).astimezone(UTC)
        except ValueError:
            continue
    return None
