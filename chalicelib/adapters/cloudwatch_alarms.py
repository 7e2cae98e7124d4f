"""Adapters: the Alarms port on CloudWatch (esdeploy's two metric alarms per variant, and reading any alarm)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import AwsCalls, as_is, error_code, error_message
from chalicelib.adapters.cloudwatch_shapes import variant_alarm_requests
from chalicelib.domain.errors import TerminalHostingError
from chalicelib.domain.models import AlarmReading, AlarmState
from chalicelib.domain.names import variant_alarm_names
from chalicelib.ports import VariantAlarms

# DescribeAlarms takes at most 100 names a request; a deploy watches 12 at most.
DESCRIBE_MAX_NAMES = 100


def _refusal(exc: Exception, doing: str) -> Exception:
    if isinstance(exc, ClientError):
        return TerminalHostingError(
            f"CloudWatch refused to {doing}: {error_message(exc)} ({error_code(exc)}). "
            "Check that the deploy worker may put and describe alarms (docs/infra.md)"
        )
    return exc


_cloudwatch = AwsCalls("CloudWatch", refuse=_refusal)


class CloudWatchAlarms:
    def __init__(self, client: Any) -> None:
        self._client = client

    def put_variant_alarms(self, alarms: VariantAlarms) -> tuple[str, ...]:
        names = []
        for request in variant_alarm_requests(alarms):
            self._put(request)
            names.append(request["AlarmName"])
        return tuple(names)

    def _put(self, request: dict[str, Any]) -> None:
        _cloudwatch(f"create alarm {request['AlarmName']}", lambda: self._client.put_metric_alarm(**request))

    def read(self, names: tuple[str, ...]) -> dict[str, AlarmReading]:
        found: dict[str, AlarmReading] = {}
        for start in range(0, len(names), DESCRIBE_MAX_NAMES):
            answer = self._describe(list(names[start:start + DESCRIBE_MAX_NAMES]))
            for alarm in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]:
                found[alarm["AlarmName"]] = _reading(alarm)
        return found

    def _describe(self, names: list[str]) -> dict[str, Any]:
        # The caller's config.rollback_alarms may be composite alarms too. CloudWatch returns those
        # only when AlarmTypes asks for them, and only to a caller whose cloudwatch:DescribeAlarms is
        # scoped to "*": the deploy worker's is (docs/infra.md, esdeploy/iam/aws_checks.py).
        answer: dict[str, Any] = _cloudwatch(
            f"read alarms {', '.join(names)}",
            lambda: self._client.describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm", "CompositeAlarm"]),
            # A refusal to read is not the deploy's fault: SQS redelivers, the DLQ ends it.
            refuse=as_is,
        )
        return answer

    def delete_variant_alarms(self, variant: str) -> None:
        names = list(variant_alarm_names(variant))
        _cloudwatch(
            f"delete alarms {', '.join(names)}",
            lambda: self._client.delete_alarms(AlarmNames=names),
            tolerate=lambda exc: error_code(exc) == "ResourceNotFound",
            refuse=as_is,
        )


def _reading(alarm: dict[str, Any]) -> AlarmReading:
    try:
        state = AlarmState(str(alarm.get("StateValue")))
    except ValueError:
        state = AlarmState.INSUFFICIENT_DATA
    since = alarm.get("StateUpdatedTimestamp")
    if isinstance(since, datetime):
        since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    else:
        since = None
    return AlarmReading(name=alarm["AlarmName"], state=state, reason=str(alarm.get("StateReason") or ""), since=since)
