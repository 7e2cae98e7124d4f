"""Services: submitting and reading deploy/delete tasks (validation, idempotency, lock, dispatch)."""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from chalicelib.config import Settings
from chalicelib.domain.commands import PromoteDeploy, Submit, SubmitDelete, SubmitDeploy
from chalicelib.domain.errors import (
    ConcurrentUpdateError,
    DispatchError,
    IdempotencyConflictError,
    InvalidStateError,
    ModelBusyError,
    TaskAlreadyExistsError,
    TaskNotFoundError,
)
from chalicelib.domain.messages import IntakeRequest, resume
from chalicelib.domain.models import DeployConfig, ModelLock, Promotion, Stage, Task, TaskKind, TaskStatus, iso
from chalicelib.ports import Aliases, Artifacts, Clock, ModelLocks, TaskStore
from chalicelib.services.deploy_config import pin_artifact, validate_deploy_request
from chalicelib.services.outbox import Outbox, TaskWriter

logger = logging.getLogger(__name__)

# A promote races the deploy worker's steps (a hop's write every few minutes while it waits): it
# reads again and decides again this many times before it gives up and says so. (A cancel never
# races: it has a write of its own, TaskStore.request_cancel.)
WRITE_ATTEMPTS = 5

# What makes a variant's endpoint what it is, besides its artifact.
VARIANT_SHAPE = ("instance_type", "initial_instance_count", "image_uri")

DISPATCH_FAILED = {
    TaskKind.DEPLOY: "Failed to create and send model deployment task",
    TaskKind.DELETE: "Failed to create and send model deletion task",
}


