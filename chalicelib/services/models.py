"""Services: the models' aliases — reading them, and the actions that need the endpoints."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chalicelib.config import Settings
from chalicelib.domain.errors import InvalidStateError, ModelBusyError, ModelNotFoundError
from chalicelib.domain.messages import TeardownVariant
from chalicelib.domain.models import Alias, EndpointState
from chalicelib.ports import Aliases, AliasMirror, Clock, Hosting, ModelLocks, TaskStore
from chalicelib.services.outbox import Outbox

logger = logging.getLogger(__name__)


@dataclass
class ModelReads:
    """What is live: one alias read, no endpoint call (and no SageMaker client to build)."""

    aliases: Aliases

    def alias(self, embedding_model_id: str) -> Alias:
        alias = self.aliases.get(embedding_model_id)
        if alias is None or not alias.live_variant:
            raise ModelNotFoundError.not_deployed(embedding_model_id)
        return alias

    def live(self) -> list[Alias]:
        return self.aliases.list_live()


@dataclass
class ModelActions:
    """Embedding through the alias, and rolling the alias back: both talk to the endpoints."""

    settings: Settings
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    mirror: AliasMirror
    outbox: Outbox
    hosting: Hosting
    clock: Clock

    def invoke(self, embedding_model_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Embed through the alias: whatever variant is live right now answers, within the route's
        budget (InvocationTimeoutError past it: API Gateway would cut the caller off at 29 s anyway)."""
        live = ModelReads(self.aliases).alias(embedding_model_id).live_variant
        assert live is not None
        answer = self.hosting.invoke(live, payload, timeout_seconds=self.settings.invoke_timeout_seconds)
        return {**answer, "endpoint_name": live}

    def rollback(self, embedding_model_id: str) -> Alias:
        """Point the alias back at the previous variant while it still exists; one conditional write."""
        held = self.locks.get(embedding_model_id)
        if held is not None:
            holder = self.store.get(held.task_id)
            if holder is not None and not holder.status.is_terminal:
                raise ModelBusyError(embedding_model_id, held.task_id, held.kind.value)
        alias = ModelReads(self.aliases).alias(embedding_model_id)
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
            Alias(
                embedding_model_id,
                previous,
                None,
                alias.task_id,
                self.clock.now(),
                live_content_hash=alias.previous_content_hash,
            ),
            expected_version=alias.version,
        )
        self.mirror.publish(written)
        self.outbox.send(TeardownVariant(embedding_model_id, rolled_away, reason=f"rolled back to {previous}"))
        logger.info("rolled back", extra={"embedding_model_id": embedding_model_id, "live": previous,
                                          "rolled_away": rolled_away})
        return written
