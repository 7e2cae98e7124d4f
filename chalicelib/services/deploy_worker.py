"""Services: the deploy worker (deploy-tasks) — advances one deploy task by one step per message."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from chalicelib.config import SQS_MAX_DELAY_SECONDS, Settings
from chalicelib.domain.errors import (
    ArtifactRefusedError,
    ConcurrentUpdateError,
    InvocationError,
    InvocationTimeoutError,
    QuotaExceededError,
    QuotaKind,
    RetryableError,
    TerminalHostingError,
    UnreadableItemError,
)
from chalicelib.domain.messages import (
    Advance,
    AlarmChanged,
    DeployTasksMessage,
    EndpointChanged,
    TeardownVariant,
    green_teardown,
)
from chalicelib.domain.models import (
    STAGES_WITH_GREEN,
    AlarmReading,
    AlarmState,
    AlarmThresholds,
    Alias,
    DeployConfig,
    EndpointState,
    ParityCheck,
    Promotion,
    Stage,
    Task,
    TaskKind,
    TaskStatus,
    iso,
)
from chalicelib.domain.names import resource_name_prefix, variant_alarm_names, variant_name
from chalicelib.domain.serving import Dtype, Processor, processor_of
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

# With ESDEPLOY_EARLY_MESSAGE_DELAY_SECONDS between them: a minute by default.
MAX_EARLY_RESENDS = 12


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

    # ---- entry points -------------------------------------------------------------------

    def handle(self, message: DeployTasksMessage) -> None:
        """One message from the deploy-tasks queue: our own Advance, SageMaker's endpoint state change
        or CloudWatch's alarm state change."""
        if isinstance(message, EndpointChanged):
            self.on_endpoint_changed(message)
        elif isinstance(message, AlarmChanged):
            self.on_alarm_changed(message)
        else:
            self.advance(message)

    def advance(self, message: Advance) -> None:
        task = self.store.get(message.task_id)
        if task is None or task.kind != TaskKind.DEPLOY:
            logger.warning("advance for an unknown deploy task", extra={"task_id": message.task_id})
            return
        if task.status.is_terminal:
            return
        if message.version < task.version:
            logger.info("stale message: a newer step owns this task", extra=_keys(task))
            return
        if message.version > task.version:
            self._come_back_later(message, task)
            return
        self._step(task)

    def _come_back_later(self, message: Advance, task: Task) -> None:
        """The message overtook the write of the step that sent it (send, then write): that write is
        a moment away, so the message comes back in a few seconds, not after the queue's visibility
        timeout. A write that never lands (its step crashed, and SQS redelivers that step's own
        message) stops the re-sends after a while; then SQS's redelivery and the DLQ take over."""
        if message.attempt >= MAX_EARLY_RESENDS:
            raise RetryableError(
                f"task {task.task_id} is still at version {task.version} after {message.attempt} re-sends of "
                f"the message for version {message.version}"
            )
        delay = self.settings.early_message_delay_seconds
        logger.info(
            "message ahead of the task's write; sending it again shortly",
            extra={**_keys(task), "version": task.version, "message_version": message.version, "delay": delay},
        )
        self.writer.outbox.send(replace(message, attempt=message.attempt + 1), delay_seconds=delay)

    def on_endpoint_changed(self, event: EndpointChanged) -> None:
        """SageMaker said an endpoint changed state: wake its task now instead of at the next poll."""
        if not event.task_id:
            logger.info("endpoint event without our tags", extra={"endpoint": event.endpoint_name})
            return
        task = self.store.get(event.task_id)
        if (
            task is None
            or task.status.is_terminal
            or task.stage != Stage.WAITING
            or task.variant != event.endpoint_name
        ):
            return
        logger.info(
            "woken by endpoint state change",
            extra={**_keys(task), "endpoint_status": event.platform_status},
        )
        self._step(task)

    def on_alarm_changed(self, event: AlarmChanged) -> None:
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
            if event.alarm_name not in self._watched(task):
                continue
            logger.info("woken by alarm state change", extra={**_keys(task), "alarm": event.alarm_name})
            self._step(task)

    # ---- the state machine ----------------------------------------------------------------

    def _step(self, task: Task) -> None:
        steps = {
            Stage.QUEUED: self._preflight,
            Stage.CREATING: self._create,
            Stage.WAITING: self._wait,
            Stage.VERIFYING: self._verify,
            Stage.AWAITING_PROMOTION: self._await_promotion,
            Stage.SWAPPING: self._swap,
            Stage.BAKING: self._bake,
        }
        logger.info("deploy step", extra={**_keys(task), "version": task.version, "polls": task.polls})
        try:
            if task.stage == Stage.BAKING:
                # Green is live: a cancel is a rollback, and the bake has its own end.
                self._bake(task)
            elif task.cancel_requested and not self._is_live(task):
                self._finish_canceled(task)
            elif task.stage == Stage.AWAITING_PROMOTION and self._past_deadline(task) and not task.promote_requested:
                self._promotion_timed_out(task)
            elif task.stage in STAGES_WITH_GREEN and self._past_deadline(task):
                self._fail(task, TaskStatus.FAILED, self._deadline_detail(task))
            else:
                steps[task.stage](task)
        except ConcurrentUpdateError:
            # Someone else (a duplicate delivery, a cancel, the DLQ handler) wrote the task first
            # and owns the next step; this message has nothing left to do. (A conflict on the
            # alias is not this: change_alias reads and decides again.)
            logger.info("lost a race for the task; the other writer continues", extra=_keys(task))
        except QuotaExceededError as error:
            # Not a fault of the deploy: the account's quota says no until someone raises it.
            self._fail(task, TaskStatus.REFUSED, self._quota_detail(task, error))
        except TerminalHostingError as error:
            self._fail(task, TaskStatus.FAILED, str(error))
        except ArtifactRefusedError as error:
            # No retry can make a malformed or foreign artifact deployable: end it now, naming why.
            self._fail(task, TaskStatus.REFUSED, str(error))

    def _preflight(self, task: Task) -> None:
        config = task.deploy_config
        now = self.clock.now()
        task.record(at=now, stage=Stage.PREFLIGHT, status=TaskStatus.PROCESSING)
        plan = self._smoke_plan(task)
        if plan is None:
            return
        cap = self.settings.max_deployed_models
        # The slot is taken before anything is created: greens in flight count against the cap.
        full = self.slots.reserve(task.embedding_model_id, task.task_id, cap)
        if full is not None:
            shown = ", ".join(full[:10]) + (", ..." if len(full) > 10 else "")
            self._fail(
                task,
                TaskStatus.REFUSED,
                f"{len(full)} models are deployed or being deployed ({shown}), the stage's cap is {cap}: "
                "delete a model or raise the cap",
            )
            return
        capacity = self._match_live_capacity(task)
        task.variant = variant_name(self.settings.resource_prefix, task.embedding_model_id, task.task_id)
        task.deadline_at = now + timedelta(seconds=self.settings.deploy_deadline_seconds)
        checked = (
            f"{len(plan.texts)} probe texts with reference embeddings"
            if plan.references is not None
            else f"{len(plan.texts)} probe texts; the parity check will be skipped (config.parity_check=skip)"
        )
        task.record(
            at=now,
            stage=Stage.CREATING,
            detail=f"artifact {str(config.content_hash)[:12]} checked: manifest of {task.embedding_model_id}, "
            f"{checked}; live-model slot reserved (cap {cap}); {capacity}; creating {task.variant}",
        )
        self.writer.advance(task)

    def _match_live_capacity(self, task: Task) -> str:
        """Green's instance count, said for the task's events: the deploy's own, or (when it named
        none) as many as the live variant runs now, read here, so a blue scaled up under load is
        not replaced by a single instance."""
        config = task.deploy_config
        count = config.initial_instance_count
        if not config.match_live_instance_count:
            said = f"green starts at {count} instance(s) (config.initial_instance_count)"
        else:
            alias = self.aliases.get(task.embedding_model_id)
            live = alias.live_variant if alias else None
            running = self.hosting.describe(live).instance_count if live else None
            if not live:
                said = f"green starts at {count} instance(s) (no live variant to match)"
            elif running is None:
                said = f"green starts at {count} instance(s) (the live {live} did not say how many it runs)"
            else:
                count = running
                said = f"green starts at {count} instance(s), as many as the live {live} runs now"
        scaling = config.autoscaling
        if scaling is not None and not scaling.min_instances <= count <= scaling.max_instances:
            count = min(max(count, scaling.min_instances), scaling.max_instances)
            said += f", {count} within config.autoscaling's {scaling.min_instances}-{scaling.max_instances}"
        task.config["initial_instance_count"] = count
        return said

    def _quota_detail(self, task: Task, error: QuotaExceededError) -> str:
        """Names the quota SageMaker named (an instance type's, the instance total, or the count of
        models, endpoint configurations or endpoints), and what helps with that one."""
        config = task.deploy_config
        region = f" in {self.settings.region}" if self.settings.region else ""
        which = f"the SageMaker quota '{error.quota}'" if error.quota else "a SageMaker quota"
        asked = f"{config.initial_instance_count} x {config.instance_type} were asked for"
        if error.kind is QuotaKind.RESOURCES:
            asked = f"creating {task.variant} needs one more of what it counts"
        return (
            f"refused by {which}{region}: {asked}. {error.remedy()}; nothing was left running. "
            f"SageMaker said: {error.said}"
        )

    def _smoke_plan(self, task: Task) -> SmokePlan | None:
        """The plan from the manifest inside the pinned artifact; None when the task has ended.
        ArtifactRefusedError (raised) ends it refused."""
        config = task.deploy_config
        if config.content_hash is None:
            raise ArtifactRefusedError(
                "this task was stored before deploys pinned their artifact's content hash; submit it again"
            )
        manifest = self.artifacts.read_manifest(config.model_data_url)
        if manifest is None:
            self._fail(
                task,
                TaskStatus.FAILED,
                f"Model artifact not found at {config.model_data_url} (pinned when the deploy was submitted): "
                "was it deleted? Upload it again (esdeploy package MODEL_DIR "
                f"--model-id {task.embedding_model_id} --upload ...) and deploy again",
            )
            return None
        return smoke_plan(
            manifest,
            embedding_model_id=task.embedding_model_id,
            content_hash=config.content_hash,
            parity=config.parity_check,
            serving=config.serving,
        )

    def _create(self, task: Task) -> None:
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
        task.record(at=self.clock.now(), stage=Stage.WAITING, detail=f"endpoint {task.variant} requested")
        self.writer.advance(task, delay_seconds=self.settings.poll_initial_seconds)

    def _wait(self, task: Task) -> None:
        assert task.variant is not None
        status = self.hosting.describe(task.variant)
        if status.state == EndpointState.IN_SERVICE:
            task.record(at=self.clock.now(), stage=Stage.VERIFYING, detail="endpoint InService")
            self.writer.advance(task)
        elif status.state == EndpointState.CREATING:
            task.polls += 1
            self.writer.advance(task, delay_seconds=self.settings.poll_delay(task.polls))
        elif status.state == EndpointState.FAILED:
            reason = status.failure_reason or "no reason given"
            self._fail(task, TaskStatus.FAILED, f"SageMaker endpoint {task.variant} failed: {reason}")
        else:
            self._fail(
                task,
                TaskStatus.FAILED,
                f"endpoint {task.variant} is {status.platform_status or status.state.value} while "
                "we waited for it to come up; was it deleted outside esdeploy?",
            )

    def _verify(self, task: Task) -> None:
        assert task.variant is not None
        # The same pinned artifact the preflight checked: an upload since then changes nothing here.
        plan = self._smoke_plan(task)
        if plan is None:
            return
        timeout = self.settings.smoke_timeout_seconds
        try:
            answer = self.hosting.invoke(task.variant, {"inputs": list(plan.texts)}, timeout_seconds=timeout)
        except InvocationTimeoutError:
            self._fail(
                task,
                TaskStatus.FAILED,
                f"smoke test: the endpoint did not answer the probe texts within the stage's {timeout} s",
            )
            return
        except InvocationError as error:
            self._fail(task, TaskStatus.FAILED, f"smoke test: the endpoint did not answer properly: {error}")
            return
        problem = check_answer(plan, answer, self.settings.smoke_min_cosine, _float16_hint(task.deploy_config))
        if problem:
            self._fail(task, TaskStatus.FAILED, problem)
            return
        checked = (
            "reference embeddings"
            if plan.references is not None
            else "shape and norms only: the parity check was skipped, config.parity_check=skip"
        )
        passed = f"smoke test passed on {len(plan.texts)} probe texts ({checked})"
        # Green answered with the manifest's dimension: the alias keeps it, to bound invoke batches.
        task.config["dimension"] = plan.dimension
        if task.deploy_config.promotion is Promotion.MANUAL:
            self._hold_for_promotion(task, passed)
            return
        task.record(at=self.clock.now(), stage=Stage.SWAPPING, detail=passed)
        self.writer.advance(task)

    def _hold_for_promotion(self, task: Task, passed: str) -> None:
        """Green passed the gate and waits beside blue, the alias unmoved, until it is promoted
        (TaskService.promote), canceled, or its promotion window ends."""
        now = self.clock.now()
        window = task.deploy_config.promotion_timeout_seconds or self.settings.default_promotion_timeout_seconds
        # The promotion window replaces the deploy deadline: the wait is meant to be long.
        task.deadline_at = now + timedelta(seconds=window)
        task.polls = 0
        task.record(
            at=now,
            stage=Stage.AWAITING_PROMOTION,
            detail=f"{passed}; candidate {task.variant} awaits promotion until {iso(task.deadline_at)}: "
            f"POST /deploy/{task.task_id}/promote to make it live, or /cancel to discard it",
        )
        self.writer.advance(task, delay_seconds=self._promotion_hop(task))

    def _await_promotion(self, task: Task) -> None:
        if task.promote_requested:
            assert task.variant is not None
            # It passed the gate hours ago, maybe: an endpoint that failed or was deleted since
            # must not become live.
            status = self.hosting.describe(task.variant)
            if status.state != EndpointState.IN_SERVICE:
                shown = status.platform_status or status.state.value
                reason = f" ({status.failure_reason})" if status.failure_reason else ""
                self._fail(
                    task,
                    TaskStatus.FAILED,
                    f"promoted, but candidate {task.variant} is {shown}{reason}, no longer in service: "
                    "the alias stays where it was; deploy again",
                )
                return
            now = self.clock.now()
            task.deadline_at = now + timedelta(seconds=self.settings.deploy_deadline_seconds)
            task.record(at=now, stage=Stage.SWAPPING, detail=f"promoted: {task.variant} goes live")
            self.writer.advance(task)
            return
        # A wake-up in hops until the window ends; each one is written, so a duplicate hop (or
        # the sweeper's re-kick) finds the version moved on instead of starting a second chain.
        task.polls += 1
        task.updated_at = self.clock.now()
        self.writer.advance(task, delay_seconds=self._promotion_hop(task))

    def _promotion_hop(self, task: Task) -> int:
        """Seconds to the next look: the window's end, in hops no longer than the longest poll, so
        the sweeper (which re-kicks a task quiet for a stall window) sees it alive."""
        assert task.deadline_at is not None
        # One second past the end: the window is over only once `now > deadline_at`.
        return _hop(self.clock.now(), task.deadline_at, self.settings.poll_max_seconds or 1, margin=1)

    def _promotion_timed_out(self, task: Task) -> None:
        window = task.deploy_config.promotion_timeout_seconds or self.settings.default_promotion_timeout_seconds
        green = self._green_teardown(task, reason="promotion window ended")
        detail = (
            f"canceled: candidate {task.variant} was not promoted within {_duration(window)} "
            f"(config.promotion_timeout_seconds={window}); it is torn down and the alias stays where it was"
        )
        self.writer.end(task, TaskStatus.CANCELED, detail, *green, forget_model=True)
        logger.warning("promotion window ended", extra=_keys(task))

    def _swap(self, task: Task) -> None:
        green = task.variant
        assert green is not None
        config = task.deploy_config
        scaled = self._scale_green(task, green)
        # The alarms exist before green takes traffic (a redelivery puts them again: an upsert).
        thresholds = self._thresholds(task)
        own = self.alarms.put_variant_alarms(
            VariantAlarms(green, task.embedding_model_id, task.task_id, thresholds)
        )
        found = self.alarms.read(config.rollback_alarms) if config.rollback_alarms else {}
        missing = [name for name in config.rollback_alarms if name not in found]

        def make_green_live(current: Alias | None) -> Alias | None:
            if current is not None and current.live_variant == green:
                return None  # a redelivery: the swap happened already
            return Alias(
                embedding_model_id=task.embedding_model_id,
                live_variant=green,
                previous_variant=current.live_variant if current else None,
                task_id=task.task_id,
                swapped_at=self.clock.now(),
                live_content_hash=config.content_hash,
                previous_content_hash=current.live_content_hash if current else None,
                previous_task_id=current.task_id if current else None,
                live_dimension=config.dimension,
                previous_dimension=current.live_dimension if current else None,
            )

        alias = change_alias(self.aliases, task.embedding_model_id, make_green_live)
        assert alias is not None
        self.mirror.publish(alias)
        now = self.clock.now()
        # The swap's own time, also when a redelivery finds it made.
        task.live_at = alias.swapped_at if alias.task_id == task.task_id and alias.swapped_at else now
        blue = alias.previous_variant if alias.previous_variant != green else None
        bake = config.bake_seconds
        detail = f"{green} is live"
        if scaled:
            detail += f"; {scaled}"
        if config.parity_check is ParityCheck.SKIP:
            detail += "; the parity check was skipped (config.parity_check=skip): only shape and norms were checked"
        watching = (
            f"alarms {', '.join(own)} (5XX errors over {thresholds.max_5xx_errors_per_minute} a minute, "
            f"model latency over {thresholds.max_model_latency_ms} ms)"
        )
        if config.rollback_alarms:
            watching += f" and config.rollback_alarms {', '.join(config.rollback_alarms)}"
        woken_by = resource_name_prefix(self.settings.resource_prefix)
        polled = [name for name in config.rollback_alarms if not name.startswith(woken_by)]
        if polled:
            watching += (
                f" ({', '.join(polled)} read at each look only: a state change wakes the bake at once "
                f"only for alarms named {woken_by}*)"
            )
        if missing:
            watching += (
                f"; config.rollback_alarms {', '.join(missing)} "
                f"{'does' if len(missing) == 1 else 'do'} not exist in CloudWatch, so "
                f"{'it cannot fire' if len(missing) == 1 else 'they cannot fire'} (watched from the moment "
                "one exists; the deploy goes on)"
            )
        if blue is None or bake == 0:
            if blue is None:
                detail += (
                    "; the first live variant of the model: there is nothing to roll back to, so no bake; "
                    f"{', '.join(own)} stay on it and go with it"
                )
            else:
                detail += f"; no bake (config.bake_seconds=0): {blue} is torn down now"
            if task.cancel_requested:
                detail += " (a cancel arrived after the swap; roll back to undo)"
            done = self._blue_teardown(task, blue, reason=f"replaced by {green}; no bake") if blue else ()
            self.writer.end(task, TaskStatus.DONE, detail, *done, stage=Stage.FINISHED)
            logger.info("deploy done", extra=_keys(task))
            return
        ends = task.bake_ends_at
        assert ends is not None
        detail += (
            f"; baking until {iso(ends)} ({_duration(bake)}): {blue} stays up for a rollback in one write, "
            f"{watching} are watched every {_duration(self.settings.bake_check_seconds)}; "
            "any of them in ALARM rolls back to " + blue
        )
        task.polls = 0
        task.record(at=now, stage=Stage.BAKING, detail=detail)
        self.writer.advance(task, delay_seconds=self._bake_hop(task))
        logger.info("deploy live, baking", extra=_keys(task))

    # ---- the bake -------------------------------------------------------------------------------

    def _bake(self, task: Task) -> None:
        """One look during the bake: a decided rollback, a cancel, a rollback by hand, the alarms,
        the bake's end; else the next look, one written hop later."""
        green = task.variant
        assert green is not None
        if task.rollback_detail:
            self._roll_back(task, TaskStatus.FAILED, task.rollback_detail)
            return
        if task.cancel_requested:
            self._roll_back(
                task, TaskStatus.CANCELED,
                f"canceled during the bake: the alias went back to the previous variant and {green} is torn down",
            )
            return
        alias = self.aliases.get(task.embedding_model_id)
        if alias is None or alias.live_variant != green:
            live = alias.live_variant if alias else None
            since = f" since {iso(alias.swapped_at)}" if alias and alias.swapped_at else ""
            if alias is not None:
                # The rollback's own mirror write may have failed: clients stop resolving green now.
                self.mirror.publish(alias)
            detail = (
                f"canceled: rolled back by hand during the bake (POST /models/{task.embedding_model_id}/rollback): "
                f"the alias is on {live or 'no variant'}{since}; {green} is torn down"
            )
            self.writer.end(task, TaskStatus.CANCELED, detail, *self._green_teardown(task, "rolled back by hand"))
            logger.warning("rolled back by hand during the bake", extra=_keys(task))
            return
        blue = alias.previous_variant
        firing = sorted(
            (r for r in self.alarms.read(self._watched(task)).values() if r.state == AlarmState.ALARM),
            key=lambda r: (r.since is None, r.since or self.clock.now(), r.name),
        )
        now = self.clock.now()
        if firing and blue:
            # Written first, so the step that moves the alias (or its redelivery after a crash)
            # knows why, even when the alarm is OK again by then.
            task.rollback_detail = _alarm_detail(firing, green, blue)
            task.record(at=now, detail=f"{firing[0].name} is in ALARM: rolling back to {blue}")
            self.writer.advance(task)
            return
        ends = task.bake_ends_at
        assert ends is not None
        if now >= ends:
            gone = self._blue_teardown(task, blue, reason=f"replaced by {green}; bake over") if blue else ()
            detail = (
                f"bake of {_duration(task.deploy_config.bake_seconds)} over with no watched alarm in ALARM; "
                f"{green} stays live" + (f" and {blue} is torn down" if blue else "")
            )
            self.writer.end(task, TaskStatus.DONE, detail, *gone, stage=Stage.FINISHED)
            logger.info("deploy done: bake over", extra=_keys(task))
            return
        # A wake-up in hops until the bake ends; each one is written (see _await_promotion).
        task.polls += 1
        task.updated_at = now
        self.writer.advance(task, delay_seconds=self._bake_hop(task))

    def _roll_back(self, task: Task, status: TaskStatus, detail: str) -> None:
        """The alias back to blue in one conditional write (only while green is live and blue is the
        previous variant), its mirror published, the task ended, green handed to teardown."""
        green = task.variant

        def back_to_blue(current: Alias | None) -> Alias | None:
            if current is None or current.live_variant != green or not current.previous_variant:
                return None
            return Alias(
                task.embedding_model_id,
                current.previous_variant,
                None,
                current.previous_task_id,  # the task of the variant live again, not the rolled-back one
                self.clock.now(),
                live_content_hash=current.previous_content_hash,
                live_dimension=current.previous_dimension,
            )

        alias = change_alias(self.aliases, task.embedding_model_id, back_to_blue)
        if alias is not None:
            self.mirror.publish(alias)
            if alias.live_variant == green:
                # Nothing to go back to (the previous variant was dropped): say so, keep green.
                detail += "; but the alias names no previous variant any more, so green stays live"
        reason = "rolled back during the bake" if status is TaskStatus.FAILED else "canceled during the bake"
        self.writer.end(task, status, detail, *self._green_teardown(task, reason))
        logger.warning("rolled back during the bake", extra={**_keys(task), "detail": detail})

    def _watched(self, task: Task) -> tuple[str, ...]:
        own = variant_alarm_names(task.variant) if task.variant else ()
        return (*own, *task.deploy_config.rollback_alarms)

    def _thresholds(self, task: Task) -> AlarmThresholds:
        config = task.deploy_config
        errors = config.max_5xx_errors_per_minute
        latency = config.max_model_latency_ms
        return AlarmThresholds(
            max_5xx_errors_per_minute=self.settings.rollback_max_5xx_errors_per_minute if errors is None else errors,
            max_model_latency_ms=self.settings.rollback_max_model_latency_ms if latency is None else latency,
        )

    def _bake_hop(self, task: Task) -> int:
        """Seconds to the next look: ESDEPLOY_BAKE_CHECK_SECONDS, never past the bake's end."""
        ends = task.bake_ends_at
        assert ends is not None
        return _hop(self.clock.now(), ends, self.settings.bake_check_seconds)

    def _blue_teardown(self, task: Task, blue: str, reason: str) -> tuple[TeardownVariant, ...]:
        return (TeardownVariant(task.embedding_model_id, blue, reason=reason, task_id=task.task_id),)

    def _scale_green(self, task: Task, green: str) -> str | None:
        """Green's autoscaling, registered before the alias moves to it: the deploy's own policy,
        or the live variant's carried over. None when neither has one. A redelivery registers the
        same again (both calls are upserts)."""
        policy = task.deploy_config.autoscaling
        source = "config.autoscaling"
        if policy is None:
            alias = self.aliases.get(task.embedding_model_id)
            blue = None
            if alias is not None:
                blue = alias.live_variant if alias.live_variant != green else alias.previous_variant
            policy = self.scaling.policy_of(blue) if blue else None
            source = f"carried over from {blue}"
        if policy is None:
            return None
        self.scaling.apply(green, policy)
        return f"autoscaling {policy.describe()} ({source})"

    # ---- endings ----------------------------------------------------------------------------

    def _fail(self, task: Task, status: TaskStatus, detail: str) -> None:
        """End the task; a green variant that may exist goes to teardown, the alias is untouched."""
        green = self._green_teardown(task, reason=f"deploy {status.value}")
        self.writer.end(task, status, detail, *green, forget_model=True)
        logger.warning("deploy ended", extra={**_keys(task), "detail": detail})

    def _finish_canceled(self, task: Task) -> None:
        """A cancel was requested (TaskService.cancel) and green is not live: end it here."""
        green = self._green_teardown(task, reason="deploy canceled")
        detail = f"canceled; green variant {task.variant} handed to teardown" if green else "canceled"
        self.writer.end(task, TaskStatus.CANCELED, detail, *green, forget_model=True)

    def _green_teardown(self, task: Task, reason: str) -> tuple[TeardownVariant, ...]:
        """The green variant's teardown, if one may exist and it is not live."""
        green = green_teardown(task, reason)
        return green if green and not self._is_live(task) else ()

    # ---- helpers ----------------------------------------------------------------------------

    def _is_live(self, task: Task) -> bool:
        if not task.variant:
            return False
        alias = self.aliases.get(task.embedding_model_id)
        return alias is not None and alias.live_variant == task.variant

    def _past_deadline(self, task: Task) -> bool:
        return task.deadline_at is not None and self.clock.now() > task.deadline_at

    def _deadline_detail(self, task: Task) -> str:
        minutes = self.settings.deploy_deadline_seconds / 60
        return (
            f"the stage's deploy deadline of {minutes:g} min passed in stage {task.stage.value}; "
            "the green variant is torn down"
        )


