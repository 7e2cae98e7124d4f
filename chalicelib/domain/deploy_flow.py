"""Domain layer: a deploy's flow as one table — guards and steps, each row taking the task and what the
worker observed and returning a decision (moves, the write, the next message and its delay, the words).

The deploy worker (services/deploy_worker.py) observes what the chosen row looks at, asks the row, and
applies the decision; nothing here reads a port. docs/lifecycle.md's table is `flow_table()` (a test
holds the two equal; `make openapi` writes it)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum

from chalicelib.domain import deploy_words as words
from chalicelib.domain.errors import ArtifactRefusedError, EsdeployError, QuotaExceededError, TerminalHostingError
from chalicelib.domain.messages import TeardownVariant, green_teardown
from chalicelib.domain.models import (
    AlarmReading,
    AlarmState,
    AlarmThresholds,
    Alias,
    DeployConfig,
    EndpointState,
    Promotion,
    ScalingPolicy,
    Stage,
    Task,
    TaskStatus,
    VariantStatus,
)
from chalicelib.domain.names import resource_name_prefix, variant_name
from chalicelib.domain.timing import Timing

Outcome = Stage | TaskStatus


# ---- what the worker observed --------------------------------------------------------------


class Look(StrEnum):
    """What the worker observes before a row decides, claims included: each claim is safe to make
    again, so a redelivered step makes it again and reads the same outcome."""

    NOTHING = "nothing more"
    LIVE = "whether the alias names green (it can from the swap on)"
    PREFLIGHT = ("the manifest inside the pinned artifact; then the model's live-model slot (claimed); then, "
                 "with no count asked, the live variant's instance count")
    CREATE = "green's Model, EndpointConfig and Endpoint (created, or found)"
    ENDPOINT = "green's endpoint (DescribeEndpoint)"
    SMOKE = "the manifest again, and green's answer to its probe texts"
    SWAP = ("green's autoscaling and its two alarms (put), the deploy's rollback alarms, then the alias "
            "(moved to green) and its SSM copy")
    BAKE = "the alias, then every watched alarm"
    ROLLBACK = "the alias (moved back to blue while green is live) and its SSM copy"


@dataclass(frozen=True)
class Gate:
    """The manifest inside the pinned artifact, as the gate read it (services/smoke.py)."""

    probe_texts: int = 0
    references: bool = True
    dimension: int | None = None
    missing: bool = False  # no artifact at the pinned key (deleted since the submit)


@dataclass(frozen=True)
class Capacity:
    """The preflight's claim and read once the gate passed: the live-model slot (reserved, or the
    models holding every slot) and the live variant's instance count (read only when the deploy
    asked for none)."""

    full: tuple[str, ...] = ()
    live_variant: str | None = None
    live_count: int | None = None


class SmokeOutcome(StrEnum):
    PASSED = "passed"
    TIMED_OUT = "timed out"
    UNUSABLE = "unusable answer"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class Smoke:
    """Green's answer to the probe texts; `said`: the invocation's error or the gate's finding."""

    outcome: SmokeOutcome
    said: str = ""


@dataclass(frozen=True)
class Swap:
    """What the swap's claims left: green's alarms and autoscaling in place, the alias on green."""

    alias: Alias
    own_alarms: tuple[str, ...]
    thresholds: AlarmThresholds
    missing_alarms: tuple[str, ...] = ()
    policy: ScalingPolicy | None = None
    policy_from: str | None = None  # carried over from this variant (None: config.autoscaling)


@dataclass(frozen=True)
class BakeLook:
    """One look during the bake: the alias, and (while it is on green) the watched alarms."""

    alias: Alias | None
    alarms: tuple[AlarmReading, ...] = ()


@dataclass(frozen=True)
class Seen:
    """What the worker observed for one step: `now`, whether green is live (read where it matters: for
    a cancel, and for an end that hands green over; before the swap the alias cannot name green), and
    what the row's Look brought."""

    now: datetime
    green_live: bool = False
    gate: Gate | None = None
    capacity: Capacity | None = None
    endpoint: VariantStatus | None = None
    smoke: Smoke | None = None
    swap: Swap | None = None
    bake: BakeLook | None = None
    alias: Alias | None = None  # after a rollback's claim


