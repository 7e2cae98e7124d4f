"""Operator tool layer: one task's JSON log lines, from CloudWatch Logs Insights on AWS or the local stack's file.

Every line the app logs while it works on a task carries `task_id` (chalicelib/logs.py), in every
function's log group `/aws/lambda/esdeploy-<stage>-<function>` (docs/infra.md). Insights filters
on that field; the lines that come back are checked again here, so an answer is never about
another task.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.domain.names import ID_RULE, is_valid_id

FUNCTIONS = (
    "api-handler",
    "requests-worker",
    "deploy-worker",
    "teardown-worker",
    "deploy-dead-letters",
    "teardown-dead-letters",
    "sweeper",
)
QUERY_TIMEOUT_SECONDS = 120.0
_ENDED = {"Failed", "Cancelled", "Timeout"}
# Shown as columns, or the same on every line of a task: left out of the key=value tail.
_PLAIN = {"level", "location", "message", "timestamp", "service", "task_id", "xray_trace_id", "cold_start",
          "function_name", "function_memory_size", "function_arn", "function_request_id", "sampling_rate"}


class TaskLogsError(Exception):
    """The log lines could not be read; the message says what to fix."""


@dataclass(frozen=True)
class LogLine:
    source: str  # the function's log group, or the local file
    record: dict[str, Any]

    @property
    def when(self) -> str:
        return str(self.record.get("timestamp", ""))

    def text(self) -> str:
        """One line for a person: time, level, where, message, then the line's own fields."""
        extra = " ".join(
            f"{key}={value if isinstance(value, str) else json.dumps(value)}"
            for key, value in self.record.items()
            if key not in _PLAIN
        )
        where = self.source.rsplit("/", 1)[-1]
        level, message = self.record.get("level", ""), self.record.get("message", "")
        return f"{self.when}  {level:<7} {where}  {message}  {extra}".rstrip()


def checked_task_id(task_id: str) -> str:
    """Task ids go into a query string: only the characters every id is made of."""
    if not is_valid_id(task_id):
        raise ValueError(f"{task_id!r} is not a task id ({ID_RULE})")
    return task_id


def log_groups(stage: str) -> list[str]:
    return [f"/aws/lambda/esdeploy-{stage}-{function}" for function in FUNCTIONS]


def insights_query(task_id: str) -> str:
    return (
        f'fields @timestamp, @log, @message | filter task_id = "{checked_task_id(task_id)}" '
        "| sort @timestamp asc | limit 10000"
    )


def from_file(path: Path, task_id: str) -> list[LogLine]:
    """The local stack's log file (ESDEPLOY_LOG_FILE, printed by `esdeploy local`)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise TaskLogsError(f"cannot read the log file {path}: {error.strerror or error}") from None
    return _of_task(((str(path), raw) for raw in text.splitlines()), checked_task_id(task_id))


def from_insights(
    logs: Any,
    stage: str,
    task_id: str,
    *,
    since_seconds: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = QUERY_TIMEOUT_SECONDS,
) -> list[LogLine]:
    """Runs a Logs Insights query over every function's log group of `stage` and waits for it."""
    from botocore.exceptions import BotoCoreError, ClientError

    now = clock()
    groups = log_groups(stage)
    try:
        started = logs.start_query(
            logGroupNames=groups,
            startTime=max(0, int(now - since_seconds)),
            endTime=int(now) + 60,
            queryString=insights_query(task_id),
        )
        deadline = now + timeout
        while True:
            answer = logs.get_query_results(queryId=started["queryId"])
            status = answer.get("status")
            if status == "Complete":
                break
            if status in _ENDED:
                raise TaskLogsError(f"the Logs Insights query ended {status}")
            if clock() > deadline:
                raise TaskLogsError(f"the Logs Insights query did not finish within {timeout:.0f} s")
            sleep(1.0)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", str(error))
        if code == "ResourceNotFoundException":
            raise TaskLogsError(
                f"{message}: no log groups of stage {stage!r} (is --stage right? they are {groups[0]}, ...)"
            ) from None
        raise TaskLogsError(f"CloudWatch Logs refused the query ({code}): {message}") from None
    except BotoCoreError as error:  # no credentials, no region, no answer
        raise TaskLogsError(f"cannot query CloudWatch Logs: {error}") from None
    rows = ({field["field"]: field["value"] for field in row} for row in answer.get("results", []))
    return _of_task(((row.get("@log", ""), row.get("@message", "")) for row in rows), task_id)


def _of_task(lines: Iterable[tuple[str, str]], task_id: str) -> list[LogLine]:
    found: list[LogLine] = []
    for source, raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # the runtime's own START/END/REPORT lines, a traceback's lines
        if isinstance(record, dict) and record.get("task_id") == task_id:
            found.append(LogLine(source, record))
    return found
