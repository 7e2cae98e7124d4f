"""The deploy flow's table, as tables: which row takes a task, and what each row decides from a task and
what was observed. Plain domain objects only: no port, no fake, no clock."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain.deploy_flow import (
    FLOW,
    BakeLook,
    Capacity,
    Decision,
    Gate,
    Outcome,
    Rules,
    Seen,
    Smoke,
    SmokeOutcome,
    Swap,
    decide,
    flow_table,
    on_fault,
    select,
)
from chalicelib.domain.errors import ArtifactRefusedError, QuotaExceededError, QuotaKind, TerminalHostingError
from chalicelib.domain.messages import TeardownVariant
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
    TaskKind,
    TaskStatus,
    VariantStatus,
)
from chalicelib.domain.timing import Timing
from esdeploy.contract import FLOW_BEGIN, FLOW_END

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
TIMING = Timing(
    poll_initial_seconds=30, poll_max_seconds=300, bake_check_seconds=60, deploy_deadline_seconds=3600,
    default_promotion_timeout_seconds=86_400, early_message_delay_seconds=5, intake_retry_seconds=60,
)
RULES = Rules(TIMING, resource_prefix="esd", max_deployed_models=3,
              alarm_thresholds=AlarmThresholds(5, 2000), smoke_timeout_seconds=60, region="us-east-1")
CONFIG = DeployConfig(
    instance_type="ml.g5.xlarge", initial_instance_count=1, model_data_url="s3://b/models/m/abc/model.tar.gz",
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/hf:1", bake_seconds=600, content_hash="c" * 64,
)
GREEN, BLUE = "esd-m-green", "esd-m-blue"
OWN_ALARMS = (f"{GREEN}-invocation-5xx", f"{GREEN}-model-latency")


def task(stage: Stage, config: DeployConfig = CONFIG, **fields: Any) -> Task:
    """A deploy task as the store would hand it to a step in `stage`."""
    status = TaskStatus.PENDING if stage is Stage.QUEUED else TaskStatus.PROCESSING
    made = Task.new(task_id="t1", kind=TaskKind.DEPLOY, embedding_model_id="m", request_hash="h",
                    at=NOW - timedelta(minutes=5), deploy=config)
    made.status, made.stage = status, stage
    if stage is not Stage.QUEUED:
        made.variant = GREEN
        made.deadline_at = NOW + timedelta(minutes=55)
    return replace(made, **fields)


def seen(**observed: Any) -> Seen:
    return Seen(now=NOW, **observed)


def alias(live: str | None = GREEN, previous: str | None = BLUE, **fields: Any) -> Alias:
    return replace(Alias("m", live, previous, "t1", NOW - timedelta(seconds=30)), **fields)


def endpoint(state: EndpointState, **fields: Any) -> VariantStatus:
    return VariantStatus(GREEN, state, **fields)


def baking(**fields: Any) -> Task:
    return task(Stage.BAKING, **{"live_at": NOW - timedelta(seconds=30), **fields})


# ---- which row takes a task ------------------------------------------------------------------

AWAITING = Stage.AWAITING_PROMOTION
PAST, AHEAD = NOW - timedelta(seconds=1), NOW + timedelta(hours=1)

SELECTION: list[tuple[str, Task, Seen, str]] = [
    ("an alarm's rollback first", baking(rollback_detail="rolled back: ...", cancel_requested=True), seen(),
     "roll back: an alarm fired"),
    ("a cancel in the bake rolls back", baking(cancel_requested=True), seen(), "roll back: canceled"),
    ("a bake's look", baking(), seen(), "bake"),
    ("a cancel before the start", task(Stage.QUEUED, cancel_requested=True), seen(), "cancel"),
    ("a cancel while waiting, past the deadline too", task(Stage.WAITING, cancel_requested=True, deadline_at=PAST),
     seen(), "cancel"),
    ("a cancel that met a swap already made", task(Stage.SWAPPING, cancel_requested=True), seen(green_live=True),
     "swap"),
    ("a cancel before the swap", task(Stage.SWAPPING, cancel_requested=True), seen(), "cancel"),
    ("a window over", task(AWAITING, promote_by=PAST), seen(), "promotion window over"),
    ("promoted at the window's last moment", task(AWAITING, promote_by=PAST, promote_requested=True), seen(),
     "deadline"),
    ("promoted", task(AWAITING, promote_by=AHEAD, promote_requested=True), seen(), "promote"),
    ("waiting for a promote", task(AWAITING, promote_by=AHEAD, deadline_at=PAST), seen(), "await promotion"),
    ("past the deadline", task(Stage.VERIFYING, deadline_at=PAST), seen(), "deadline"),
    ("queued", task(Stage.QUEUED), seen(), "preflight"),
    ("creating", task(Stage.CREATING), seen(), "create"),
    ("waiting", task(Stage.WAITING), seen(), "wait"),
    ("verifying", task(Stage.VERIFYING), seen(), "verify"),
    ("swapping", task(Stage.SWAPPING), seen(), "swap"),
]


@pytest.mark.parametrize(("given", "seen_", "row"), [case[1:] for case in SELECTION], ids=[c[0] for c in SELECTION])
def test_the_first_row_whose_stage_and_guard_hold_takes_the_task(given: Task, seen_: Seen, row: str) -> None:
    assert select(given, seen_).name == row


def test_a_stage_no_row_takes_is_said_so() -> None:
    with pytest.raises(LookupError, match="in stage finished"):
        select(task(Stage.FINISHED), seen())


# ---- what each row decides ----------------------------------------------------------------------


def green_gone(reason: str) -> tuple[TeardownVariant, ...]:
    return (TeardownVariant("m", GREEN, reason=reason, task_id="t1"),)


ROLLED_BACK = alias(live=BLUE, previous=None)
FIRING = (AlarmReading(OWN_ALARMS[0], AlarmState.ALARM, "Threshold Crossed", NOW - timedelta(seconds=5)),
          AlarmReading(OWN_ALARMS[1], AlarmState.OK))
SWAP = Swap(alias(swapped_at=NOW - timedelta(seconds=1)), OWN_ALARMS, AlarmThresholds(5, 2000))


# (case, task, seen, outcome, next_in, detail (a regex the last event's words match), teardowns)
DECISIONS: list[tuple[str, Task, Seen, Outcome, int | None, str | None, tuple[TeardownVariant, ...]]] = [
    # the bake
    ("an alarm's rollback ends failed with the decided words", baking(rollback_detail="rolled back: alarm X"),
     seen(alias=ROLLED_BACK), TaskStatus.FAILED, None, "^rolled back: alarm X$",
     green_gone("rolled back during the bake")),
    ("a rollback with nothing to go back to keeps green", baking(rollback_detail="rolled back: alarm X"),
     seen(alias=alias(previous=None)), TaskStatus.FAILED, None, "names no previous variant any more", ()),
    ("a cancel in the bake rolls back", baking(cancel_requested=True), seen(alias=ROLLED_BACK),
     TaskStatus.CANCELED, None, "^canceled during the bake", green_gone("canceled during the bake")),
    ("rolled back by hand", baking(), seen(bake=BakeLook(ROLLED_BACK)), TaskStatus.CANCELED, None,
     r"rolled back by hand .* the alias is on esd-m-blue since", green_gone("rolled back by hand")),
    ("an alarm fired: the decision is written first", baking(), seen(bake=BakeLook(alias(), FIRING)),
     Stage.BAKING, 0, f"^{OWN_ALARMS[0]} is in ALARM: rolling back to {BLUE}$", ()),
    ("an alarm with no blue to go back to", baking(), seen(bake=BakeLook(alias(previous=None), FIRING)),
     Stage.BAKING, 60, None, ()),
    ("a quiet look hops on", baking(), seen(bake=BakeLook(alias(), FIRING[1:])), Stage.BAKING, 60, None, ()),
    ("the last hop stops at the bake's end", baking(live_at=NOW - timedelta(seconds=590)),
     seen(bake=BakeLook(alias())), Stage.BAKING, 10, None, ()),
    ("the bake is over", baking(live_at=NOW - timedelta(seconds=600)), seen(bake=BakeLook(alias())),
     TaskStatus.DONE, None, f"^bake of 10 min over .* {GREEN} stays live and {BLUE} is torn down$",
     (TeardownVariant("m", BLUE, f"replaced by {GREEN}; bake over", task_id="t1"),)),
    # guards
    ("a cancel before the start", task(Stage.QUEUED, cancel_requested=True, variant=None), seen(),
     TaskStatus.CANCELED, None, "^canceled$", ()),
    ("a cancel tears green down", task(Stage.WAITING, cancel_requested=True), seen(), TaskStatus.CANCELED, None,
     f"^canceled; green variant {GREEN} handed to teardown$", green_gone("deploy canceled")),
    ("a window over", task(AWAITING, promote_by=PAST, config=replace(CONFIG, promotion_timeout_seconds=7200)),
     seen(), TaskStatus.CANCELED, None, r"not promoted within 2 h \(config.promotion_timeout_seconds=7200\)",
     green_gone("promotion window ended")),
    ("past the deadline", task(Stage.WAITING, deadline_at=PAST), seen(), TaskStatus.FAILED, None,
     "^the stage's deploy deadline of 60 min passed in stage waiting", green_gone("deploy failed")),
    # the preflight
    ("a passed preflight", task(Stage.QUEUED), seen(gate=Gate(3), capacity=Capacity()), Stage.CREATING, 0,
     r"^artifact cccccccccccc checked: manifest of m, 3 probe texts with reference embeddings; live-model slot "
     r"reserved \(cap 3\); green starts at 1 instance\(s\) \(config.initial_instance_count\); creating esd-m-", ()),
    ("an artifact deleted since the submit", task(Stage.QUEUED), seen(gate=Gate(missing=True)), TaskStatus.FAILED,
     None, "^Model artifact not found at s3://b/models/m/abc/model.tar.gz", ()),
    ("the cap is reached", task(Stage.QUEUED), seen(gate=Gate(3), capacity=Capacity(full=("a", "b", "c"))),
     TaskStatus.REFUSED, None, r"^3 models are deployed or being deployed \(a, b, c\), the stage's cap is 3: delete",
     ()),
    # the endpoint
    ("created", task(Stage.CREATING), seen(), Stage.WAITING, 30, f"^endpoint {GREEN} requested$", ()),
    ("in service", task(Stage.WAITING), seen(endpoint=endpoint(EndpointState.IN_SERVICE)), Stage.VERIFYING, 0,
     "^endpoint InService$", ()),
    ("still creating: polled later each time", task(Stage.WAITING, polls=2),
     seen(endpoint=endpoint(EndpointState.CREATING)), Stage.WAITING, 67, None, ()),
    ("failed", task(Stage.WAITING), seen(endpoint=endpoint(EndpointState.FAILED, failure_reason="OOM")),
     TaskStatus.FAILED, None, f"^SageMaker endpoint {GREEN} failed: OOM$", green_gone("deploy failed")),
    ("gone", task(Stage.WAITING), seen(endpoint=endpoint(EndpointState.MISSING)), TaskStatus.FAILED, None,
     "is missing while we waited for it to come up", green_gone("deploy failed")),
    # the gate
    ("passed", task(Stage.VERIFYING), seen(gate=Gate(3), smoke=Smoke(SmokeOutcome.PASSED)), Stage.SWAPPING, 0,
     r"^smoke test passed on 3 probe texts \(reference embeddings\)$", ()),
    ("passed without references", task(Stage.VERIFYING), seen(gate=Gate(3, references=False),
     smoke=Smoke(SmokeOutcome.PASSED)), Stage.SWAPPING, 0, "shape and norms only", ()),
    ("passed, for a manual promotion", task(Stage.VERIFYING, config=replace(CONFIG, promotion=Promotion.MANUAL,
     promotion_timeout_seconds=3600)), seen(gate=Gate(3), smoke=Smoke(SmokeOutcome.PASSED)),
     AWAITING, 300, r"awaits promotion until 2026-01-01T13:00:00.000000Z: POST /deploy/t1/promote", ()),
    ("no answer in time", task(Stage.VERIFYING), seen(gate=Gate(3), smoke=Smoke(SmokeOutcome.TIMED_OUT)),
     TaskStatus.FAILED, None, "did not answer the probe texts within the stage's 60 s$", green_gone("deploy failed")),
    ("an unusable answer", task(Stage.VERIFYING), seen(gate=Gate(3), smoke=Smoke(SmokeOutcome.UNUSABLE, "HTTP 500")),
     TaskStatus.FAILED, None, "did not answer properly: HTTP 500$", green_gone("deploy failed")),
    ("other embeddings", task(Stage.VERIFYING), seen(gate=Gate(3), smoke=Smoke(SmokeOutcome.MISMATCH, "cosine -1")),
     TaskStatus.FAILED, None, "^cosine -1$", green_gone("deploy failed")),
    # manual promotion
    ("promoted", task(AWAITING, promote_by=AHEAD, promote_requested=True),
     seen(endpoint=endpoint(EndpointState.IN_SERVICE)), Stage.SWAPPING, 0, f"^promoted: {GREEN} goes live$", ()),
    ("promoted, but the candidate failed since", task(AWAITING, promote_by=AHEAD, promote_requested=True),
     seen(endpoint=endpoint(EndpointState.FAILED, platform_status="Failed", failure_reason="OOM")),
     TaskStatus.FAILED, None, r"is Failed \(OOM\), no longer in service", green_gone("deploy failed")),
    ("waiting for a promote: a written hop", task(AWAITING, promote_by=NOW + timedelta(seconds=100)), seen(),
     AWAITING, 101, None, ()),
    # the swap
    ("a swap that replaced blue bakes", task(Stage.SWAPPING), seen(swap=SWAP), Stage.BAKING, 60,
     rf"^{GREEN} is live; baking until 2026-01-01T12:09:59.000000Z \(10 min\): {BLUE} stays up", ()),
    ("a first deploy is done at the swap", task(Stage.SWAPPING), seen(swap=replace(SWAP, alias=alias(previous=None))),
     TaskStatus.DONE, None, "the first live variant of the model: there is nothing to roll back to", ()),
    ("no bake, a cancel met the swap made", task(Stage.SWAPPING, config=replace(CONFIG, bake_seconds=0),
     cancel_requested=True), seen(green_live=True, swap=SWAP), TaskStatus.DONE, None,
     rf"no bake \(config.bake_seconds=0\): {BLUE} is torn down now \(a cancel arrived after the swap",
     (TeardownVariant("m", BLUE, f"replaced by {GREEN}; no bake", task_id="t1"),)),
]


@pytest.mark.parametrize(
    ("given", "seen_", "outcome", "next_in", "detail", "teardowns"),
    [case[1:] for case in DECISIONS], ids=[case[0] for case in DECISIONS],
)
def test_each_row_decides_from_the_task_and_what_was_seen(
    given: Task, seen_: Seen, outcome: Outcome, next_in: int | None, detail: str | None,
    teardowns: tuple[TeardownVariant, ...],
) -> None:
    decision = decide(select(given, seen_), given, seen_, RULES)
    assert decision.outcome(given) == outcome
    assert decision.next_in == next_in
    words = decision.moves[-1].detail if decision.moves else None
    assert (words is None) if detail is None else (words is not None and re.search(detail, words)), words
    assert decision.teardowns == teardowns


def test_every_outcome_the_table_promises_is_decided_by_some_case() -> None:
    decided = {(select(given, seen_).name, outcome) for _, given, seen_, outcome, *_ in DECISIONS}
    promised = {(row.name, outcome) for row in FLOW for outcome in row.leads_to}
    assert promised - decided == set()


def applied(decision: Decision, given: Task) -> Task:
    return decision.applied(given, NOW)


def test_a_passed_preflight_names_green_sets_its_deadline_and_settles_the_instance_count() -> None:
    config = replace(CONFIG, match_live_instance_count=True, autoscaling=ScalingPolicy(2, 3, 600))
    given = task(Stage.QUEUED, config=config, variant=None)
    decision = decide(select(given, seen()), given, seen(gate=Gate(3), capacity=Capacity((), BLUE, 5)), RULES)
    written = applied(decision, given)
    assert [(e.stage, e.status) for e in written.events[-2:]] == [
        (Stage.PREFLIGHT, TaskStatus.PROCESSING), (Stage.CREATING, TaskStatus.PROCESSING)]
    assert written.variant is not None and written.variant.startswith("esd-m-")
    assert written.deadline_at == NOW + timedelta(hours=1)
    assert written.deploy == replace(config, initial_instance_count=3)
    assert written.detail is not None and "as many as the live esd-m-blue runs now, 3 within" in written.detail
    assert given.deploy == config and given.variant is None  # the task as read is left as it was


def test_a_swap_writes_when_green_went_live_and_a_bake_look_counts_its_hops() -> None:
    given = task(Stage.SWAPPING, hops=4)
    written = applied(decide(select(given, seen()), given, seen(swap=SWAP), RULES), given)
    assert (written.live_at, written.hops, written.stage) == (NOW - timedelta(seconds=1), 0, Stage.BAKING)
    look = decide(select(written, seen()), written, seen(bake=BakeLook(alias())), RULES)
    hopped = applied(look, written)
    assert (hopped.hops, hopped.updated_at, len(hopped.events)) == (1, NOW, len(written.events))


def test_an_alarm_decision_is_written_before_the_alias_moves() -> None:
    given = baking()
    written = applied(decide(select(given, seen()), given, seen(bake=BakeLook(alias(), FIRING)), RULES), given)
    assert written.rollback_detail is not None
    assert written.rollback_detail.startswith(f"rolled back: alarm {OWN_ALARMS[0]} went to ALARM at")
    assert select(written, seen()).name == "roll back: an alarm fired"


@pytest.mark.parametrize(
    ("fault", "status", "detail"),
    [
        (QuotaExceededError("ResourceLimitExceeded", said="The account-level service limit 'ml.g5.xlarge for "
                            "endpoint usage' is 0 Instances", quota="ml.g5.xlarge for endpoint usage",
                            kind=QuotaKind.INSTANCE_TYPE),
         TaskStatus.REFUSED, r"^refused by the SageMaker quota 'ml.g5.xlarge for endpoint usage' in us-east-1: 1 x "
         r"ml.g5.xlarge were asked for\. Request more .* SageMaker said: The account-level service limit"),
        (TerminalHostingError("the role is invalid"), TaskStatus.FAILED, "^the role is invalid$"),
        (ArtifactRefusedError("no dimension"), TaskStatus.REFUSED, "^no dimension$"),
    ],
    ids=["quota", "terminal", "artifact"],
)
def test_a_fault_ends_the_task_and_hands_green_over(fault: Exception, status: TaskStatus, detail: str) -> None:
    given = task(Stage.CREATING)
    decision = on_fault(given, fault, seen(), RULES)  # type: ignore[arg-type]
    assert decision.outcome(given) == status and decision.forget_model
    assert re.search(detail, decision.moves[-1].detail or "")
    assert decision.teardowns == green_gone(f"deploy {status.value}")


def test_a_fault_at_the_preflight_is_recorded_in_it_and_a_live_green_is_not_handed_over() -> None:
    queued = task(Stage.QUEUED, variant=None)
    refused = applied(on_fault(queued, ArtifactRefusedError("no dimension"), seen(), RULES), queued)
    assert [(e.stage, e.status) for e in refused.events[-2:]] == [
        (Stage.PREFLIGHT, TaskStatus.PROCESSING), (Stage.PREFLIGHT, TaskStatus.REFUSED)]
    swapping = task(Stage.SWAPPING)
    assert on_fault(swapping, TerminalHostingError("x"), seen(green_live=True), RULES).teardowns == ()


def test_a_row_that_leads_where_its_table_row_does_not_say_is_caught() -> None:
    row = next(row for row in FLOW if row.name == "create")
    wrong = replace(row, leads_to=(Stage.VERIFYING,))
    with pytest.raises(AssertionError, match="led to waiting"):
        decide(wrong, task(Stage.CREATING), seen(), RULES)


# ---- the documented table is the table -------------------------------------------------------------


def test_docs_lifecycle_shows_the_table_as_it_is() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    begin, end = FLOW_BEGIN, FLOW_END
    assert begin in text and end in text, "docs/lifecycle.md lost the markers of the deploy flow's table"
    shown = text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    assert shown == flow_table(), "docs/lifecycle.md's deploy flow is stale: run `make openapi`"


def test_a_passed_gate_keeps_the_dimension_green_answered_with_for_the_alias() -> None:
    given = task(Stage.VERIFYING)
    written = applied(decide(select(given, seen()), given, seen(gate=Gate(3, dimension=384),
                                                                smoke=Smoke(SmokeOutcome.PASSED)), RULES), given)
    assert written.deploy == replace(CONFIG, dimension=384)
    swapped = Alias("m", BLUE, None, "t0", NOW).make_live(GREEN, "t1", CONFIG.content_hash, 384, NOW)
    assert swapped is not None and (swapped.live_dimension, swapped.previous_variant) == (384, BLUE)


@pytest.mark.parametrize(
    ("given", "seen_", "log", "warn"),
    [
        (task(Stage.SWAPPING), seen(swap=replace(SWAP, alias=alias(previous=None))), "deploy done", False),
        (task(Stage.SWAPPING), seen(swap=SWAP), "deploy live, baking", False),
        (baking(live_at=NOW - timedelta(seconds=600)), seen(bake=BakeLook(alias())), "deploy done: bake over", False),
        (baking(rollback_detail="rolled back: alarm X"), seen(alias=ROLLED_BACK), "rolled back during the bake", True),
        (baking(), seen(bake=BakeLook(ROLLED_BACK)), "rolled back by hand during the bake", True),
        (task(AWAITING, promote_by=PAST), seen(), "promotion window ended", True),
        (task(Stage.WAITING), seen(endpoint=endpoint(EndpointState.FAILED)), "deploy ended", True),
        (task(Stage.WAITING), seen(endpoint=endpoint(EndpointState.CREATING)), None, False),
    ],
)
def test_the_worker_logs_each_end_and_each_swap_in_its_operators_words(
    given: Task, seen_: Seen, log: str | None, warn: bool
) -> None:
    """`esdeploy logs TASK_ID` shows these lines (tests/e2e/test_local_stack.py looks for "deploy done")."""
    decision = decide(select(given, seen_), given, seen_, RULES)
    assert (decision.log, decision.warn) == (log, warn)
