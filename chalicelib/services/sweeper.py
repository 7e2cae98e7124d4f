"""Services: the scheduled safety net — re-kicks stalled tasks and tears down orphaned variants."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from chalicelib.config import Settings
from chalicelib.domain.errors import UnreadableItemError
from chalicelib.domain.messages import TeardownVariant, resume
from chalicelib.domain.models import Alias, Task
from chalicelib.ports import Aliases, Clock, Hosting, LiveModelSlots, ModelLocks, TaskStore, VariantInfo
from chalicelib.services.outbox import Outbox

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class SweepReport:
    rekicked: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    freed_slots: list[str] = field(default_factory=list)


@dataclass
class Sweeper:
    """A lost message (a send that failed after its step, a crash) must not strand a task,
    and a variant nobody owns must not keep billing: both are found here, every few minutes."""

    settings: Settings
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    slots: LiveModelSlots
    outbox: Outbox
    hosting: Hosting
    clock: Clock

    def sweep(self) -> SweepReport:
        report = SweepReport()
        # Variants first. A green is created only after its task recorded the variant's name and
        # while the task holds the model's lease, so whatever this list shows, the reads below see
        # its owner; a green created after the list waits for the next run.
        variants = self.hosting.list_variants(f"{self.settings.resource_prefix}-")
        reads = _Reads(self.store, self.aliases)
        owned: set[str] = set()
        stalled: list[Task] = []
        # An item that cannot be read (a hand edit in the console) is reported where it is read, and
        # only its own model waits for someone to repair it: the sweep goes on with every other model.
        for lock in self.locks.list_held():
            task = reads.task(lock.task_id)
            if task is None or task.status.is_terminal:
                continue
            if task.variant:
                owned.add(task.variant)
            if self._stalled(task):
                stalled.append(task)
        # Oldest first, and a bounded number per run: a long queue backlog looks like many stalls,
        # and re-sending all of them every run only lengthens the queue.
        stalled.sort(key=self._last_sign_of_life)
        for task in stalled[: self.settings.sweep_max_rekicks]:
            if self._rekick(task):
                report.rekicked.append(task.task_id)
        if len(stalled) > self.settings.sweep_max_rekicks:
            logger.warning("more stalled tasks than one sweep re-kicks; the rest wait for the next run",
                           extra={"stalled": len(stalled), "limit": self.settings.sweep_max_rekicks})
        for variant in variants:
            if variant.name in owned or self._kept(variant, reads):
                continue
            # Previous variants still baking are owned by their alias; so an unowned one is a leak.
            # The teardown worker checks its task and the model's lease once more before deleting.
            self.outbox.send(
                TeardownVariant(
                    variant.embedding_model_id or "", variant.name, reason="orphan sweep", task_id=variant.task_id
                )
            )
            report.orphans.append(variant.name)
            logger.warning(
                "orphaned variant handed to teardown",
                extra={"variant": variant.name, "embedding_model_id": variant.embedding_model_id},
            )
        report.freed_slots = self._free_abandoned_slots(reads)
        return report

    def _free_abandoned_slots(self, reads: _Reads) -> list[str]:
        """A task ends by freeing its live-model slot unless its model is live; a crash between
        its last write and that leaves the slot taken. The release is conditional on the task
        that reserved it, so a deploy that reserves the model's slot meanwhile keeps it."""
        freed = []
        for model_id, task_id in sorted(self.slots.holders().items()):
            task = reads.task(task_id)
            if (task is not None and task.is_active) or task_id in reads.unreadable_tasks:
                continue
            alias = reads.alias(model_id)
            if (alias is not None and alias.live_variant) or model_id in reads.unreadable_models:
                continue
            self.slots.release(model_id, task_id)
            freed.append(model_id)
            logger.warning("freed the live-model slot of a model neither live nor being deployed",
                           extra={"embedding_model_id": model_id, "task_id": task_id})
        return freed

    def _last_sign_of_life(self, task: Task) -> datetime:
        return max(task.updated_at, task.rekicked_at or task.updated_at)

    def _stalled(self, task: Task) -> bool:
        """No progress, and no re-kick either, for a whole stall window."""
        quiet = (self.clock.now() - self._last_sign_of_life(task)).total_seconds()
        return quiet >= self.settings.stall_seconds

    def _rekick(self, task: Task) -> bool:
        """Record the re-kick on the task, then re-send its next step: the next runs leave it alone
        for a stall window. A task written meanwhile was not stalled. (Recorded first: a lost send
        is found again one stall window later; a duplicate step finds the version moved on.)"""
        if not self.store.note_rekick(task, self.clock.now()):
            return False
        self.outbox.send(resume(task))
        logger.warning("re-kicked a stalled task", extra={"task_id": task.task_id,
                                                          "embedding_model_id": task.embedding_model_id})
        return True

    def _kept(self, variant: VariantInfo, reads: _Reads) -> bool:
        """Live or previous in its model's alias (read consistently, not through an index), or still
        its own task's green; kept too while either cannot be read: only a repair can tell."""
        if variant.task_id:
            task = reads.task(variant.task_id)
            if variant.task_id in reads.unreadable_tasks or (task is not None and task.is_active
                                                       and task.variant == variant.name):
                return True
        model_id = variant.embedding_model_id
        if not model_id:
            return False
        alias = reads.alias(model_id)
        return model_id in reads.unreadable_models or (
            alias is not None and variant.name in (alias.live_variant, alias.previous_variant)
        )


class _Reads:
    """One sweep's reads of tasks and aliases, each read once; what cannot be read is remembered
    (the adapter reported it) so that nothing is decided on it."""

    def __init__(self, store: TaskStore, aliases: Aliases) -> None:
        self._store = store
        self._aliases = aliases
        self._tasks: dict[str, Task | None] = {}
        self._alias_of: dict[str, Alias | None] = {}
        self.unreadable_tasks: set[str] = set()
        self.unreadable_models: set[str] = set()

    def task(self, task_id: str) -> Task | None:
        if task_id not in self._tasks:
            self._tasks[task_id] = _read(task_id, self._store.get, self.unreadable_tasks)
        return self._tasks[task_id]

    def alias(self, model_id: str) -> Alias | None:
        if model_id not in self._alias_of:
            self._alias_of[model_id] = _read(model_id, self._aliases.get, self.unreadable_models)
        return self._alias_of[model_id]


def _read(key: str, read: Callable[[str], T | None], unreadable: set[str]) -> T | None:
    try:
        return read(key)
    except UnreadableItemError:
        unreadable.add(key)
        return None
