"""Services: reading aliases, rolling a model back, and cancelling a deploy."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.errors import InvalidStateError, ModelBusyError, ModelNotFoundError, TaskNotFoundError
from chalicelib.domain.messages import TeardownVariant
from chalicelib.domain.models import Alias, EndpointState, Stage, Task, TaskKind, TaskStatus
from chalicelib.ports import Aliases, AliasMirror, Clock, Hosting, ModelLocks, Queue, TaskStore
from chalicelib.services.deployer import Deployer

logger = logging.getLogger(__name__)


@dataclass
class ModelService:
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    mirror: AliasMirror
    teardown_queue: Queue
    hosting: Hosting
    deployer: Deployer
    clock: Clock

    def alias(self, embedding_model_id: str) -> Alias:
        alias = self.aliases.get(embedding_model_id)
        if alias is None or not alias.live_variant:
            raise ModelNotFoundError(f"Model `{embedding_model_id}` is not deployed")
        return alias

    def live(self) -> list[Alias]:
        return self.aliases.list_live()

    def invoke(self, embedding_model_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Embed through the alias: whatever variant is live right now answers."""
        alias = self.alias(embedding_model_id)
        assert alias.live_variant is not None
        answer = self.hosting.invoke(alias.live_variant, payload)
        return {**answer, "endpoint_name": alias.live_variant}

    def rollback(self, embedding_model_id: str) -> Alias:
        """Point the alias back at the previous variant while it still exists; one conditional write."""
        held = self.locks.get(embedding_model_id)
        if held is not None:
            holder = self.store.get(held.task_id)
            if holder is not None and not holder.status.is_terminal:
                raise ModelBusyError(embedding_model_id, held.task_id, held.kind.value)
        alias = self.alias(embedding_model_id)
        previous = alias.previous_variant
        if not previous:
            raise InvalidStateError(
                f"Model `{embedding_model_id}` has no previous variant to roll back to "
                "(none was deployed before, or its bake period is over and it was removed)"
            )
        state = self.hosting.describe(previous).state
        if state != EndpointState.IN_SERVICE:
            raise InvalidStateError(
                f"previous variant {previous} of `{embedding_model_id}` is {state.value}, not in service"
            )
        rolled_away = alias.live_variant
        assert rolled_away is not None
        written = self.aliases.swap(
            Alias(embedding_model_id, previous, None, alias.task_id, self.clock.now()),
            expected_version=alias.version,
        )
        self.mirror.publish(written)
        self.teardown_queue.send(
            TeardownVariant(embedding_model_id, rolled_away, reason=f"rolled back to {previous}")
        )
        logger.info("rolled back", extra={"embedding_model_id": embedding_model_id, "live": previous,
                                          "rolled_away": rolled_away})
        return written

    def cancel(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        if task is None or task.kind != TaskKind.DEPLOY:
            raise TaskNotFoundError(f"Deployment task with ID `{task_id}` is not found")
        if task.status.is_terminal:
            raise InvalidStateError(f"Deployment task `{task_id}` is already {task.status.value}")
        if task.stage == Stage.FINISHED:
            raise InvalidStateError(f"Deployment task `{task_id}` has swapped already; roll back instead")
        if task.cancel_requested:
            return task
        if task.status == TaskStatus.PENDING and task.variant is None:
            # Nothing was created yet: end it here; its queued message will find it terminal.
            task.record(at=self.clock.now(), status=TaskStatus.CANCELED, detail="canceled before it started")
            stored = self.store.update(task)
            self.locks.release(task.embedding_model_id, task.task_id)
            return stored
        return self.deployer.request_cancel(task)
