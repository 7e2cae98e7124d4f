"""Services: the models' aliases — reading them, and the actions that need the endpoints."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chalicelib.config import Settings
from chalicelib.domain.answer_size import answer_bytes, texts_that_fit
from chalicelib.domain.errors import (
    AliasConflictError,
    AnswerTooLargeError,
    InvalidStateError,
    ModelBusyError,
    ModelNotFoundError,
)
from chalicelib.domain.messages import TeardownVariant
from chalicelib.domain.models import Alias, EndpointState, Stage, Task, TaskKind
from chalicelib.ports import Aliases, AliasMirror, Clock, Hosting, LiveModelSlots, ModelLocks, TaskStore
from chalicelib.services.alias_writes import change_alias
from chalicelib.services.outbox import Outbox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelView:
    """A model as GET /models/{id} shows it: its alias, and the candidate awaiting promotion if any."""

    alias: Alias
    candidate: Task | None = None


def candidate_of(locks: ModelLocks, store: TaskStore, embedding_model_id: str) -> Task | None:
    """The deploy whose green passed the gate and awaits promotion: it holds the model's lease."""
    held = locks.get(embedding_model_id)
    if held is None or held.kind != TaskKind.DEPLOY:
        return None
    task = store.get(held.task_id)
    if task is None or not task.is_active or task.stage != Stage.AWAITING_PROMOTION or not task.variant:
        return None
    return task


def live_alias(aliases: Aliases, embedding_model_id: str) -> Alias:
    """The alias of a model with a live variant; ModelNotFoundError otherwise."""
    alias = aliases.get(embedding_model_id)
    if alias is None or not alias.live_variant:
        raise ModelNotFoundError.not_deployed(embedding_model_id)
    return alias


@dataclass
class ModelReads:
    """What is live: one alias read, no endpoint call (and no SageMaker client to build); for one
    model, also its lease and the task holding it (a candidate awaiting promotion)."""

    aliases: Aliases
    locks: ModelLocks
    store: TaskStore
    slots: LiveModelSlots

    def alias(self, embedding_model_id: str) -> Alias:
        return live_alias(self.aliases, embedding_model_id)

    def model(self, embedding_model_id: str) -> ModelView:
        """The alias and the candidate; a model with only a candidate (a first deploy awaiting
        promotion) shows no live endpoint."""
        candidate = candidate_of(self.locks, self.store, embedding_model_id)
        alias = self.aliases.get(embedding_model_id)
        if alias is None or not alias.live_variant:
            if candidate is None:
                raise ModelNotFoundError.not_deployed(embedding_model_id)
            alias = Alias.none(embedding_model_id)
        return ModelView(alias, candidate)

    def live(self) -> list[Alias]:
        return self.aliases.list_live()

    def listing(self) -> list[ModelView]:
        """GET /models: every model with a live variant or a candidate awaiting promotion (a first
        deploy made with manual promotion has only its candidate), in model id order. One Query of
        the live models' index, one read of the live-model slots (each deploy past its preflight
        holds its model's), and a task read only for a slot that is not the live variant's own:
        never a Scan. The index may lag a swap by a moment: this is for listing, never a decision."""
        views = {alias.embedding_model_id: ModelView(alias) for alias in self.live()}
        for model, task_id in self.slots.holders().items():
            live = views.get(model)
            if live is not None and live.alias.task_id == task_id:
                continue
            task = self.store.get(task_id)
            if task is None or not task.is_active or task.stage != Stage.AWAITING_PROMOTION or not task.variant:
                continue
            views[model] = ModelView(live.alias if live else Alias.none(model), task)
        return [views[model] for model in sorted(views)]