@dataclass(frozen=True)
class Rules:
    """The stage's settings the decisions read (chalicelib/config.py builds them)."""

    timing: Timing
    resource_prefix: str
    max_deployed_models: int
    alarm_thresholds: AlarmThresholds
    smoke_timeout_seconds: int
    region: str | None = None


# ---- what a row decides ---------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One event the task records: its stage and status after it (None: unchanged) and its words."""

    stage: Stage | None = None
    status: TaskStatus | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Sets:
    """The task's fields a step writes (None: unchanged)."""

    variant: str | None = None
    deploy: DeployConfig | None = None
    deadline_at: datetime | None = None
    promote_by: datetime | None = None
    polls: int | None = None
    hops: int | None = None
    live_at: datetime | None = None
    rollback_detail: str | None = None


@dataclass(frozen=True)
class Decision:
    """One step's outcome. The worker sends `teardowns`, writes the task as `applied` makes it
    (conditionally on the version read), then sends the next step in `next_in` seconds (None: the
    task ended). An end then frees the model's slot and lease (`forget_model`: writer.end's flag)."""

    row: str
    moves: tuple[Move, ...] = ()
    sets: Sets = Sets()
    touch: bool = False  # a written look with no event: `updated_at` moves (the sweeper sees it alive)
    next_in: int | None = None
    teardowns: tuple[TeardownVariant, ...] = ()
    forget_model: bool = False
    # The worker's log line for it (its operators' words: `esdeploy logs` shows them); a warning with
    # the task's detail when `warn`.
    log: str | None = None
    warn: bool = False

    @property
    def ends(self) -> TaskStatus | None:
        """The final status this decision gives the task; None while it goes on."""
        status = self.moves[-1].status if self.moves else None
        return status if status is not None and status.is_terminal else None

    def outcome(self, task: Task) -> Outcome:
        """Where the task is after this decision: its final status, or its stage."""
        stages = [move.stage for move in self.moves if move.stage is not None]
        return self.ends or (stages[-1] if stages else task.stage)

    def applied(self, task: Task, now: datetime) -> Task:
        """The task as this decision writes it (a copy: `task` is left as read)."""
        written = task.copy()
        for move in self.moves:
            written.record(at=now, stage=move.stage, status=move.status, detail=move.detail)
        for name in (f.name for f in fields(Sets)):
            value = getattr(self.sets, name)
            if value is not None:
                setattr(written, name, value)
        if self.touch:
            written.updated_at = now
        return written


def _end(
    row: str, status: TaskStatus, detail: str, teardowns: tuple[TeardownVariant, ...] = (), *,
    first: tuple[Move, ...] = (), forget_model: bool = False, log: str | None = None, warn: bool = False,
) -> Decision:
    stage = Stage.FINISHED if status is TaskStatus.DONE else None
    return Decision(row, (*first, Move(stage, status, detail)), teardowns=teardowns, forget_model=forget_model,
                    log=log, warn=warn)


def _fail(row: str, task: Task, seen: Seen, status: TaskStatus, detail: str, first: tuple[Move, ...] = ()) -> Decision:
    """A fault's end: green (if one may exist and it is not live) goes to teardown, the alias is untouched."""
    green = () if seen.green_live else green_teardown(task, reason=words.reason_ended(status))
    return _end(row, status, detail, green, first=first, forget_model=True, log="deploy ended", warn=True)


# ---- the rows -------------------------------------------------------------------------------

_STARTED = (Move(Stage.PREFLIGHT, TaskStatus.PROCESSING),)


def _rolled_back(task: Task, seen: Seen, rules: Rules) -> Decision:
    green = task.variant
    assert green is not None
    if task.rollback_detail:
        status, detail, reason = TaskStatus.FAILED, task.rollback_detail, words.REASON_ROLLED_BACK
    else:
        status, detail, reason = TaskStatus.CANCELED, words.canceled_in_bake(green), words.REASON_CANCELED_IN_BAKE
    still_live = seen.alias is not None and seen.alias.live_variant == green
    if still_live:
        # Nothing to go back to (the previous variant was dropped): say so, keep green.
        detail += words.NOTHING_TO_ROLL_BACK_TO
    return _end("roll back", status, detail, () if still_live else green_teardown(task, reason),
                log="rolled back during the bake", warn=True)


