"""Services: the teardown worker (teardown-tasks) — tears down variants and runs delete tasks."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from chalicelib.config import Settings
from chalicelib.domain.errors import ConcurrentUpdateError, RetryableError
from chalicelib.domain.messages import DeleteModel, TeardownTasksMessage, TeardownVariant
from chalicelib.domain.models import Alias, Stage, Task, TaskKind, TaskStatus
from chalicelib.domain.names import model_name_prefix
from chalicelib.domain.timing import MAX_TEARDOWN_ATTEMPTS, TEARDOWN_RETRY_SECONDS, seconds_until, teardown_retry
from chalicelib.ports import Alarms, Aliases, AliasMirror, Clock, Hosting, ModelLocks, Scaling, TaskStore
from chalicelib.services.alias_writes import change_alias
from chalicelib.services.outbox import Outbox, TaskWriter

logger = logging.getLogger(__name__)

__all__ = ["MAX_TEARDOWN_ATTEMPTS", "TEARDOWN_RETRY_SECONDS", "TeardownWorker"]


@dataclass
class TeardownWorker:
    settings: Settings
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    mirror: AliasMirror
    outbox: Outbox
    writer: TaskWriter
    hosting: Hosting
    scaling: Scaling
    alarms: Alarms
    clock: Clock

    def handle(self, message: TeardownTasksMessage) -> None:
        if isinstance(message, TeardownVariant):
            self.teardown_variant(message)
        else:
            self.run_delete_task(message)

    # ---- one variant --------------------------------------------------------------------

    def teardown_variant(self, message: TeardownVariant) -> None:
        variant, model_id = message.variant, message.embedding_model_id
        if message.not_before is not None:
            wait = (message.not_before - self.clock.now()).total_seconds()
            if wait > 0:
                # SQS delays stop at 900 s: a longer bake is a chain of hops.
                self.outbox.send(message, delay_seconds=seconds_until(self.clock.now(), message.not_before))
                return
        owner = self._active_owner(message)
        if owner is not None:
            # An active deploy still owns it: the sweeper saw it before its owner, or the task sent
            # this with its last write, which has not landed (or lost to a write that continues).
            # Ask again later; by then the task has ended, and the alias or this check decides.
            self._retry_later(
                message, RetryableError(f"variant {variant} still belongs to active task {owner.task_id}")
            )
            return
        # Rollback to a variant that is about to vanish must stop being offered first.
        alias = change_alias(self.aliases, model_id, lambda current: current.drop_previous(variant))
        if alias is not None and alias.live_variant == variant:
            logger.warning(
                "not tearing down the live variant (rolled back to it?)",
                extra={"embedding_model_id": model_id, "variant": variant},
            )
            return
        try:
            self._mirror_off(model_id, variant, alias)
            self._remove(variant)
        except RetryableError as error:
            # An endpoint still Creating cannot be deleted, and that can last an hour: come back
            # later on our own schedule rather than burn the queue's receive count into the DLQ.
            self._retry_later(message, error)
            return
        logger.info(
            "variant torn down",
            extra={"embedding_model_id": model_id, "variant": variant, "reason": message.reason},
        )

    def _mirror_off(self, model_id: str, variant: str, alias: Alias | None) -> None:
        """The alias's copy in SSM (what every `embedder()` resolves) must not name a variant that is
        about to go. It can, when the write that moved the alias away from it was not followed by its
        mirror's (a rollback whose PutParameter was throttled): the alias is the truth, so its copy is
        published again first. RetryableError while SSM cannot be written; nothing is removed then."""
        if not model_id or self.mirror.published(model_id) != variant:
            return
        self.mirror.publish(alias or Alias.none(model_id))
        logger.warning(
            "the alias's copy in SSM named the variant being torn down; published the alias again first",
            extra={"embedding_model_id": model_id, "variant": variant,
                   "live": alias.live_variant if alias else None},
        )

    def _remove(self, variant: str) -> None:
        """Everything of one variant. Its autoscaling and its alarms go first: neither may outlive
        (or fight) the deletion. RetryableError while its endpoint cannot be deleted yet."""
        self.scaling.remove(variant)
        self.alarms.delete_variant_alarms(variant)
        self.hosting.delete_variant(variant)

    def _active_owner(self, message: TeardownVariant) -> Task | None:
        """The deploy that the variant belongs to while it runs: the task the message names (its
        creator, or the one that hands it over) or the holder of the model's lease."""
        candidates = {message.task_id}
        if message.embedding_model_id:
            held = self.locks.get(message.embedding_model_id)
            candidates.add(held.task_id if held else None)
        for task_id in sorted(c for c in candidates if c):
            task = self.store.get(task_id)
            if task is not None and task.is_active and task.kind == TaskKind.DEPLOY and task.variant == message.variant:
                return task
        return None

    def _retry_later(self, message: TeardownTasksMessage, error: RetryableError) -> None:
        attempt = message.attempt + 1
        delay = teardown_retry(attempt)
        if delay is None:
            raise error
        logger.info("teardown deferred", extra={"variant": getattr(message, "variant", None),
                                                "task_id": message.task_id, "attempt": attempt, "delay": delay,
                                                "error": str(error)})
        self.outbox.send(replace(message, attempt=attempt), delay_seconds=delay)

    # ---- a delete task -----------------------------------------------------------------

    def run_delete_task(self, message: DeleteModel) -> None:
        task = self.store.get(message.task_id)
        if task is None or task.kind != TaskKind.DELETE or task.status.is_terminal:
            return
        try:
            self._delete(task, message)
        except ConcurrentUpdateError:
            # Only the task row's conflicts get here (change_alias retries the alias's).
            logger.info("lost a race for the delete task; the other writer continues",
                        extra={"task_id": message.task_id})

    def _delete(self, task: Task, message: DeleteModel) -> None:
        model_id = task.embedding_model_id
        alias = self.aliases.get(model_id)
        variants = self.hosting.list_variants(model_name_prefix(self.settings.resource_prefix, model_id))
        names = sorted({v.name for v in variants if v.embedding_model_id in (None, model_id)})
        if task.stage == Stage.QUEUED:
            if (alias is None or not alias.live_variant) and not names:
                self._end(task, TaskStatus.REFUSED, f"Model `{model_id}` has nothing deployed; nothing to delete")
                return
            task.record(at=self.clock.now(), stage=Stage.UNALIASING, status=TaskStatus.PROCESSING)
            task = self.writer.commit(task)
        if task.stage == Stage.UNALIASING:
            # Clients stop resolving the model before anything is deleted.
            change_alias(self.aliases, model_id, lambda current: current.clear(task.task_id, self.clock.now()))
            self.mirror.remove(model_id)
            task.record(
                at=self.clock.now(),
                stage=Stage.TEARING_DOWN,
                detail=f"alias cleared; tearing down {len(names)} variant(s): {', '.join(names) or 'none'}",
            )
            task = self.writer.commit(task)
        try:
            for name in names:
                self._remove(name)
        except RetryableError as error:
            self._retry_later(message, error)
            return
        self._end(task, TaskStatus.DONE, f"deleted {len(names)} variant(s): {', '.join(names) or 'none'}")

    def _end(self, task: Task, status: TaskStatus, detail: str) -> None:
        self.writer.end(
            task, status, detail, stage=Stage.FINISHED if status == TaskStatus.DONE else None, forget_model=True
        )
        logger.info("delete ended", extra={"task_id": task.task_id, "embedding_model_id": task.embedding_model_id,
                                           "status": status.value})
