"""Services: messages that SQS gave up on end their task as failed, so none stays processing forever."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from chalicelib.domain.errors import ConcurrentUpdateError
from chalicelib.domain.messages import DeadLetter, TeardownVariant, green_teardown
from chalicelib.domain.models import TaskStatus
from chalicelib.ports import TaskStore
from chalicelib.services.outbox import TaskWriter

logger = logging.getLogger(__name__)


@dataclass
class DeadLetterService:
    store: TaskStore
    writer: TaskWriter

    def handle(self, message: DeadLetter, queue: str, receive_count: str | None) -> None:
        if isinstance(message, TeardownVariant):
            # The task that owned this variant ended long ago; the DLQ alarm calls a person.
            logger.error(
                "teardown of a variant kept failing: it may still be running and costing money",
                extra={"task_id": message.task_id, "variant": message.variant, "queue": queue},
            )
            return
        if message.task_id is None:
            logger.error("dead letter without a task", extra={"queue": queue, "message": repr(message)})
            return
        for _ in range(3):
            task = self.store.get(message.task_id)
            if task is None or task.status.is_terminal:
                return
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
            return