def _hop(now: datetime, until: datetime, longest: int, margin: int = 0) -> int:
    """Seconds to the next written look on the way to `until` (plus `margin`): at least 1, at most
    `longest` and SQS's longest delay."""
    left = math.ceil((until - now).total_seconds()) + margin
    return max(1, min(left, longest, SQS_MAX_DELAY_SECONDS))


def _alarm_detail(firing: list[AlarmReading], green: str, blue: str) -> str:
    first = firing[0]
    at = iso(first.since) if first.since else "an unknown time"
    detail = (
        f"rolled back: alarm {first.name} went to ALARM at {at} during the bake of {green}"
        f" ({first.reason or 'no reason given'}); the alias is back on {blue} and {green} is torn down"
    )
    if len(firing) > 1:
        detail += f"; also in ALARM: {', '.join(r.name for r in firing[1:])}"
    return detail


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _keys(task: Task) -> dict[str, str]:
    return {"task_id": task.task_id, "embedding_model_id": task.embedding_model_id, "stage": task.stage.value}



def _float16_hint(config: DeployConfig) -> str:
    """What to try when a GPU variant's embeddings miss the references: both servings run float16 on a GPU
    unless the deploy says float32 (the references were computed in float32 on a CPU)."""
    if processor_of(config.instance_type) is not Processor.GPU or config.dtype is Dtype.FLOAT32:
        return ""
    return (
        f". On a GPU the {config.serving.value} serving runs in float16 by default: deploy again with "
        'config.dtype "float32" (esdeploy deploy --dtype float32) to serve in the references\' precision'
    )
