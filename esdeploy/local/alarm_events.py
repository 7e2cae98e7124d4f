"""Local stack: the "CloudWatch Alarm State Change" event — a stop-gap copy of the core's builder.

The contract (issue 13 §2) gives this shape one home: `alarm_state_change` in
chalicelib/adapters/cloudwatch_shapes.py, which the core branch adds. Until it is on this branch the
local stack uses this copy, with the same signature; once it is, this module goes and the stand-in
imports the core's.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
EVENT_SOURCE = "aws.cloudwatch"


def alarm_state_change(
    alarm_name: str, state: str, reason: str, at: datetime, account: str, region: str, previous: str = "OK"
) -> dict[str, Any]:
    """The EventBridge event CloudWatch sends when `alarm_name` goes to `state`, as AWS documents it."""
    stamp = at.astimezone(UTC)
    when = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": ALARM_STATE_CHANGE,
        "source": EVENT_SOURCE,
        "account": account,
        "time": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_name}"],
        "detail": {
            "alarmName": alarm_name,
            "state": {"value": state, "reason": reason, "timestamp": when},
            "previousState": {"value": previous, "reason": "", "timestamp": when},
            "configuration": {"description": ""},
        },
    }
