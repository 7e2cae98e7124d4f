"""Domain layer: every word a deploy's events and teardown reasons say, in one place (the flow picks them)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chalicelib.domain.errors import QuotaExceededError, QuotaKind
from chalicelib.domain.models import (
    AlarmReading,
    AlarmThresholds,
    DeployConfig,
    ParityCheck,
    ScalingPolicy,
    TaskStatus,
    VariantStatus,
    iso,
)
from chalicelib.domain.serving import Dtype, Processor, processor_of


def duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# ---- preflight ------------------------------------------------------------------------------

UNPINNED = "this task was stored before deploys pinned their artifact's content hash; submit it again"


def artifact_missing(model_data_url: str, embedding_model_id: str) -> str:
    return (
        f"Model artifact not found at {model_data_url} (pinned when the deploy was submitted): "
        "was it deleted? Upload it again (esdeploy package MODEL_DIR "
        f"--model-id {embedding_model_id} --upload ...) and deploy again"
    )


def cap_reached(full: Sequence[str], cap: int) -> str:
    shown = ", ".join(full[:10]) + (", ..." if len(full) > 10 else "")
    return (
        f"{len(full)} models are deployed or being deployed ({shown}), the stage's cap is {cap}: "
        "delete a model or raise the cap"
    )


def instance_count(config: DeployConfig, live: str | None, running: int | None) -> str:
    """Where green's instance count came from: the deploy's own, or the live variant's now."""
    asked = config.initial_instance_count
    if not config.match_live_instance_count:
        return f"green starts at {asked} instance(s) (config.initial_instance_count)"
    if not live:
        return f"green starts at {asked} instance(s) (no live variant to match)"
    if running is None:
        return f"green starts at {asked} instance(s) (the live {live} did not say how many it runs)"
    return f"green starts at {running} instance(s), as many as the live {live} runs now"


def within_autoscaling(count: int, scaling: ScalingPolicy) -> str:
    return f", {count} within config.autoscaling's {scaling.min_instances}-{scaling.max_instances}"


def preflight_passed(
    config: DeployConfig, embedding_model_id: str, probe_texts: int, references: bool, cap: int, capacity: str,
    variant: str,
) -> str:
    checked = (
        f"{probe_texts} probe texts with reference embeddings"
        if references
        else f"{probe_texts} probe texts; the parity check will be skipped (config.parity_check=skip)"
    )
    return (
        f"artifact {str(config.content_hash)[:12]} checked: manifest of {embedding_model_id}, "
        f"{checked}; live-model slot reserved (cap {cap}); {capacity}; creating {variant}"
    )


def quota_refused(config: DeployConfig, region: str | None, variant: str | None, quota: QuotaExceededError) -> str:
    """Names the quota SageMaker named (an instance type's, the instance total, or the count of models,
    endpoint configurations or endpoints), and what helps with that one."""
    where = f" in {region}" if region else ""
    which = f"the SageMaker quota '{quota.quota}'" if quota.quota else "a SageMaker quota"
    asked = f"{config.initial_instance_count} x {config.instance_type} were asked for"
    if quota.kind is QuotaKind.RESOURCES:
        asked = f"creating {variant} needs one more of what it counts"
    return (
        f"refused by {which}{where}: {asked}. {quota.remedy()}; nothing was left running. "
        f"SageMaker said: {quota.said}"
    )


# ---- the endpoint coming up --------------------------------------------------------------------


def requested(variant: str) -> str:
    return f"endpoint {variant} requested"


IN_SERVICE = "endpoint InService"


def endpoint_failed(variant: str, reason: str | None) -> str:
    return f"SageMaker endpoint {variant} failed: {reason or 'no reason given'}"


def endpoint_gone(variant: str, status: VariantStatus) -> str:
    return (
        f"endpoint {variant} is {status.platform_status or status.state.value} while "
        "we waited for it to come up; was it deleted outside esdeploy?"
    )


def deadline_passed(deadline_seconds: int, stage: str) -> str:
    return (
        f"the stage's deploy deadline of {deadline_seconds / 60:g} min passed in stage {stage}; "
        "the green variant is torn down"
    )


# ---- the gate --------------------------------------------------------------------------------


def smoke_timed_out(seconds: int) -> str:
    return f"smoke test: the endpoint did not answer the probe texts within the stage's {seconds} s"


def smoke_unusable(error: str) -> str:
    return f"smoke test: the endpoint did not answer properly: {error}"


def float16_hint(config: DeployConfig) -> str:
    """What to try when a GPU variant's embeddings miss the references: both servings run float16 on a GPU
    unless the deploy says float32 (the references were computed in float32 on a CPU)."""
    if processor_of(config.instance_type) is not Processor.GPU or config.dtype is Dtype.FLOAT32:
        return ""
    return (
        f". On a GPU the {config.serving.value} serving runs in float16 by default: deploy again with "
        'config.dtype "float32" (esdeploy deploy --dtype float32) to serve in the references\' precision'
    )


def smoke_passed(probe_texts: int, references: bool) -> str:
    checked = (
        "reference embeddings"
        if references
        else "shape and norms only: the parity check was skipped, config.parity_check=skip"
    )
    return f"smoke test passed on {probe_texts} probe texts ({checked})"


# ---- manual promotion ----------------------------------------------------------------------


def awaits_promotion(passed: str, variant: str, promote_by: datetime, task_id: str) -> str:
    return (
        f"{passed}; candidate {variant} awaits promotion until {iso(promote_by)}: "
        f"POST /deploy/{task_id}/promote to make it live, or /cancel to discard it"
    )


