"""Services: the scheduled safety net — re-kicks stalled tasks and tears down orphaned variants."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from chalicelib.config import Settings
from chalicelib.domain.messages import TeardownVariant, resume
from chalicelib.ports import Aliases, Clock, Hosting, ModelLocks, TaskStore
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
        for alias in self.aliases.list_live():
            owned.update(v for v in (alias.live_variant, alias.previous_variant) if v)
        for variant in self.hosting.list_variants(f"{self.settings.resource_prefix}-"):
            if variant.name in owned:
                continue
            # Previous variants still baking are owned by their alias; so an unowned one is a leak.
            self.outbox.send(TeardownVariant(variant.embedding_model_id or "", variant.name, reason="orphan sweep"))
            report.orphans.append(variant.name)
            logger.warning(
                "orphaned variant handed to teardown",
                extra={"variant": variant.name, "embedding_model_id": variant.embedding_model_id},
            )
        return report