def request_hash(kind: TaskKind, payload: dict[str, Any]) -> str:
    """What makes two requests 'the same' for idempotency: the normalised body, not its bytes."""
    canonical = json.dumps({"kind": kind.value, **payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _busy_until_deadline(busy: ModelBusyError, deadline: datetime) -> str:
    return (
        f"Model `{busy.embedding_model_id}` was still busy with {busy.active_kind} task "
        f"`{busy.active_task_id}` when this request's deadline passed ({iso(deadline)}); nothing was "
        "done. Send the request again (or with a later `deadline`) once that task has ended."
    )


@dataclass
class TaskService:
    settings: Settings
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    outbox: Outbox
    writer: TaskWriter
    clock: Clock
    artifacts: Artifacts

    def submit(self, command: Submit, refused: str | None = None) -> Task:
        """Store the task, take the model's lease and dispatch it; a replay returns the stored task.
        With `refused`, the task is stored as refused with that detail instead (no lease, no message)."""
        if isinstance(command, SubmitDeploy):
            return self._submit_deploy(command, refused)
        return self._submit_delete(command, refused)

    def take(self, request: IntakeRequest) -> Task | None:
        """A request from the requests queue: submitted as an HTTP one is. For a busy model it goes
        back to the queue and waits (real endpoints take 10-20 min), until the model is free or
        the request's deadline passes; then it becomes a task that ends `refused`, saying why.
        None while it waits."""
        command = request.command
        if isinstance(command, PromoteDeploy):
            return self.promote(command.task_id)
        now = self.clock.now()
        latest = now + timedelta(seconds=self.settings.intake_max_wait_seconds)
        deadline = min(request.deadline or latest, latest)
        try:
            return self.submit(command)
        except ModelBusyError as busy:
            if now >= deadline:
                return self.submit(command, refused=_busy_until_deadline(busy, deadline))
            delay = self.settings.timing.intake_retry(now, deadline)
            self.outbox.send(replace(request, deadline=deadline, attempt=request.attempt + 1), delay_seconds=delay)
            logger.info(
                "request waits for its model",
                extra={"embedding_model_id": busy.embedding_model_id, "active_task_id": busy.active_task_id,
                       "attempt": request.attempt + 1, "deadline": iso(deadline), "delay": delay},
            )
            return None

    def _submit_deploy(self, command: SubmitDeploy, refused: str | None) -> Task:
        # Every rule that needs no storage, once, before anything is stored.
        checked = validate_deploy_request(self.settings, command.config)

        def pinned_config() -> DeployConfig:
            # After the replay check: a replay returns its task even if "latest" moved since.
            return pin_artifact(self.artifacts, self.settings, command.embedding_model_id, checked)

        # The request, not its resolution: the same body is the same request whatever "latest" says.
        fingerprint = request_hash(
            TaskKind.DEPLOY,
            {"embedding_model_id": command.embedding_model_id, "config": command.config.given()},
        )
        return self._submit(
            kind=TaskKind.DEPLOY,
            embedding_model_id=command.embedding_model_id,
            client_id=command.client_task_id,
            fingerprint=fingerprint,
            config=pinned_config,
            reason=None,
            source=command.source,
            refused=refused,
        )

    def _submit_delete(self, command: SubmitDelete, refused: str | None) -> Task:
        fingerprint = request_hash(
            TaskKind.DELETE,
            {"embedding_model_id": command.embedding_model_id, "reason": command.reason},
        )
        return self._submit(
            kind=TaskKind.DELETE,
            embedding_model_id=command.embedding_model_id,
            client_id=command.client_task_id,
            fingerprint=fingerprint,
            config=lambda: None,
            reason=command.reason,
            source=command.source,
            refused=refused,
        )

    def cancel(self, task_id: str) -> Task:
        """Cancel a deploy. Before it started, it ends here; after, the cancel is recorded with a write
        of its own that never waits for the worker's (`TaskStore.request_cancel`), and the deploy
        worker ends the task at its next step (tearing green down), which this wakes. A cancel recorded
        before the swap always wins: every step reads it, and a step that read the task before it loses
        its write. During the bake (green live, blue still up) the worker rolls the alias back to blue
        first. After the bake the task is done: there is nothing left to cancel. A task that ended
        canceled is answered as it stands (a retry, a second click: it is what was asked for)."""
        task = self.get(TaskKind.DEPLOY, task_id)
        if task.status == TaskStatus.CANCELED:
            return task
        if task.status.is_terminal:
            raise InvalidStateError(f"Deployment task `{task.task_id}` is already {task.status.value}")
        if task.cancel_requested:
            return task
        if task.status == TaskStatus.PENDING and task.variant is None:
            try:
                # Nothing was created yet; its queued message will find it ended.
                return self.writer.end(task, TaskStatus.CANCELED, "canceled before it started")
            except ConcurrentUpdateError:
                logger.info("the worker started the task meanwhile; recording the cancel", extra=_log_keys(task))
        canceled = self.store.request_cancel(task_id, self.clock.now(), "cancel requested")
        if canceled is None:
            raise TaskNotFoundError.by_id(TaskKind.DEPLOY, task_id)
        if canceled.status == TaskStatus.CANCELED:
            return canceled  # it ended canceled meanwhile
        if canceled.status.is_terminal:
            raise InvalidStateError(f"Deployment task `{task_id}` is already {canceled.status.value}")
        # The wake-up, after the write it is for; if it is lost, the task's own next message (older
        # than the cancel's write) takes the step: see DeployWorker.advance.
        self.writer.send_next(canceled)
        return canceled

    def promote(self, task_id: str) -> Task:
        """Make the candidate of a deploy awaiting promotion live: the deploy worker swaps the alias
        at its next step, which this wakes. Asking again once it was asked is answered with the
        task as it stands (an automation's redelivery must not fail); anything else that cannot be
        promoted is an InvalidStateError saying why."""
        return self._write_deploy_task(task_id, "promote", self._promote)

    def _promote(self, task: Task) -> Task:
        if task.promote_requested:
            return task
        self._check_promotable(task)
        task.promote_requested = True
        task.record(at=self.clock.now(), detail=f"promotion requested; {task.variant} goes live next")
        return self.writer.advance(task)

    def _write_deploy_task(self, task_id: str, action: str, write: Callable[[Task], Task]) -> Task:
        """Read the deploy task and let `write` decide and write from what it read. The worker writes
        the task at every step, so a write that loses to it reads the task again and decides again:
        it lands, or it answers why it cannot (the task ended meanwhile)."""
        for _ in range(WRITE_ATTEMPTS):
            task = self.get(TaskKind.DEPLOY, task_id)
            try:
                return write(task)
            except ConcurrentUpdateError:
                logger.info("%s lost a write to the worker; reading the task again", action, extra=_log_keys(task))
        raise ConcurrentUpdateError(
            f"Deployment task `{task_id}` changed {WRITE_ATTEMPTS} times while the {action} was being "
            f"written; send the {action} again"
        )

    def _check_promotable(self, task: Task) -> None:
        name = f"Deployment task `{task.task_id}`"
        if task.status.is_terminal:
            raise InvalidStateError(f"{name} is already {task.status.value}; there is no candidate to promote")
        if task.deploy_config.promotion is not Promotion.MANUAL:
            raise InvalidStateError(
                f'{name} was submitted with config.promotion "auto": it goes live by itself once it passes the gate'
            )
        if task.cancel_requested:
            raise InvalidStateError(f"{name} is being canceled; its candidate will not be promoted")
        if task.stage != Stage.AWAITING_PROMOTION:
            raise InvalidStateError(
                f"{name} is in stage {task.stage.value}: a candidate can be promoted once it passed the "
                "health and parity gate (stage awaiting_promotion)"
            )
        if task.promote_by is not None and self.clock.now() > task.promote_by:
            raise InvalidStateError(
                f"{name}'s promotion window ended at {iso(task.promote_by)}; its candidate is being torn down"
            )

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
        config: Callable[[], DeployConfig | None],
        reason: str | None,
        source: str,
        refused: str | None = None,
    ) -> Task:
        task_id = client_id or uuid.uuid4().hex
        if client_id is not None:
            existing = self.store.get(task_id)
            if existing is not None:
                return self._replay(existing, fingerprint)
        settled = config()
        now = self.clock.now()
        if refused is None:
            self._take_lock(ModelLock(embedding_model_id, task_id, kind, now))
        task = Task.new(
            task_id=task_id,
            kind=kind,
            embedding_model_id=embedding_model_id,
            request_hash=fingerprint,
            at=now,
            deploy=settled,
            reason=reason,
            source=source,
        )
        if refused is not None:
            # Stored all the same, so that it is found by its id like any other request, never lost.
            task.record(at=now, status=TaskStatus.REFUSED, detail=refused)
        elif kind == TaskKind.DEPLOY and (note := self._same_as_live(task)) is not None:
            task.record(at=now, detail=note)
        try:
            stored = self.store.create(task)
        except TaskAlreadyExistsError:
            # The same client id raced us and stored its task first. For the same model we both
            # hold the same lease, which is the winner's; for another model the lease we took here
            # belongs to no task of this model, so it goes back before we answer.
            existing = self.store.get(task_id)
            if refused is None and (existing is None or existing.embedding_model_id != embedding_model_id):
                self.locks.release(embedding_model_id, task_id)
            if existing is None:
                raise
            return self._replay(existing, fingerprint)
        if refused is not None:
            logger.warning("request refused", extra={**_log_keys(stored), "detail": refused})
            return stored
        return self._dispatch(stored)

    def _same_as_live(self, task: Task) -> str | None:
        """A deploy of the very artifact the live variant serves: a whole blue/green swap (a new
        endpoint, minutes of GPU time) for the same content. Legitimate (to change the instance
        type, or to replace a degraded endpoint), so not refused; said at once, in the task's first
        answer, with what does change."""
        config = task.deploy_config
        alias = self.aliases.get(task.embedding_model_id)
        if not config.content_hash or alias is None or not alias.live_variant:
            return None
        if alias.live_content_hash != config.content_hash:
            return None
        live = self.store.get(alias.task_id) if alias.task_id else None
        live_config = live.deploy if live is not None else None
        changes = [
            f"{key} {getattr(live_config, key)} -> {getattr(config, key)}"
            for key in VARIANT_SHAPE
            if live_config is not None and getattr(live_config, key) != getattr(config, key)
        ]
        what = "changes only " + ", ".join(changes) if changes else "changes nothing else either"
        return (
            f"{alias.live_variant} serves this artifact already (content {config.content_hash[:12]}): this deploy "
            f"replaces it with a new endpoint of the same content and {what}; cancel the task if that is not what "
            "you meant"
        )

    def _replay(self, existing: Task, fingerprint: str) -> Task:
        if existing.request_hash != fingerprint:
            raise IdempotencyConflictError(existing.task_id)
        logger.info("replayed task", extra=_log_keys(existing))
        if existing.status == TaskStatus.PENDING:
            # The first attempt may have died between storing the task and sending its first
            # step; the retry is when the caller is still there to see it start. A duplicate
            # step finds the task's version moved on and stops.
            return self._dispatch(existing)
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
        holder = self.store.get(held.task_id)
        waiting = holder is not None and holder.stage == Stage.AWAITING_PROMOTION and holder.is_active
        baking_until = None
        ends = holder.bake_ends_at if holder is not None and holder.is_active and holder.stage == Stage.BAKING else None
        if ends is not None:
            baking_until = iso(ends)
        raise ModelBusyError(
            lock.embedding_model_id, held.task_id, held.kind.value,
            awaiting_promotion=waiting, baking_until=baking_until,
        )

    def _is_stale(self, held: ModelLock, wanted: ModelLock) -> bool:
        """A lock whose task ended, or never got stored, must not block the model forever."""
        holder = self.store.get(held.task_id)
        if holder is not None:
            # A lease held under the id of another model's task was never this model's.
            return holder.status.is_terminal or holder.embedding_model_id != held.embedding_model_id
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
