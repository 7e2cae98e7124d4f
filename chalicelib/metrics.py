"""Adapters: CloudWatch metrics (EMF log lines) for task outcomes, which the alarms in infra/ read."""
from __future__ import annotations

import os
from datetime import datetime

from chalicelib.domain.models import Task, TaskKind
from chalicelib.ports import TaskStore

SERVICE = "esdeploy"


# The alarms in infra/template.yaml read these names with exactly these dimensions.
MESSAGES_FAILED = "MessagesFailed"  # dimensions service, function: one per message a worker failed
TEARDOWNS_ABANDONED = "TeardownsAbandoned"  # dimension service: a variant's teardown SQS gave up on
UNREADABLE_ITEMS = "UnreadableItems"  # dimension service: a stored item a reader could not read


def emit_count(name: str, kind: str | None = None, dimensions: dict[str, str] | None = None,
               metadata: dict[str, str] | None = None) -> None:
    """One EMF line; CloudWatch turns it into a metric without an API call from the Lambda.
    `dimensions` come on top of `service`; `metadata` rides along for Logs Insights only."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", SERVICE)
    with single_metric(
        name=name, unit=MetricUnit.Count, value=1, namespace=namespace,
        default_dimensions={"service": SERVICE, **(dimensions or {})},
    ) as metric:
        for key, value in {**({"kind": kind} if kind else {}), **(metadata or {})}.items():
            metric.add_metadata(key=key, value=value)


def count_failed_message(function: str, message_id: str) -> None:
    """A worker failed a message: SQS redelivers it, and Lambda's Errors metric never sees it."""
    emit_count(MESSAGES_FAILED, dimensions={"function": function}, metadata={"message_id": message_id})


def count_abandoned_teardown(variant: str) -> None:
    """SQS gave up on tearing down `variant`: it may still be running, and billing."""
    emit_count(TEARDOWNS_ABANDONED, metadata={"variant": variant})


def count_unreadable_item(table: str) -> None:
    """A reader met an item it cannot read (a hand edit, an older version's write) and went on without it."""
    emit_count(UNREADABLE_ITEMS, metadata={"table": table})


def ended_now(task: Task) -> bool:
    """True for the write that moves a task from active to terminal (not for later touches)."""
    if not task.status.is_terminal or not task.events:
        return False
    return len(task.events) < 2 or not task.events[-2].status.is_terminal


class MeteredTaskStore:
    """Wraps a TaskStore and counts task outcomes (TasksDone, TasksFailed, ...) as they happen."""

    def __init__(self, inner: TaskStore) -> None:
        self._inner = inner

    def create(self, task: Task) -> Task:
        stored = self._inner.create(task)
        if ended_now(stored):  # a request refused before it became a running task
            emit_count(f"Tasks{stored.status.value.capitalize()}", stored.kind.value)
        return stored

    def get(self, task_id: str) -> Task | None:
        return self._inner.get(task_id)

    def newest_for_model(self, embedding_model_id: str, kind: TaskKind) -> Task | None:
        return self._inner.newest_for_model(embedding_model_id, kind)

    def note_rekick(self, task: Task, at: datetime) -> bool:
        return self._inner.note_rekick(task, at)

    def request_cancel(self, task_id: str, at: datetime, detail: str) -> Task | None:
        return self._inner.request_cancel(task_id, at, detail)  # a cancel ends no task: the worker's end counts

    def update(self, task: Task) -> Task:
        stored = self._inner.update(task)
        if ended_now(stored):
            emit_count(f"Tasks{stored.status.value.capitalize()}", stored.kind.value)
        return stored