def promoted(variant: str) -> str:
    return f"promoted: {variant} goes live"


def promoted_but_gone(variant: str, status: VariantStatus) -> str:
    shown = status.platform_status or status.state.value
    reason = f" ({status.failure_reason})" if status.failure_reason else ""
    return (
        f"promoted, but candidate {variant} is {shown}{reason}, no longer in service: "
        "the alias stays where it was; deploy again"
    )


def promotion_window_over(variant: str | None, window: int) -> str:
    return (
        f"canceled: candidate {variant} was not promoted within {duration(window)} "
        f"(config.promotion_timeout_seconds={window}); it is torn down and the alias stays where it was"
    )


# ---- the swap and the bake ------------------------------------------------------------------


def autoscaled(policy: ScalingPolicy, carried_from: str | None) -> str:
    source = f"carried over from {carried_from}" if carried_from else "config.autoscaling"
    return f"autoscaling {policy.describe()} ({source})"


def watched_alarms(
    own: Sequence[str], thresholds: AlarmThresholds, rollback_alarms: Sequence[str], missing: Sequence[str],
    woken_by: str,
) -> str:
    """The alarms a bake watches; `woken_by`: the name prefix of the alarms whose state changes wake it."""
    watching = (
        f"alarms {', '.join(own)} (5XX errors over {thresholds.max_5xx_errors_per_minute} a minute, "
        f"model latency over {thresholds.max_model_latency_ms} ms)"
    )
    if rollback_alarms:
        watching += f" and config.rollback_alarms {', '.join(rollback_alarms)}"
    polled = [name for name in rollback_alarms if not name.startswith(woken_by)]
    if polled:
        watching += (
            f" ({', '.join(polled)} read at each look only: a state change wakes the bake at once "
            f"only for alarms named {woken_by}*)"
        )
    if missing:
        one = len(missing) == 1
        watching += (
            f"; config.rollback_alarms {', '.join(missing)} {'does' if one else 'do'} not exist in CloudWatch, so "
            f"{'it cannot fire' if one else 'they cannot fire'} (watched from the moment one exists; the deploy "
            "goes on)"
        )
    return watching


def live(green: str, scaled: str | None, parity: ParityCheck) -> str:
    detail = f"{green} is live"
    if scaled:
        detail += f"; {scaled}"
    if parity is ParityCheck.SKIP:
        detail += "; the parity check was skipped (config.parity_check=skip): only shape and norms were checked"
    return detail


def first_live(own: Sequence[str]) -> str:
    return (
        "; the first live variant of the model: there is nothing to roll back to, so no bake; "
        f"{', '.join(own)} stay on it and go with it"
    )


def no_bake(blue: str) -> str:
    return f"; no bake (config.bake_seconds=0): {blue} is torn down now"


CANCEL_AFTER_SWAP = " (a cancel arrived after the swap; roll back to undo)"


def baking(ends: datetime, bake_seconds: int, blue: str, watching: str, check_seconds: int) -> str:
    return (
        f"; baking until {iso(ends)} ({duration(bake_seconds)}): {blue} stays up for a rollback in one write, "
        f"{watching} are watched every {duration(check_seconds)}; any of them in ALARM rolls back to " + blue
    )


def alarm_fired(name: str, blue: str) -> str:
    return f"{name} is in ALARM: rolling back to {blue}"


def rolled_back_by_alarm(firing: Sequence[AlarmReading], green: str, blue: str) -> str:
    first = firing[0]
    at = iso(first.since) if first.since else "an unknown time"
    detail = (
        f"rolled back: alarm {first.name} went to ALARM at {at} during the bake of {green}"
        f" ({first.reason or 'no reason given'}); the alias is back on {blue} and {green} is torn down"
    )
    if len(firing) > 1:
        detail += f"; also in ALARM: {', '.join(r.name for r in firing[1:])}"
    return detail


def canceled_in_bake(green: str) -> str:
    return f"canceled during the bake: the alias went back to the previous variant and {green} is torn down"


NOTHING_TO_ROLL_BACK_TO = "; but the alias names no previous variant any more, so green stays live"


def rolled_back_by_hand(embedding_model_id: str, live: str | None, since: datetime | None, green: str) -> str:
    when = f" since {iso(since)}" if since else ""
    return (
        f"canceled: rolled back by hand during the bake (POST /models/{embedding_model_id}/rollback): "
        f"the alias is on {live or 'no variant'}{when}; {green} is torn down"
    )


def bake_over(bake_seconds: int, green: str, blue: str | None) -> str:
    return (
        f"bake of {duration(bake_seconds)} over with no watched alarm in ALARM; "
        f"{green} stays live" + (f" and {blue} is torn down" if blue else "")
    )


# ---- cancels and ends ---------------------------------------------------------------------


def canceled(green: str | None) -> str:
    return f"canceled; green variant {green} handed to teardown" if green else "canceled"


# Why a variant goes to teardown (TeardownVariant.reason).
def reason_ended(status: TaskStatus) -> str:
    return f"deploy {status.value}"


REASON_CANCELED = "deploy canceled"
REASON_PROMOTION_WINDOW = "promotion window ended"
REASON_ROLLED_BACK = "rolled back during the bake"
REASON_CANCELED_IN_BAKE = "canceled during the bake"
REASON_BY_HAND = "rolled back by hand"


def reason_replaced(green: str, bake: bool) -> str:
    return f"replaced by {green}; {'bake over' if bake else 'no bake'}"
