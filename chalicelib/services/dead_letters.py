"""Services: messages that SQS gave up on end their task as failed, so none stays processing forever."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.errors import ConcurrentUpdateError
from chalicelib.domain.models import Stage, TaskKind, TaskStatus
from chalicelib.ports import Clock, ModelLocks, Queue, TaskStore
from chalicelib.services import messages

logger = logging.getLogger(__name__)


@dataclass
class DeadLetterService:
    store: TaskStore
    locks: ModelLocks
    teardown_queue: Queue
    clock: Clock

    def handle(self, body: dict[str, Any], queue: str, receive_count: str | None) -> None:
        task_id = body.get("task_id")
        if messages.is_endpoint_event(body):
            task_id = (body["detail"].get("Tags") or {}).get("task_id")
        if not isinstance(task_id, str):
            logger.error("dead letter without a task", extra={"queue": queue, "body": body})
            return
        if body.get("action") == messages.TEARDOWN_VARIANT:
            # The task that owned this variant ended long ago; the DLQ alarm calls a person.
            logger.error(
                "teardown of a variant kept failing: it may still be running and costing money",
                extra={"task_id": task_id, "variant": body.get("variant"), "queue": queue},
            )
            return
        for _ in range(3):
            task = self.store.get(task_id)
            if task is None or task.status.is_terminal:
                return
            if task.kind == TaskKind.DEPLOY and task.variant and task.stage != Stage.FINISHED:
                self.teardown_queue.send(
                    messages.teardown_variant(
                        task.embedding_model_id, task.variant, reason="deploy failed (dead letter)",
                        task_id=task.task_id,
                    )
                )
            task.record(
                at=self.clock.now(),
                status=TaskStatus.FAILED,
                detail=(
                    f"the {task.kind.value} worker failed on this task's message "
                    f"{receive_count or 'several'} times in stage {task.stage.value}; SQS moved it to {queue}. "
                    f"Search the worker logs for task_id {task.task_id} for the error."
                ),
            )
            try:
                self.store.update(task)
            except ConcurrentUpdateError:
                continue
            self.locks.release(task.embedding_model_id, task.task_id)
            logger.error("task failed from dead letter", extra={"task_id": task.task_id, "queue": queue})
            return
