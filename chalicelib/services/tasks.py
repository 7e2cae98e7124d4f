"""Services: submitting and reading deploy/delete tasks (validation, idempotency, lock, dispatch)."""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from chalicelib.config import Settings
from chalicelib.domain.commands import Submit, SubmitDelete, SubmitDeploy
from chalicelib.domain.errors import (
    DispatchError,
    IdempotencyConflictError,
    InvalidStateError,
    ModelBusyError,
    TaskAlreadyExistsError,
    TaskNotFoundError,
)
from chalicelib.domain.messages import resume
from chalicelib.domain.models import ModelLock, Task, TaskKind, TaskStatus
from chalicelib.ports import Clock, ModelLocks, TaskStore
from chalicelib.services.deploy_config import resolve_deploy_config
from chalicelib.services.outbox import Outbox, TaskWriter

logger = logging.getLogger(__name__)

DISPATCH_FAILED = {
    TaskKind.DEPLOY: "Failed to create and send model deployment task",
    TaskKind.DELETE: "Failed to create and send model deletion task",
}


def request_hash(kind: TaskKind, payload: dict[str, Any]) -> str:
    """What makes two requests 'the same' for idempotency: the normalised body, not its bytes."""
    canonical = json.dumps({"kind": kind.value, **payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class TaskService:
    settings: Settings
    store: TaskStore
    locks: ModelLocks
    outbox: Outbox
    writer: TaskWriter
    clock: Clock

    def submit(self, command: Submit) -> Task:
        """Store the task, take the model's lease and dispatch it; a replay returns the stored task."""
        if isinstance(command, SubmitDeploy):
            return self._submit_deploy(command)
        return self._submit_delete(command)

    def _submit_deploy(self, command: SubmitDeploy) -> Task:
        config = resolve_deploy_config(self.settings, command.embedding_model_id, command.config)
        fingerprint = request_hash(
            TaskKind.DEPLOY,
            {"embedding_model_id": command.embedding_model_id, "config": command.config.given()},
        )
        return self._submit(
            kind=TaskKind.DEPLOY,
            embedding_model_id=command.embedding_model_id,
            client_id=command.client_task_id,
            fingerprint=fingerprint,
            config=config.as_dict(),
            reason=None,
            source=command.source,
        )

    def _submit_delete(self, command: SubmitDelete) -> Task:
        fingerprint = request_hash(
            TaskKind.DELETE,
            {"embedding_model_id": command.embedding_model_id, "reason": command.reason},
        )
        return self._submit(
            kind=TaskKind.DELETE,
            embedding_model_id=command.embedding_model_id,
            client_id=command.client_task_id,
            fingerprint=fingerprint,
            config={},
            reason=command.reason,
            source=command.source,
        )

    def cancel(self, task_id: str) -> Task:
        """Cancel a deploy. Before it started, it ends here; after, the deploy worker ends it at its
        next step (tearing green down), which this wakes with a fresh Advance. After the swap it is
        a rollback's job: the task is done by then."""
        task = self.get(TaskKind.DEPLOY, task_id)
        if task.status.is_terminal:
            raise InvalidStateError(f"Deployment task `{task_id}` is already {task.status.value}")
        if task.cancel_requested:
            return task
        if task.status == TaskStatus.PENDING and task.variant is None:
            # Nothing was created yet; its queued message will find it ended.
            return self.writer.end(task, TaskStatus.CANCELED, "canceled before it started")
        task.cancel_requested = True
        task.record(at=self.clock.now(), detail="cancel requested")
        return self.writer.advance(task)

    def get(self, kind: TaskKind, task_id: str) -> Task:
        task = self.store.get(task_id)
        if task is None or task.kind != kind:
            raise TaskNotFoundError.by_id(kind, task_id)
        return task

    def newest(self, kind: TaskKind, embedding_model_id: str) -> Task:
        task = self.store.newest_for_model(embedding_model_id, kind)
        if task is None:
            raise TaskNotFoundError.by_model(kind, embedding_model_id)
        return task

    def _submit(
        self,
        *,
        kind: TaskKind,
        embedding_model_id: str,
        client_id: str | None,
        fingerprint: str,
        config: dict[str, Any],
        reason: str | None,
        source: str,
    ) -> Task:
        task_id = client_id or uuid.uuid4().hex
        if client_id is not None:
            existing = self.store.get(task_id)
            if existing is not None:
                return self._replay(existing, fingerprint)
        now = self.clock.now()
        self._take_lock(ModelLock(embedding_model_id, task_id, kind, now))
        task = Task.new(
            task_id=task_id,
            kind=kind,
            embedding_model_id=embedding_model_id,
            request_hash=fingerprint,
            at=now,
            config=config,
            reason=reason,
            source=source,
        )
        try:
            stored = self.store.create(task)
        except TaskAlreadyExistsError:
            # The same client id raced us; both of us hold the same lock, so the loser answers
            # like a replay.
            existing = self.store.get(task_id)
            if existing is None:
                raise
            return self._replay(existing, fingerprint)
        return self._dispatch(stored)

    def _replay(self, existing: Task, fingerprint: str) -> Task:
        if existing.request_hash != fingerprint:
            raise IdempotencyConflictError(existing.task_id)
        logger.info("replayed task", extra=_log_keys(existing))
        return existing

    def _take_lock(self, lock: ModelLock) -> None:
        held = self.locks.acquire(lock)
        if held is None:
            return
        if self._is_stale(held, lock):
            logger.warning(
                "taking over a stale model lock",
                extra={"embedding_model_id": lock.embedding_model_id, "stale_task_id": held.task_id},
            )
            held = self.locks.acquire(lock, replace_task_id=held.task_id)
            if held is None:
                return
        raise ModelBusyError(lock.embedding_model_id, held.task_id, held.kind.value)

    def _is_stale(self, held: ModelLock, wanted: ModelLock) -> bool:
        """A lock whose task ended, or never got stored, must not block the model forever."""
        holder = self.store.get(held.task_id)
        if holder is not None:
            return holder.status.is_terminal
        age = (wanted.acquired_at - held.acquired_at).total_seconds()
        return age > self.settings.stale_lock_seconds

    def _dispatch(self, task: Task) -> Task:
        try:
            self.outbox.send(resume(task))
        except DispatchError as exc:
            logger.error("dispatch failed", extra={**_log_keys(task), "error": str(exc)})
            self.writer.end(task, TaskStatus.FAILED, f"{DISPATCH_FAILED[task.kind]}: {exc}")
            raise DispatchError(DISPATCH_FAILED[task.kind]) from exc
        logger.info("task submitted", extra={**_log_keys(task), "source": task.source})
        return task


def _log_keys(task: Task) -> dict[str, str]:
    return {
        "task_id": task.task_id,
        "embedding_model_id": task.embedding_model_id,
        "kind": task.kind.value,
        "status": task.status.value,
    }
