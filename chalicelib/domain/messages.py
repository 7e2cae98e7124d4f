"""Domain layer: the messages on the queues, one type each (their JSON lives in adapters/queue_messages.py).

deploy-tasks carries Advance (ours), EndpointChanged (SageMaker's, through EventBridge) and
AlarmChanged (CloudWatch's, through EventBridge);
teardown-tasks carries TeardownVariant and DeleteModel; requests carries IntakeRequest (read by
api/intake.py, the automation's format). Each dead-letter queue gets its queue's.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chalicelib.domain.commands import IntakeCommand
from chalicelib.domain.models import STAGES_WITH_GREEN, AlarmState, EndpointState, Task, TaskKind


@dataclass(frozen=True)
class Advance:
    """Run the next step of a deploy task.

    `version` pins the message to the task state it was sent for: an older message (a duplicate,
    or a poll overtaken by an endpoint event) finds a newer version and stops. `attempt` counts
    the re-sends of a message that arrived before the write of the step that sent it.
    """

    task_id: str
    version: int
    attempt: int = 0


@dataclass(frozen=True)
class DeleteModel:
    """Run (or resume) a delete task; `attempt` counts the deferrals of a teardown still refused."""

    task_id: str
    embedding_model_id: str
    attempt: int = 0


@dataclass(frozen=True)
class TeardownVariant:
    """Delete one variant (endpoint, endpoint config, model), not before `not_before`."""

    embedding_model_id: str
    variant: str
    reason: str
    not_before: datetime | None = None
    task_id: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class EndpointChanged:
    """SageMaker says an endpoint changed state; the tags say which task and model it belongs to."""

    endpoint_name: str
    state: EndpointState
    platform_status: str
    task_id: str | None
    embedding_model_id: str | None
    failure_reason: str | None = None


@dataclass(frozen=True)
class AlarmChanged:
    """CloudWatch says an alarm changed state: a hint that wakes the baking tasks watching it (they
    read the alarm again before they decide)."""

    alarm_name: str
    state: AlarmState
    reason: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class IntakeRequest:
    """A deploy, delete or promote from the requests queue. A deploy or delete for a busy model goes
    back to that queue to wait, until the model is free or `deadline` passes; `attempt` counts the waits."""

    command: IntakeCommand
    deadline: datetime | None = None
    attempt: int = 0


@dataclass(frozen=True)
class Delivery:
    """One delivery of a queue message: its id (SQS's MessageId, the same on every redelivery) and
    how many times SQS has handed it out (1: the first time)."""

    message_id: str
    receive_count: int = 1

    @property
    def is_redelivery(self) -> bool:
        """SQS hands it out again: a worker that handled it before failed (or died) before acknowledging."""
        return self.receive_count > 1


# What we send (and so what comes back from a dead-letter queue, with SageMaker's events).
WorkMessage = Advance | DeleteModel | TeardownVariant | IntakeRequest
DeployTasksMessage = Advance | EndpointChanged | AlarmChanged
TeardownTasksMessage = TeardownVariant | DeleteModel
DeadLetter = Advance | DeleteModel | TeardownVariant | EndpointChanged | AlarmChanged


def resume(task: Task) -> Advance | DeleteModel:
    """The message that has a task's worker take it up where it stands (first dispatch, sweeper)."""
    if task.kind == TaskKind.DEPLOY:
        return Advance(task.task_id, task.version)
    return DeleteModel(task.task_id, task.embedding_model_id)


def green_teardown(task: Task, reason: str) -> tuple[TeardownVariant, ...]:
    """The teardown of the green variant a deploy may have made so far; none if it made none."""
    if task.kind != TaskKind.DEPLOY or not task.variant or task.stage not in STAGES_WITH_GREEN:
        return ()
    return (TeardownVariant(task.embedding_model_id, task.variant, reason=reason, task_id=task.task_id),)