def _bake_look(task: Task, seen: Seen, rules: Rules) -> Decision:
    green, look = task.variant, seen.bake
    assert green is not None and look is not None
    alias = look.alias
    if alias is None or alias.live_variant != green:
        detail = words.rolled_back_by_hand(
            task.embedding_model_id, alias.live_variant if alias else None, alias.swapped_at if alias else None, green
        )
        return _end("bake", TaskStatus.CANCELED, detail, green_teardown(task, words.REASON_BY_HAND),
                    log="rolled back by hand during the bake", warn=True)
    blue = alias.previous_variant
    firing = sorted(
        (reading for reading in look.alarms if reading.state == AlarmState.ALARM),
        key=lambda r: (r.since is None, r.since or seen.now, r.name),
    )
    if firing and blue:
        # Written first, so the step that moves the alias (or its redelivery after a crash) knows
        # why, even when the alarm is OK again by then.
        return Decision(
            "bake",
            (Move(detail=words.alarm_fired(firing[0].name, blue)),),
            Sets(rollback_detail=words.rolled_back_by_alarm(firing, green, blue)),
            next_in=0,
        )
    ends = task.bake_ends_at
    assert ends is not None
    if seen.now >= ends:
        gone = (
            (TeardownVariant(task.embedding_model_id, blue, words.reason_replaced(green, bake=True),
                             task_id=task.task_id),)
            if blue else ()
        )
        return _end("bake", TaskStatus.DONE, words.bake_over(task.deploy_config.bake_seconds, green, blue), gone,
                    log="deploy done: bake over")
    # A look in hops until the bake ends; each one is written, so a duplicate hop (or the
    # sweeper's re-kick) finds the version moved on instead of starting a second chain.
    return Decision("bake", sets=Sets(hops=task.hops + 1), touch=True, next_in=rules.timing.bake_hop(seen.now, ends))


def _canceled(task: Task, seen: Seen, rules: Rules) -> Decision:
    green = green_teardown(task, words.REASON_CANCELED)
    return _end("cancel", TaskStatus.CANCELED, words.canceled(task.variant if green else None), green,
                forget_model=True)


def _promotion_over(task: Task, seen: Seen, rules: Rules) -> Decision:
    window = rules.timing.promotion_window(task.deploy_config.promotion_timeout_seconds)
    green = green_teardown(task, words.REASON_PROMOTION_WINDOW)
    return _end("promotion window over", TaskStatus.CANCELED, words.promotion_window_over(task.variant, window),
                green, forget_model=True, log="promotion window ended", warn=True)


def _deadline(task: Task, seen: Seen, rules: Rules) -> Decision:
    detail = words.deadline_passed(rules.timing.deploy_deadline_seconds, task.stage.value)
    return _fail("deadline", task, seen, TaskStatus.FAILED, detail)


def _preflight(task: Task, seen: Seen, rules: Rules) -> Decision:
    config, gate, capacity = task.deploy_config, seen.gate, seen.capacity
    assert gate is not None
    if gate.missing:
        detail = words.artifact_missing(config.model_data_url, task.embedding_model_id)
        return _fail("preflight", task, seen, TaskStatus.FAILED, detail, first=_STARTED)
    assert capacity is not None
    cap = rules.max_deployed_models
    if capacity.full:
        return _fail("preflight", task, seen, TaskStatus.REFUSED, words.cap_reached(capacity.full, cap), _STARTED)
    count, said = _instance_count(config, capacity)
    variant = variant_name(rules.resource_prefix, task.embedding_model_id, task.task_id)
    detail = words.preflight_passed(
        config, task.embedding_model_id, gate.probe_texts, gate.references, cap, said, variant
    )
    return Decision(
        "preflight",
        (*_STARTED, Move(Stage.CREATING, detail=detail)),
        Sets(variant=variant, deadline_at=rules.timing.deploy_deadline(seen.now),
             deploy=replace(config, initial_instance_count=count)),
        next_in=0,
    )


def _instance_count(config: DeployConfig, capacity: Capacity) -> tuple[int, str]:
    """Green's instance count, and where it came from: the deploy's own, or (when it named none) as
    many as the live variant runs now, so a blue scaled up under load is not replaced by a single
    instance; moved inside config.autoscaling's bounds."""
    count = config.initial_instance_count
    if config.match_live_instance_count and capacity.live_variant and capacity.live_count is not None:
        count = capacity.live_count
    said = words.instance_count(config, capacity.live_variant, capacity.live_count)
    scaling = config.autoscaling
    if scaling is not None and not scaling.min_instances <= count <= scaling.max_instances:
        count = min(max(count, scaling.min_instances), scaling.max_instances)
        said += words.within_autoscaling(count, scaling)
    return count, said