def _answer_fits(payload: dict[str, Any], dimension: int | None) -> None:
    """AnswerTooLargeError before the endpoint is asked, when its answer could not come back: past
    6 MB SageMaker fails the invocation, and the route could not return it either. A variant whose
    dimension was not kept (made before it was) is bounded by the text count alone."""
    if dimension is None:
        return
    inputs = payload.get("inputs")
    texts = len(inputs) if isinstance(inputs, list) else 1
    if texts > texts_that_fit(dimension):
        raise AnswerTooLargeError(texts, dimension, answer_bytes(texts, dimension), texts_that_fit(dimension))


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

    def invoke(self, embedding_model_id: str, payload: dict[str, Any], candidate: bool = False) -> dict[str, Any]:
        """Embed through the alias: whatever variant is live right now answers, within the route's
        budget (InvocationTimeoutError past it: API Gateway would cut the caller off at 29 s anyway).
        With `candidate`, the green of the deploy that awaits promotion answers (to re-embed a corpus
        before the switch)."""
        timeout = self.settings.invoke_timeout_seconds
        waiting = candidate_of(self.locks, self.store, embedding_model_id)
        if candidate:
            if waiting is None or waiting.variant is None:
                raise InvalidStateError(
                    f"Model `{embedding_model_id}` has no candidate awaiting promotion "
                    '(deploy it with config.promotion "manual" and wait for stage awaiting_promotion)'
                )
            _answer_fits(payload, waiting.deploy_config.dimension)
            answer = self.hosting.invoke(waiting.variant, payload, timeout_seconds=timeout)
            return {
                "model": embedding_model_id,
                **answer,
                "endpoint_name": waiting.variant,
                "target": "candidate",
                "task_id": waiting.task_id,
            }
        alias = self.aliases.get(embedding_model_id)
        live = alias.live_variant if alias is not None else None
        if alias is None or live is None:
            if waiting is not None:
                raise ModelNotFoundError.only_a_candidate(embedding_model_id, waiting.task_id)
            raise ModelNotFoundError.not_deployed(embedding_model_id)
        _answer_fits(payload, alias.live_dimension)
        answer = self.hosting.invoke(live, payload, timeout_seconds=timeout)
        # TEI's answer names no model; the handler's names the manifest's, which the gate held equal to this one.
        return {"model": embedding_model_id, **answer, "endpoint_name": live}

    def rollback(self, embedding_model_id: str) -> Alias:
        """Point the alias back at the previous variant while it still exists; one conditional write.
        Allowed while the deploy that made the live variant live is baking: that task sees the alias
        moved at its next look, ends canceled and hands its green to teardown (so this does not)."""
        baking = None
        held = self.locks.get(embedding_model_id)
        if held is not None:
            holder = self.store.get(held.task_id)
            if holder is not None and not holder.status.is_terminal:
                if holder.stage != Stage.BAKING or not holder.variant:
                    raise ModelBusyError(embedding_model_id, held.task_id, held.kind.value)
                baking = holder
        alias = live_alias(self.aliases, embedding_model_id)
        if baking is not None and alias.live_variant != baking.variant:
            # Rolled back already (by hand or by an alarm): its task ends at its next look.
            if self._finish_unpublished_rollback(alias, baking):
                return alias
            raise InvalidStateError(
                f"Model `{embedding_model_id}` was rolled back during the bake of deploy task `{baking.task_id}` "
                f"already; {alias.live_variant} is live"
            )
        previous = alias.previous_variant
        if not previous:
            if self._finish_unpublished_rollback(alias, baking):
                return alias
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
        # Only from the pair checked here: if the alias moved meanwhile, that pair's rollback is not ours to make.
        written = change_alias(
            self.aliases, embedding_model_id,
            lambda current: current.roll_back(self.clock.now(), live=rolled_away, previous=previous),
        )
        if written is None or (written.live_variant, written.previous_variant) != (previous, None):
            raise AliasConflictError(
                f"the alias of `{embedding_model_id}` changed while it was rolled back: it names "
                f"{written.live_variant if written else 'no variant'} now; read it again and roll back again if wanted"
            )
        # The teardown is sent before the mirror is written: if that write fails, the teardown
        # worker publishes the alias again before it removes the variant the mirror still names.
        if baking is None:
            self.outbox.send(TeardownVariant(embedding_model_id, rolled_away, reason=f"rolled back to {previous}"))
        self.mirror.publish(written)
        logger.info("rolled back", extra={"embedding_model_id": embedding_model_id, "live": previous,
                                          "rolled_away": rolled_away,
                                          "baking_task_id": baking.task_id if baking else None})
        return written

    def _finish_unpublished_rollback(self, alias: Alias, baking: Task | None) -> bool:
        """A rollback asked again after its alias write landed but its mirror write did not (SSM
        throttled: the caller saw an error and retried). The alias offers nothing to roll back to any
        more, yet its copy in SSM names another variant, the one rolled away from: publish the alias
        and answer as the first call would have. The rolled-away variant goes to teardown (again: a
        duplicate finds it gone), unless a baking deploy hands it over itself. False when the mirror
        is in step: then nothing is left to finish, and the caller hears why."""
        named = self.mirror.published(alias.embedding_model_id)
        if named is None or named == alias.live_variant:
            return False
        if baking is None:
            self.outbox.send(TeardownVariant(
                alias.embedding_model_id, named, reason=f"rolled back to {alias.live_variant}"))
        self.mirror.publish(alias)
        logger.warning("finished a rollback whose mirror write had not landed",
                       extra={"embedding_model_id": alias.embedding_model_id, "live": alias.live_variant,
                              "mirror_named": named})
        return True
