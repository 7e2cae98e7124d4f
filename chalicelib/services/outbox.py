"""Services: which queue each message goes to, and in which order a task's writes and messages go, each in one place."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

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
    """Every write of a task, and the messages it implies, in the one order that loses nothing.

    The messages a change hands to others (teardowns) go out *before* the write: a failed send
    leaves the stored task as it was, so the message that caused the change is redelivered and the
    step runs again. The task's own next step goes out *after* the write, so it never arrives before
    the write it was sent for: a failed send leaves the task written and its next step unsent, and the
    redelivered message that made the write finds it (`Task.step_token`) and sends that step again.
    Every write says who made it (`token`: a worker's queue message id; None for a request)."""

    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    slots: LiveModelSlots
    outbox: Outbox
    clock: Clock

    def save(self, task: Task, *, token: str | None = None, next_in: int | None = None) -> Task:
        """Write the task (conditionally on the version read), marked with who wrote it and when its
        next step is due; ConcurrentUpdateError if someone else wrote in between."""
        task.step_token = token
        task.next_at = None if next_in is None else self.clock.now() + timedelta(seconds=next_in)
        return self.store.update(task)

    def send_next(self, stored: Task, delay_seconds: int = 0) -> None:
        """The task's next step, pinned to the version just written."""
        self.outbox.send(Advance(stored.task_id, stored.version), delay_seconds)

    def commit(self, task: Task, *messages: WorkMessage, token: str | None = None) -> Task:
        for message in messages:
            self.outbox.send(message)
        return self.save(task, token=token)

    def advance(self, task: Task, delay_seconds: int = 0, token: str | None = None) -> Task:
        """Write this step, then schedule the next one, pinned to the version this write made."""
        stored = self.save(task, token=token, next_in=delay_seconds)
        self.send_next(stored, delay_seconds)
        return stored

    def end(
        self,
        task: Task,
        status: TaskStatus,
        detail: str,
        *messages: WorkMessage,
        stage: Stage | None = None,
        forget_model: bool = False,
    ) -> Task:
        """Record the task's last status, commit it, then give back what the task held (`release`)."""
        task.record(at=self.clock.now(), stage=stage, status=status, detail=detail)
        stored = self.commit(task, *messages)
        self.release(stored, forget_model=forget_model)
        return stored

    def release(self, task: Task, forget_model: bool = False) -> None:
        """What an ended task held: the model's live-model slot unless the model is live, and the
        model's lease (still held here, so no other task of the model can reserve between the two).
        With `forget_model` (the workers' ends: a delete done, a first deploy that failed), a model
        whose alias names no variant loses its item with the lease; the HTTP and intake functions keep
        DeleteItem off their roles. Safe to run again (a redelivered end finishes its release)."""
        alias = self.aliases.get(task.embedding_model_id)
        if alias is None or not alias.live_variant:
            # A deploy frees the slot it reserved; a delete frees the model's, whoever reserved it.
            self.slots.release(task.embedding_model_id, task.task_id if task.kind == TaskKind.DEPLOY else None)
        nothing_aliased = alias is None or not (alias.live_variant or alias.previous_variant)
        self.locks.release(task.embedding_model_id, task.task_id, forget=forget_model and nothing_aliased)
