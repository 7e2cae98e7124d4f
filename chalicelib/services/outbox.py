"""Services: which queue each message goes to, and send-then-write, each in one place."""
from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.messages import Advance, IntakeRequest, WorkMessage
from chalicelib.domain.models import Stage, Task, TaskKind, TaskStatus
from chalicelib.ports import Aliases, Clock, LiveModelSlots, ModelLocks, Queue, TaskStore


@dataclass
class Outbox:
    """Advance goes to deploy-tasks; TeardownVariant and DeleteModel go to teardown-tasks; an
    IntakeRequest waiting for its model goes back to requests."""

    deploy_queue: Queue
    teardown_queue: Queue
    requests_queue: Queue

    def send(self, message: WorkMessage, delay_seconds: int = 0) -> str:
        if isinstance(message, Advance):
            queue = self.deploy_queue
        elif isinstance(message, IntakeRequest):
            queue = self.requests_queue
        else:
            queue = self.teardown_queue
        return queue.send(message, delay_seconds)


@dataclass
class TaskWriter:
    """Send, then write: the messages a change of a task implies go out before the task is
    written (conditionally on the version read). A failed send leaves the stored task as it was,
    so the message that caused the change is redelivered and the step runs again; a write lost to
    someone else leaves a message that finds a newer version and stops."""

    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    slots: LiveModelSlots
    outbox: Outbox
    clock: Clock

    def commit(self, task: Task, *messages: WorkMessage, delay_seconds: int = 0) -> Task:
        for message in messages:
            self.outbox.send(message, delay_seconds)
        return self.store.update(task)

    def advance(self, task: Task, delay_seconds: int = 0) -> Task:
        """Commit this step and schedule the next one, pinned to the version this write makes."""
        return self.commit(task, Advance(task.task_id, task.version + 1), delay_seconds=delay_seconds)

    def end(
        self,
        task: Task,
        status: TaskStatus,
        detail: str,
        *messages: WorkMessage,
        stage: Stage | None = None,
        delay_seconds: int = 0,
        forget_model: bool = False,
    ) -> Task:
        """Record the task's last status, commit it, then give back what the task held: the model's
        live-model slot unless the model is live, and the model's lease (still held here, so no
        other task of the model can reserve between the two). With `forget_model` (the workers'
        ends: a delete done, a first deploy that failed), a model whose alias names no variant
        loses its item with the lease; the HTTP and intake functions keep DeleteItem off their roles."""
        task.record(at=self.clock.now(), stage=stage, status=status, detail=detail)
        stored = self.commit(task, *messages, delay_seconds=delay_seconds)
        alias = self.aliases.get(task.embedding_model_id)
        if alias is None or not alias.live_variant:
            # A deploy frees the slot it reserved; a delete frees the model's, whoever reserved it.
            self.slots.release(task.embedding_model_id, task.task_id if task.kind == TaskKind.DEPLOY else None)
        nothing_aliased = alias is None or not (alias.live_variant or alias.previous_variant)
        self.locks.release(task.embedding_model_id, task.task_id, forget=forget_model and nothing_aliased)
        return stored
