"""Local stack: the alarm stand-in — moves the embedded CloudWatch's alarms as CloudWatch would.

moto keeps alarms but never evaluates them. Every few seconds this loop reads them (DescribeAlarms),
evaluates each one on an AWS/SageMaker metric of a local endpoint from that endpoint's own
invocation records (esdeploy.local.alarm_evaluation), moves it with SetAlarmState when its state
changes, and hands the "CloudWatch Alarm State Change" event to `publish` (the stack puts it on the
deploy-tasks queue, as EventBridge would). Alarms on anything else stay as they are.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from esdeploy.local.alarm_evaluation import AlarmRule, evaluate
from esdeploy.local.invocation_metrics import InvocationRecords

logger = logging.getLogger(__name__)
EVERY_SECONDS = 2.0
# SetAlarmState's StateReason limit.
MAX_REASON = 1023

Publish = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class AlarmMove:
    """One state change the stand-in made."""

    alarm_name: str
    previous: str
    state: str
    reason: str


class AlarmStandIn(threading.Thread):
    """`evaluate_once()` is one round (tests call it); `start()` runs rounds every `every` seconds until `stop`."""

    def __init__(
        self,
        cloudwatch: Any,
        records: InvocationRecords,
        publish: Publish,
        stop: threading.Event,
        *,
        region: str,
        account: str,
        every: float = EVERY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="alarm-stand-in", daemon=True)
        self._cloudwatch = cloudwatch
        self._records = records
        self._publish = publish
        self._stop_event = stop
        self._region = region
        self._account = account
        self._every = every
        self._clock = clock
        self.moves: list[AlarmMove] = []

    def run(self) -> None:
        while not self._stop_event.wait(self._every):
            try:
                self.evaluate_once()
            except Exception:
                if self._stop_event.is_set():
                    return
                logger.exception("alarm stand-in: a round failed")

    def evaluate_once(self) -> list[AlarmMove]:
        moved: list[AlarmMove] = []
        for page in self._cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
            for alarm in page.get("MetricAlarms", []):
                move = self._evaluate(alarm)
                if move is not None:
                    moved.append(move)
        self.moves.extend(moved)
        return moved

    def _evaluate(self, alarm: dict[str, Any]) -> AlarmMove | None:
        rule = AlarmRule.of(alarm)
        if rule is None or not self._records.knows(rule.endpoint):
            return None  # not a local endpoint's metric: CloudWatch's business, not ours
        now = self._clock()
        verdict = evaluate(rule, self._records.since(rule.endpoint, rule.window_start(now)), now)
        previous = str(alarm.get("StateValue", ""))
        if verdict is None or verdict.state == previous:
            return None
        reason = verdict.reason[:MAX_REASON]
        self._cloudwatch.set_alarm_state(
            AlarmName=rule.name, StateValue=verdict.state, StateReason=reason,
            StateReasonData=json.dumps(verdict.reason_data),
        )
        logger.info("alarm stand-in: %s %s -> %s: %s", rule.name, previous, verdict.state, reason)
        event = alarm_state_change(
            rule.name, verdict.state, reason, datetime.fromtimestamp(now, UTC), self._account, self._region,
            previous=previous,
        )
        try:
            self._publish(event)
        except Exception:  # EventBridge's delivery failing does not undo the state change
            logger.exception("alarm stand-in: publishing the state change of %s failed", rule.name)
        return AlarmMove(rule.name, previous, verdict.state, reason)
