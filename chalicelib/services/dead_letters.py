"""Services: messages that SQS gave up on end their task as failed, so none stays processing forever."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from chalicelib.domain.errors import ConcurrentUpdateError
from chalicelib.domain.messages import DeadLetter, TeardownVariant, green_teardown
from chalicelib.domain.models import TaskStatus
from chalicelib.ports import TaskStore
from chalicelib.services.outbox import TaskWriter

logger = logging.getLogger(__name__)


class DeadLetterOutcome(StrEnum):
    TASK_FAILED = "task_failed"
    TASK_ALREADY_ENDED = "task_already_ended"
    TEARDOWN_ABANDONED = "teardown_abandoned"  # the handler counts it: the abandoned-teardown alarm
    NO_TASK = "no_task"


@dataclass
class DeadLetterService:
    store: TaskStore
    writer: TaskWriter

    def handle(self, message: DeadLetter, queue: str, receive_count: str | None) -> DeadLetterOutcome:
        if isinstance(message, TeardownVariant):
            # The task that owned this variant ended long ago. Acknowledged here (no redelivery
            # can make it succeed), so the queue's depth says nothing: the metric this outcome
            # becomes calls a person, and the sweeper hands the variant to teardown again.
            logger.error(
                "teardown of a variant kept failing: it may still be running and costing money",
                extra={"task_id": message.task_id, "variant": message.variant, "queue": queue},
            )
            return DeadLetterOutcome.TEARDOWN_ABANDONED
        if message.task_id is None:
            logger.error("dead letter without a task", extra={"queue": queue, "message": repr(message)})
            return DeadLetterOutcome.NO_TASK
        for _ in range(3):
            task = self.store.get(message.task_id)
            if task is None or task.status.is_terminal:
                return DeadLetterOutcome.TASK_ALREADY_ENDED
            detail = (
                f"the {task.kind.value} worker failed on this task's message "
                f"{receive_count or 'several'} times in stage {task.stage.value}; SQS moved it to {queue}. "
                f"Search the worker logs for task_id {task.task_id} for the error."
            )
            green = green_teardown(task, reason="deploy failed (dead letter)")
            try:
                self.writer.end(task, TaskStatus.FAILED, detail, *green)
            except ConcurrentUpdateError:
                continue
            logger.error("task failed from dead letter", extra={"task_id": task.task_id, "queue": queue})
            return DeadLetterOutcome.TASK_FAILED
        # Written by someone else three times in a row: fail the message, SQS brings it back.
        raise ConcurrentUpdateError(f"task {message.task_id} kept changing while its dead letter was handled")
