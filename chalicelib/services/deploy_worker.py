"""Services: the deploy worker (deploy-tasks) — observes what the deploy flow's row needs, asks the row
(chalicelib/domain/deploy_flow.py), and applies its decision: one step per message."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace

from chalicelib.config import Settings
from chalicelib.domain import deploy_words as words
from chalicelib.domain.deploy_flow import (
    FAULTS,
    BakeLook,
    Capacity,
    Decision,
    Gate,
    Look,
    Rules,
    Seen,
    Smoke,
    SmokeOutcome,
    Swap,
    decide,
    on_fault,
    select,
)
from chalicelib.domain.errors import (
    ArtifactRefusedError,
    ConcurrentUpdateError,
    InvocationError,
    InvocationTimeoutError,
    RetryableError,
    UnreadableItemError,
)
from chalicelib.domain.messages import Advance, AlarmChanged, Delivery, DeployTasksMessage, EndpointChanged
from chalicelib.domain.models import AlarmState, AlarmThresholds, Alias, ScalingPolicy, Stage, Task, TaskKind
from chalicelib.domain.names import variant_alarm_names
from chalicelib.domain.timing import MAX_EARLY_RESENDS, seconds_until
from chalicelib.ports import (
    Alarms,
    Aliases,
    AliasMirror,
    Artifacts,
    Clock,
    Hosting,
    LiveModelSlots,
    ModelLocks,
    Scaling,
    TaskStore,
    VariantAlarms,
    VariantSpec,
)
from chalicelib.services.alias_writes import change_alias
from chalicelib.services.outbox import TaskWriter
from chalicelib.services.smoke import SmokePlan, check_answer, smoke_plan

logger = logging.getLogger(__name__)

__all__ = ["MAX_EARLY_RESENDS", "DeployWorker"]

_FAULTS = tuple(kind for kind, _status, _why in FAULTS)


@dataclass
class DeployWorker:
    settings: Settings
    store: TaskStore
    aliases: Aliases
    slots: LiveModelSlots
    mirror: AliasMirror
    writer: TaskWriter
    artifacts: Artifacts
    hosting: Hosting
    scaling: Scaling
    alarms: Alarms
    locks: ModelLocks
    clock: Clock

    @property
    def rules(self) -> Rules:
        settings = self.settings
        return Rules(
            timing=settings.timing,
            resource_prefix=settings.resource_prefix,
            max_deployed_models=settings.max_deployed_models,
            alarm_thresholds=AlarmThresholds(
                settings.rollback_max_5xx_errors_per_minute, settings.rollback_max_model_latency_ms
            ),
            smoke_timeout_seconds=settings.smoke_timeout_seconds,
            region=settings.region,
        )

    # ---- entry points -------------------------------------------------------------------

    def handle(self, message: DeployTasksMessage, delivery: Delivery | None = None) -> None:
        """One message from the deploy-tasks queue: our own Advance, SageMaker's endpoint state change
        or CloudWatch's alarm state change. Without a `delivery` (a call outside a queue) the step's
        writes carry a fresh token."""
        if isinstance(message, EndpointChanged):
            self.on_endpoint_changed(message, delivery)
        elif isinstance(message, AlarmChanged):
            self.on_alarm_changed(message, delivery)
        else:
            self.advance(message, delivery)

    def advance(self, message: Advance, delivery: Delivery | None = None) -> None:
        task = self.store.get(message.task_id)
        if task is None or task.kind != TaskKind.DEPLOY:
            logger.warning("advance for an unknown deploy task", extra={"task_id": message.task_id})
            return
        if task.version == message.version + 1 and self._finished_own_write(task, delivery):
            return
        if task.status.is_terminal:
            return
        if message.version > task.version:
            self._come_back_later(message, task)
            return
        if message.version < task.version and task.step_token is not None:
            # A request's write (a cancel, a promote: no token) wakes the task with a message of its
            # own, which may be lost; an older message takes the step then, and a duplicate loses its write.
            logger.info("stale message: a newer step owns this task", extra=_keys(task))
            return
        self._step(task, _token(delivery))

    def _finished_own_write(self, task: Task, delivery: Delivery | None) -> bool:
        """A redelivered message whose own step wrote the task (its send failed, or it died right
        after the write) finishes that step: sends its next message again, due when it was due, or
        gives back what an ended task held. False when the task's last write is not its own."""
        if delivery is None or not delivery.is_redelivery or task.step_token != delivery.message_id:
            return False
        if task.is_active:
            if task.next_at is not None:
                self.writer.send_next(task, seconds_until(self.clock.now(), task.next_at))
        else:
            self.writer.release(task, forget_model=True)
        logger.info("redelivered after its own write: finished that step", extra=_keys(task))
        return True

    def _come_back_later(self, message: Advance, task: Task) -> None:
        """A message ahead of its task's write (an esdeploy from before issue 22 sent the next step
        before its write; such a message may be on the queue during an upgrade): the write is a moment away,
        so it comes back in a few seconds, not after the queue's visibility timeout. A write that never
        lands stops the re-sends after a while; then SQS's redelivery and the DLQ take over."""
        delay = self.settings.timing.early_resend(message.attempt)
        if delay is None:
            raise RetryableError(
                f"task {task.task_id} is still at version {task.version} after {message.attempt} re-sends of "
                f"the message for version {message.version}"
            )
        logger.info(
            "message ahead of the task's write; sending it again shortly",
            extra={**_keys(task), "version": task.version, "message_version": message.version, "delay": delay},
        )
        self.writer.outbox.send(replace(message, attempt=message.attempt + 1), delay_seconds=delay)

    def on_endpoint_changed(self, event: EndpointChanged, delivery: Delivery | None = None) -> None:
        """SageMaker said an endpoint changed state: wake its task now instead of at the next poll."""
        if not event.task_id:
            logger.info("endpoint event without our tags", extra={"endpoint": event.endpoint_name})
            return
        task = self.store.get(event.task_id)
        if task is None or task.variant != event.endpoint_name or self._finished_own_write(task, delivery):
            return
        if task.status.is_terminal or task.stage != Stage.WAITING:
            return
        logger.info("woken by endpoint state change", extra={**_keys(task), "endpoint_status": event.platform_status})
        self._step(task, _token(delivery))

    def on_alarm_changed(self, event: AlarmChanged, delivery: Delivery | None = None) -> None:
        """CloudWatch said an alarm went to ALARM: every baking deploy that watches it looks at its
        alarms now instead of at its next hop (and decides from what DescribeAlarms says)."""
        if event.state != AlarmState.ALARM:
            return
        for lock in self.locks.list_held():
            if lock.kind != TaskKind.DEPLOY:
                continue
            try:
                task = self.store.get(lock.task_id)
            except UnreadableItemError:
                continue  # reported by the store; the other baking deploys still look
            if task is None or not task.is_active or task.stage != Stage.BAKING:
                continue
            if event.alarm_name not in self._watched(task) or self._finished_own_write(task, delivery):
                continue
            logger.info("woken by alarm state change", extra={**_keys(task), "alarm": event.alarm_name})
            self._step(task, _token(delivery))

    # ---- observe, decide, apply ------------------------------------------------------------

    def _step(self, task: Task, token: str) -> None:
        # Whether green is live matters only to a cancel (the first row it can take) and to an end that
        # hands green over; it is read for those alone.
        seen = Seen(now=self.clock.now(), green_live=task.cancel_requested and self._green_live(task))
        row = select(task, seen)
        logger.info("deploy step", extra={**_keys(task), "row": row.name, "version": task.version})
        try:
            decision = decide(row, task, self._look(row.looks, task, seen), self.rules)
        except _FAULTS as fault:
            decision = on_fault(task, fault, replace(seen, green_live=self._green_live(task)), self.rules)
        try:
            self._apply(task, decision, token)
        except ConcurrentUpdateError:
            # Someone else (a duplicate delivery, a cancel, the DLQ handler) wrote the task first and
            # owns the next step; this message has nothing left to do. (A conflict on the alias is
            # not this: change_alias reads and decides again.)
            logger.info("lost a race for the task; the other writer continues", extra=_keys(task))

    def _apply(self, task: Task, decision: Decision, token: str) -> None:
        """Teardowns first (a failed send leaves the task as it was), then the write, then the next step
        (it never arrives before the write it was sent for) or, for an end, what the task held."""
        written = decision.applied(task, self.clock.now())
        for teardown in decision.teardowns:
            self.writer.outbox.send(teardown)
        stored = self._write(written, token, decision.next_in)
        if decision.ends:
            self.writer.release(stored, forget_model=decision.forget_model)
        elif decision.next_in is not None:
            self.writer.send_next(stored, decision.next_in)
        if decision.warn:
            logger.warning(decision.log, extra={**_keys(stored), "detail": stored.detail})
        elif decision.log:
            logger.info(decision.log, extra=_keys(stored))

    def _write(self, task: Task, token: str, next_in: int | None) -> Task:
        try:
            return self.writer.save(task, token=token, next_in=next_in)
        except ConcurrentUpdateError:
            # A conditional write retried after a lost answer fails its own condition: read who wrote.
            stored = self.store.get(task.task_id)
            if stored is None or stored.step_token != token or stored.version != task.version + 1:
                raise
            logger.info("the write had landed although the store answered a conflict", extra=_keys(task))
            return stored

    def _green_live(self, task: Task) -> bool:
        """Whether the alias names green: read from the swap on (before it, only a swap could make it so)."""
        if not task.variant or task.stage not in (Stage.SWAPPING, Stage.BAKING):
            return False
        alias = self.aliases.get(task.embedding_model_id)
        return alias is not None and alias.live_variant == task.variant

    def _look(self, look: Look, task: Task, seen: Seen) -> Seen:
        """What `look` names, observed (and claimed) now; `now` read again once it is done."""
        observe = {
            Look.NOTHING: lambda task, seen: seen,
            Look.LIVE: lambda task, seen: replace(seen, green_live=self._green_live(task)),
            Look.PREFLIGHT: self._see_preflight,
            Look.CREATE: self._see_create,
            Look.ENDPOINT: self._see_endpoint,
            Look.SMOKE: self._see_smoke,
            Look.SWAP: self._see_swap,
            Look.BAKE: self._see_bake,
            Look.ROLLBACK: self._see_rollback,
        }[look]
        return replace(observe(task, seen), now=self.clock.now())

    # ---- the looks -----------------------------------------------------------------------------

    def _gate(self, task: Task) -> tuple[Gate, SmokePlan | None]:
        """The gate's plan from the manifest inside the pinned artifact (the same one at the preflight
        and the smoke test: an upload since then changes nothing). ArtifactRefusedError when it
        cannot be deployed."""
        config = task.deploy_config
        if config.content_hash is None:
            raise ArtifactRefusedError(words.UNPINNED)
        manifest = self.artifacts.read_manifest(config.model_data_url)
        if manifest is None:
            return Gate(missing=True), None
        plan = smoke_plan(
            manifest, embedding_model_id=task.embedding_model_id, content_hash=config.content_hash,
            parity=config.parity_check, serving=config.serving,
        )
        return Gate(len(plan.texts), references=plan.references is not None, dimension=plan.dimension), plan

    def _see_preflight(self, task: Task, seen: Seen) -> Seen:
        gate, _plan = self._gate(task)
        if gate.missing:
            return replace(seen, gate=gate)
        # The slot is taken before anything is created: greens in flight count against the cap.
        full = self.slots.reserve(task.embedding_model_id, task.task_id, self.settings.max_deployed_models)
        if full is not None:
            return replace(seen, gate=gate, capacity=Capacity(full=tuple(full)))
        live = running = None
        if task.deploy_config.match_live_instance_count:
            alias = self.aliases.get(task.embedding_model_id)
            live = alias.live_variant if alias else None
            running = self.hosting.describe(live).instance_count if live else None
        return replace(seen, gate=gate, capacity=Capacity(live_variant=live, live_count=running))

    def _see_create(self, task: Task, seen: Seen) -> Seen:
        config = task.deploy_config
        assert task.variant is not None
        self.hosting.create_variant(
            VariantSpec(
                name=task.variant,
                embedding_model_id=task.embedding_model_id,
                task_id=task.task_id,
                model_data_url=config.model_data_url,
                image_uri=config.image_uri,
                instance_type=config.instance_type,
                initial_instance_count=config.initial_instance_count,
                startup_timeout_seconds=self.settings.container_startup_timeout_seconds,
                download_timeout_seconds=self.settings.model_download_timeout_seconds,
                serving=config.serving,
                dtype=config.dtype,
            )
        )
        return seen

    def _see_endpoint(self, task: Task, seen: Seen) -> Seen:
        assert task.variant is not None
        return replace(seen, endpoint=self.hosting.describe(task.variant))

    def _see_smoke(self, task: Task, seen: Seen) -> Seen:
        assert task.variant is not None
        gate, plan = self._gate(task)
        if plan is None:
            return replace(seen, gate=gate)
        try:
            answer = self.hosting.invoke(
                task.variant, {"inputs": list(plan.texts)}, timeout_seconds=self.settings.smoke_timeout_seconds
            )
        except InvocationTimeoutError:
            return replace(seen, gate=gate, smoke=Smoke(SmokeOutcome.TIMED_OUT))
        except InvocationError as error:
            return replace(seen, gate=gate, smoke=Smoke(SmokeOutcome.UNUSABLE, str(error)))
        problem = check_answer(plan, answer, self.settings.smoke_min_cosine, words.float16_hint(task.deploy_config))
        smoke = Smoke(SmokeOutcome.MISMATCH, problem) if problem else Smoke(SmokeOutcome.PASSED)
        return replace(seen, gate=gate, smoke=smoke)

    def _see_swap(self, task: Task, seen: Seen) -> Seen:
        """Green's autoscaling and alarms exist before it takes traffic (a redelivery puts them again:
        both are upserts); then the alias moves to green, and its SSM copy follows."""
        green, config = task.variant, task.deploy_config
        assert green is not None
        before = self.aliases.get(task.embedding_model_id)
        policy, carried_from = self._green_policy(task, green, before)
        if policy is not None:
            self.scaling.apply(green, policy)
        thresholds = config.alarms.thresholds(self.rules.alarm_thresholds)
        own = self.alarms.put_variant_alarms(VariantAlarms(green, task.embedding_model_id, task.task_id, thresholds))
        names = config.alarms.names
        found = self.alarms.read(names) if names else {}
        alias = change_alias(
            self.aliases, task.embedding_model_id,
            lambda current: current.make_live(
                green, task.task_id, config.content_hash, config.dimension, self.clock.now()
            ),
            read=before,
        )
        assert alias is not None
        self.mirror.publish(alias)
        missing = tuple(name for name in names if name not in found)
        return replace(seen, swap=Swap(alias, own, thresholds, missing, policy, carried_from))

    def _green_policy(self, task: Task, green: str, alias: Alias | None) -> tuple[ScalingPolicy | None, str | None]:
        """Green's autoscaling: the deploy's own policy, or the live variant's carried over (and which)."""
        policy = task.deploy_config.autoscaling
        if policy is not None:
            return policy, None
        blue = None
        if alias is not None:
            blue = alias.live_variant if alias.live_variant != green else alias.previous_variant
        return (self.scaling.policy_of(blue) if blue else None), blue

    def _see_bake(self, task: Task, seen: Seen) -> Seen:
        alias = self.aliases.get(task.embedding_model_id)
        if alias is None or alias.live_variant != task.variant:
            if alias is not None:
                # Rolled back by hand, whose own mirror write may have failed: clients stop resolving green now.
                self.mirror.publish(alias)
            return replace(seen, bake=BakeLook(alias))
        readings = self.alarms.read(self._watched(task))
        return replace(seen, bake=BakeLook(alias, tuple(readings.values())))

    def _see_rollback(self, task: Task, seen: Seen) -> Seen:
        """The alias back to blue in one conditional write (only while green is live and blue is the
        previous variant), its mirror published."""
        green = task.variant
        assert green is not None
        alias = change_alias(
            self.aliases, task.embedding_model_id, lambda current: current.roll_back(self.clock.now(), live=green)
        )
        if alias is not None:
            self.mirror.publish(alias)
        return replace(seen, alias=alias)

    def _watched(self, task: Task) -> tuple[str, ...]:
        own = variant_alarm_names(task.variant) if task.variant else ()
        return (*own, *task.deploy_config.alarms.names)


def _token(delivery: Delivery | None) -> str:
    """What a step's write says of who made it: the queue message's id, else a fresh one."""
    return delivery.message_id if delivery is not None and delivery.message_id else uuid.uuid4().hex


def _keys(task: Task) -> dict[str, str]:
    return {"task_id": task.task_id, "embedding_model_id": task.embedding_model_id, "stage": task.stage.value}