def _created(task: Task, seen: Seen, rules: Rules) -> Decision:
    assert task.variant is not None
    return Decision("create", (Move(Stage.WAITING, detail=words.requested(task.variant)),),
                    next_in=rules.timing.poll_initial_seconds)


def _waited(task: Task, seen: Seen, rules: Rules) -> Decision:
    status, green = seen.endpoint, task.variant
    assert status is not None and green is not None
    if status.state == EndpointState.IN_SERVICE:
        return Decision("wait", (Move(Stage.VERIFYING, detail=words.IN_SERVICE),), next_in=0)
    if status.state == EndpointState.CREATING:
        polls = task.polls + 1
        return Decision("wait", sets=Sets(polls=polls), next_in=rules.timing.poll_delay(polls))
    if status.state == EndpointState.FAILED:
        return _fail("wait", task, seen, TaskStatus.FAILED, words.endpoint_failed(green, status.failure_reason))
    return _fail("wait", task, seen, TaskStatus.FAILED, words.endpoint_gone(green, status))


def _verified(task: Task, seen: Seen, rules: Rules) -> Decision:
    config, gate, smoke, green = task.deploy_config, seen.gate, seen.smoke, task.variant
    assert gate is not None and green is not None
    if gate.missing:
        detail = words.artifact_missing(config.model_data_url, task.embedding_model_id)
        return _fail("verify", task, seen, TaskStatus.FAILED, detail)
    assert smoke is not None
    if smoke.outcome is not SmokeOutcome.PASSED:
        detail = {
            SmokeOutcome.TIMED_OUT: words.smoke_timed_out(rules.smoke_timeout_seconds),
            SmokeOutcome.UNUSABLE: words.smoke_unusable(smoke.said),
        }.get(smoke.outcome, smoke.said)
        return _fail("verify", task, seen, TaskStatus.FAILED, detail)
    passed = words.smoke_passed(gate.probe_texts, gate.references)
    # Green answered with the manifest's dimension: the alias keeps it, to bound invoke batches.
    answered = replace(config, dimension=gate.dimension)
    if config.promotion is Promotion.MANUAL:
        # Green waits beside blue, the alias unmoved, until it is promoted, canceled, or its window ends.
        promote_by = seen.now + _seconds(rules.timing.promotion_window(config.promotion_timeout_seconds))
        return Decision(
            "verify",
            (Move(Stage.AWAITING_PROMOTION, detail=words.awaits_promotion(passed, green, promote_by, task.task_id)),),
            Sets(deploy=answered, promote_by=promote_by, hops=0),
            next_in=rules.timing.promotion_hop(seen.now, promote_by),
        )
    return Decision("verify", (Move(Stage.SWAPPING, detail=passed),), Sets(deploy=answered), next_in=0)


def _promoted(task: Task, seen: Seen, rules: Rules) -> Decision:
    status, green = seen.endpoint, task.variant
    assert status is not None and green is not None
    # It passed the gate hours ago, maybe: an endpoint that failed or was deleted since must not become live.
    if status.state != EndpointState.IN_SERVICE:
        return _fail("promote", task, seen, TaskStatus.FAILED, words.promoted_but_gone(green, status))
    return Decision("promote", (Move(Stage.SWAPPING, detail=words.promoted(green)),),
                    Sets(deadline_at=rules.timing.deploy_deadline(seen.now)), next_in=0)


def _awaiting(task: Task, seen: Seen, rules: Rules) -> Decision:
    assert task.promote_by is not None
    # A look in hops until the window ends; each one is written (see _bake_look).
    return Decision("await promotion", sets=Sets(hops=task.hops + 1), touch=True,
                    next_in=rules.timing.promotion_hop(seen.now, task.promote_by))


