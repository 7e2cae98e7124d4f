"""Services: messages that SQS gave up on end their task as failed, so none stays processing forever."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from chalicelib.domain.errors import ConcurrentUpdateError
from chalicelib.domain.messages import (
    Advance,
    AlarmChanged,
    DeadLetter,
    EndpointChanged,
    TeardownVariant,
    green_teardown,
)
from chalicelib.domain.models import Stage, Task, TaskStatus
from chalicelib.ports import TaskStore
from chalicelib.services.outbox import TaskWriter

logger = logging.getLogger(__name__)


class DeadLetterOutcome(StrEnum):
    TASK_FAILED = "task_failed"
    TASK_ALREADY_ENDED = "task_already_ended"
    TEARDOWN_ABANDONED = "teardown_abandoned"  # the handler counts it: the abandoned-teardown alarm
    SUPERSEDED = "superseded"  # a step the task has moved past: a newer message carries it on
    HINT_DROPPED = "hint_dropped"  # a wake-up (alarm or endpoint state change): the task's own steps go on
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
        if isinstance(message, AlarmChanged):
            # Only a hint: the baking tasks read their alarms at their next look anyway.
            logger.error("alarm state change kept failing", extra={"alarm": message.alarm_name, "queue": queue})
            return DeadLetterOutcome.HINT_DROPPED
        if isinstance(message, EndpointChanged):
            # Only a hint too: it wakes a waiting deploy early, and SageMaker may send several per
            # change. The task polls its endpoint on its own hops (and the sweeper re-kicks a stalled
            # one), so it may well be healthy, baking or awaiting promotion: never fail it for this.
            logger.error(
                "endpoint state change kept failing",
                extra={"endpoint": message.endpoint_name, "task_id": message.task_id,
                       "state": message.state.value, "queue": queue},
            )
            return DeadLetterOutcome.HINT_DROPPED
        if message.task_id is None:
            logger.error("dead letter without a task", extra={"queue": queue, "message": repr(message)})
            return DeadLetterOutcome.NO_TASK
        for _ in range(3):
            task = self.store.get(message.task_id)
            if task is None or task.status.is_terminal:
                return DeadLetterOutcome.TASK_ALREADY_ENDED
            if isinstance(message, Advance) and message.version < task.version:
                # A newer step of the task wrote after this message was sent (a hop the bake or a
                # promote overtook): whatever kept it from being handled says nothing about the task.
                logger.warning("superseded dead letter acknowledged",
                               extra={"task_id": task.task_id, "version": message.version, "queue": queue})
                return DeadLetterOutcome.SUPERSEDED
            detail = (
                f"the {task.kind.value} worker failed on this task's message "
                f"{receive_count or 'several'} times in stage {task.stage.value}; SQS moved it to {queue}. "
                f"Search the worker logs for task_id {task.task_id} for the error."
            )
            blue = self._blue_after_bake(task)
            # A live green is not torn down (the teardown worker would refuse it anyway).
            green = () if blue else green_teardown(task, reason="deploy failed (dead letter)")
            if blue:
                detail += (
                    f" Green {task.variant} stays live; {blue[0].variant} is torn down when the bake would have ended."
                )
            try:
                self.writer.end(task, TaskStatus.FAILED, detail, *green, *blue)
            except ConcurrentUpdateError:
                continue
            logger.error("task failed from dead letter", extra={"task_id": task.task_id, "queue": queue})
            return DeadLetterOutcome.TASK_FAILED
        # Written by someone else three times in a row: fail the message, SQS brings it back.
        raise ConcurrentUpdateError(f"task {message.task_id} kept changing while its dead letter was handled")

    def _blue_after_bake(self, task: Task) -> tuple[TeardownVariant, ...]:
        """A deploy whose bake could not go on leaves green live (the teardown worker never removes a
        live variant) and blue with nobody to remove it: blue's teardown, at the bake's end."""
        if task.stage != Stage.BAKING or not task.variant:
            return ()
        alias = self.writer.aliases.get(task.embedding_model_id)
        if alias is None or alias.live_variant != task.variant or not alias.previous_variant:
            return ()
        ends = task.bake_ends_at or task.updated_at + timedelta(seconds=task.deploy_config.bake_seconds)
        return (
            TeardownVariant(
                task.embedding_model_id,
                alias.previous_variant,
                reason=f"replaced by {task.variant}; its deploy's bake ended by a dead letter",
                not_before=ends,
                task_id=task.task_id,
            ),
        )
