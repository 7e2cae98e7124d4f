"""Operator tool layer: the JSON log lines of one task or one model, from CloudWatch Logs Insights on AWS
or the local stack's file.

Every line the app logs while it works on a task carries `task_id` and `embedding_model_id`
(chalicelib/logs.py), in every function's log group `/aws/lambda/esdeploy-<stage>-<function>`
(docs/infra.md). Insights filters on that field; the lines that come back are checked again here,
so an answer is never about another task. A read of a task (`GET /deploy/{id}`, what `--wait`
polls) is not something that happened to it: those request lines are left out.
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
READS = frozenset({"GET", "HEAD"})
# Shown as columns, or the same on every line of a task: left out of the key=value tail.
_PLAIN = {"level", "location", "message", "timestamp", "service", "name", "task_id", "xray_trace_id", "cold_start",
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

    def text(self, *, with_task: bool = False) -> str:
        """One line for a person: time, level, where, (the task,) message, then the line's own fields."""
        extra = " ".join(
            f"{key}={value if isinstance(value, str) else json.dumps(value)}"
            for key, value in self.record.items()
            if key not in _PLAIN
        )
        where = self.source.rsplit("/", 1)[-1]
        if with_task:
            where += f"  task {self.record.get('task_id') or '-'}"
        level, message = self.record.get("level", ""), self.record.get("message", "")
        return f"{self.when}  {level:<7} {where}  {message}  {extra}".rstrip()


@dataclass(frozen=True)
class Wanted:
    """Whose lines: a task's (`task_id`) or a model's (`embedding_model_id`)."""

    key: str
    value: str

    def __post_init__(self) -> None:
        # The value goes into a query string: only the characters every id is made of.
        if not is_valid_id(self.value):
            raise ValueError(f"{self.value!r} is not a {self.noun} id ({ID_RULE})")

    @property
    def noun(self) -> str:
        return "task" if self.key == "task_id" else "model"

    def __str__(self) -> str:
        return f"{self.noun} {self.value}"

    def matches(self, record: dict[str, Any]) -> bool:
        return record.get(self.key) == self.value and not is_a_read(record)


def of_task(task_id: str) -> Wanted:
    return Wanted("task_id", task_id)


def of_model(embedding_model_id: str) -> Wanted:
    return Wanted("embedding_model_id", embedding_model_id)


def is_a_read(record: dict[str, Any]) -> bool:
    """An HTTP request that only read (a status poll): it changed nothing."""
    return record.get("message") == "http request" and record.get("http_method") in READS


def _wanted(wanted: Wanted | str) -> Wanted:
    return wanted if isinstance(wanted, Wanted) else of_task(wanted)


def log_groups(stage: str) -> list[str]:
    return [f"/aws/lambda/esdeploy-{stage}-{function}" for function in FUNCTIONS]


def insights_query(wanted: Wanted | str) -> str:
    """Logs Insights' query for a task's (or, with `of_model`, a model's) lines, reads left out."""
    wanted = _wanted(wanted)
    reads = ", ".join(f'"{method}"' for method in sorted(READS))
    return (
        f'fields @timestamp, @log, @message | filter {wanted.key} = "{wanted.value}" '
        f'| filter not (message = "http request" and http_method in [{reads}]) '
        "| sort @timestamp asc | limit 10000"
    )


def from_file(path: Path, wanted: Wanted | str) -> list[LogLine]:
    """The local stack's log file (ESDEPLOY_LOG_FILE, printed by `esdeploy local`)."""
    wanted = _wanted(wanted)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise TaskLogsError(f"cannot read the log file {path}: {error.strerror or error}") from None
    return _matching(((str(path), raw) for raw in text.splitlines()), wanted)


def from_insights(
    logs: Any,
    stage: str,
    wanted: Wanted | str,
    *,
    since_seconds: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = QUERY_TIMEOUT_SECONDS,
) -> list[LogLine]:
    """Runs a Logs Insights query over every function's log group of `stage` and waits for it."""
    from botocore.exceptions import BotoCoreError, ClientError

    wanted = _wanted(wanted)
    now = clock()
    groups = log_groups(stage)
    try:
        started = logs.start_query(
            logGroupNames=groups,
            startTime=max(0, int(now - since_seconds)),
            endTime=int(now) + 60,
            queryString=insights_query(wanted),
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
    return _matching(((row.get("@log", ""), row.get("@message", "")) for row in rows), wanted)


def _matching(lines: Iterable[tuple[str, str]], wanted: Wanted) -> list[LogLine]:
    found: list[LogLine] = []
    for source, raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # the runtime's own START/END/REPORT lines, a traceback's lines
        if isinstance(record, dict) and wanted.matches(record):
            found.append(LogLine(source, record))
    return found