def _swapped(task: Task, seen: Seen, rules: Rules) -> Decision:
    config, swap, green = task.deploy_config, seen.swap, task.variant
    assert swap is not None and green is not None
    alias = swap.alias
    # The swap's own time, also when a redelivery finds it made.
    live_at = alias.swapped_at if alias.task_id == task.task_id and alias.swapped_at else seen.now
    blue = alias.previous_variant if alias.previous_variant != green else None
    scaled = words.autoscaled(swap.policy, swap.policy_from) if swap.policy else None
    detail = words.live(green, scaled, config.parity_check)
    if blue is None or config.bake_seconds == 0:
        detail += words.first_live(swap.own_alarms) if blue is None else words.no_bake(blue)
        if task.cancel_requested:
            detail += words.CANCEL_AFTER_SWAP
        done = (
            (TeardownVariant(task.embedding_model_id, blue, words.reason_replaced(green, bake=False),
                             task_id=task.task_id),)
            if blue else ()
        )
        return replace(_end("swap", TaskStatus.DONE, detail, done, log="deploy done"), sets=Sets(live_at=live_at))
    ends = live_at + _seconds(config.bake_seconds)
    watching = words.watched_alarms(
        swap.own_alarms, swap.thresholds, config.alarms.names, swap.missing_alarms,
        resource_name_prefix(rules.resource_prefix),
    )
    detail += words.baking(ends, config.bake_seconds, blue, watching, rules.timing.bake_check_seconds)
    return Decision("swap", (Move(Stage.BAKING, detail=detail),), Sets(live_at=live_at, hops=0),
                    next_in=rules.timing.bake_hop(seen.now, ends), log="deploy live, baking")


