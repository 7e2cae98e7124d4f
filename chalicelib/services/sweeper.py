"""Services: the scheduled safety net — re-kicks stalled tasks and tears down orphaned variants."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from chalicelib.config import Settings
from chalicelib.domain.messages import TeardownVariant, resume
from chalicelib.domain.models import Alias
from chalicelib.ports import Aliases, Clock, Hosting, ModelLocks, TaskStore, VariantInfo
from chalicelib.services.outbox import Outbox

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    rekicked: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


@dataclass
class Sweeper:
    """A lost message (a send that failed after its step, a crash) must not strand a task,
    and a variant nobody owns must not keep billing: both are found here, every few minutes."""

    settings: Settings
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    outbox: Outbox
    hosting: Hosting
    clock: Clock

    def sweep(self) -> SweepReport:
        report = SweepReport()
        # Variants first. A green is created only after its task recorded the variant's name and
        # while the task holds the model's lease, so whatever this list shows, the reads below see
        # its owner; a green created after the list waits for the next run.
        variants = self.hosting.list_variants(f"{self.settings.resource_prefix}-")
        owned: set[str] = set()
        now = self.clock.now()
        for lock in self.locks.list_held():
            task = self.store.get(lock.task_id)
            if task is None or task.status.is_terminal:
                continue
            if task.variant:
                owned.add(task.variant)
            if (now - task.updated_at).total_seconds() < self.settings.stall_seconds:
                continue
            self.outbox.send(resume(task))
            report.rekicked.append(task.task_id)
            logger.warning("re-kicked a stalled task", extra={"task_id": task.task_id,
                                                              "embedding_model_id": task.embedding_model_id})
        aliases: dict[str, Alias | None] = {}
        for variant in variants:
            if variant.name in owned or self._aliased(variant, aliases):
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
        return report

    def _aliased(self, variant: VariantInfo, read: dict[str, Alias | None]) -> bool:
        """Live or previous in its model's alias, read consistently (not through an index)."""
        model_id = variant.embedding_model_id
        if not model_id:
            return False
        if model_id not in read:
            read[model_id] = self.aliases.get(model_id)
        alias = read[model_id]
        return alias is not None and variant.name in (alias.live_variant, alias.previous_variant)