def _seconds(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


def _always(task: Task, seen: Seen) -> bool:
    return True


def _past_deadline(task: Task, seen: Seen) -> bool:
    # Awaiting promotion, the window replaces the deploy deadline: the wait is meant to be long.
    deadline = task.promote_by if task.stage is Stage.AWAITING_PROMOTION else task.deadline_at
    return deadline is not None and seen.now > deadline


@dataclass(frozen=True)
class Row:
    """One row: in these stages, when `applies` (said in `when`), the worker observes `looks` and
    `decide` says what happens; `leads_to` lists every stage or final status it can lead to."""

    name: str
    stages: tuple[Stage, ...]
    when: str
    applies: Callable[[Task, Seen], bool]
    looks: Look
    decide: Callable[[Task, Seen, Rules], Decision]
    leads_to: tuple[Outcome, ...]


_S, _T = Stage, TaskStatus
# Every stage a deploy can be read in before its swap (preflight only when a crash left it there).
_BEFORE_LIVE = (_S.QUEUED, _S.PREFLIGHT, _S.CREATING, _S.WAITING, _S.VERIFYING, _S.AWAITING_PROMOTION, _S.SWAPPING)

# The first row (in this order) whose stage and guard hold decides.
FLOW: tuple[Row, ...] = (
    Row("roll back: an alarm fired", (_S.BAKING,), "a look wrote `rollback_detail`",
        lambda task, seen: task.rollback_detail is not None, Look.ROLLBACK, _rolled_back, (_T.FAILED,)),
    Row("roll back: canceled", (_S.BAKING,), "a cancel was requested",
        lambda task, seen: task.cancel_requested, Look.ROLLBACK, _rolled_back, (_T.CANCELED,)),
    Row("bake", (_S.BAKING,), "", _always, Look.BAKE, _bake_look, (_S.BAKING, _T.DONE, _T.CANCELED)),
    Row("cancel", _BEFORE_LIVE, "a cancel was requested and green is not live",
        lambda task, seen: task.cancel_requested and not seen.green_live, Look.NOTHING, _canceled, (_T.CANCELED,)),
    Row("promotion window over", (_S.AWAITING_PROMOTION,), "`promote_by` passed with no promote",
        lambda task, seen: not task.promote_requested and _past_deadline(task, seen),
        Look.NOTHING, _promotion_over, (_T.CANCELED,)),
    Row("deadline", (_S.CREATING, _S.WAITING, _S.VERIFYING, _S.AWAITING_PROMOTION, _S.SWAPPING),
        "`deadline_at` passed (awaiting promotion: `promote_by`)", _past_deadline, Look.LIVE, _deadline,
        (_T.FAILED,)),
    Row("preflight", (_S.QUEUED,), "", _always, Look.PREFLIGHT, _preflight, (_S.CREATING, _T.FAILED, _T.REFUSED)),
    Row("create", (_S.CREATING,), "", _always, Look.CREATE, _created, (_S.WAITING,)),
    Row("wait", (_S.WAITING,), "", _always, Look.ENDPOINT, _waited, (_S.WAITING, _S.VERIFYING, _T.FAILED)),
    Row("verify", (_S.VERIFYING,), "", _always, Look.SMOKE, _verified,
        (_S.SWAPPING, _S.AWAITING_PROMOTION, _T.FAILED)),
    Row("promote", (_S.AWAITING_PROMOTION,), "a promote was requested",
        lambda task, seen: task.promote_requested, Look.ENDPOINT, _promoted, (_S.SWAPPING, _T.FAILED)),
    Row("await promotion", (_S.AWAITING_PROMOTION,), "", _always, Look.NOTHING, _awaiting,
        (_S.AWAITING_PROMOTION,)),
    Row("swap", (_S.SWAPPING,), "", _always, Look.SWAP, _swapped, (_S.BAKING, _T.DONE)),
)

# A fault a step's observation raised ends the task (green to teardown); the first matching class decides.
FAULTS: tuple[tuple[type[EsdeployError], TaskStatus, str], ...] = (
    # Not a fault of the deploy: the account's quota says no until someone raises it.
    (QuotaExceededError, _T.REFUSED, "SageMaker refused for a quota"),
    (TerminalHostingError, _T.FAILED, "SageMaker refused or failed for good"),
    # No retry can make a malformed or foreign artifact deployable.
    (ArtifactRefusedError, _T.REFUSED, "the artifact or its manifest cannot be deployed"),
)


def select(task: Task, seen: Seen) -> Row:
    """The row that decides this step (LookupError for a stage no row takes: a task no deploy writes)."""
    for row in FLOW:
        if task.stage in row.stages and row.applies(task, seen):
            return row
    raise LookupError(f"no row of the deploy flow takes task {task.task_id} in stage {task.stage.value}")


def decide(row: Row, task: Task, seen: Seen, rules: Rules) -> Decision:
    """`row`'s decision; it leads only where the row says it can (the documented table holds)."""
    decision = row.decide(task, seen, rules)
    if decision.outcome(task) not in row.leads_to:
        raise AssertionError(f"row {row.name!r} led to {decision.outcome(task)}, not one of {row.leads_to}")
    return decision


def on_fault(task: Task, fault: EsdeployError, seen: Seen, rules: Rules) -> Decision:
    """The end for a fault that a step's observation raised (see FAULTS); a fault at the preflight
    is recorded in it."""
    status = next(status for kind, status, _ in FAULTS if isinstance(fault, kind))
    detail = str(fault)
    if isinstance(fault, QuotaExceededError):
        detail = words.quota_refused(task.deploy_config, rules.region, task.variant, fault)
    first = _STARTED if task.stage is Stage.QUEUED else ()
    return _fail("fault", task, seen, status, detail, first)


def flow_table() -> str:
    """The flow as docs/lifecycle.md shows it (generated by `make openapi`): a state diagram whose every
    arrow is a row's possible outcome, then the table itself, then the faults."""
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> queued"]
    for row in FLOW:
        label = row.name.replace(":", " -")  # a colon ends a transition's label
        for stage in row.stages:
            lines += [f"    {stage.value} --> {outcome.value}: {label}" for outcome in row.leads_to if outcome != stage]
    lines += [f"    {status.value} --> [*]" for status in (_T.DONE, _T.FAILED, _T.REFUSED, _T.CANCELED)]
    lines += ["```", "", "| # | row | in stage | when | the worker observes | leads to |", "|---|---|---|---|---|---|"]
    for number, row in enumerate(FLOW, 1):
        stages = ", ".join(stage.value for stage in row.stages)
        leads = ", ".join(f"**{o.value}**" if isinstance(o, TaskStatus) else o.value for o in row.leads_to)
        lines.append(f"| {number} | {row.name} | {stages} | {row.when or 'always'} | {row.looks.value} | {leads} |")
    lines += ["", "| a step's observation raised | the task ends | why |", "|---|---|---|"]
    lines += [f"| `{kind.__name__}` | **{status.value}** | {why} |" for kind, status, why in FAULTS]
    return "\n".join(lines) + "\n"
