"""A Lambda may die right after any write: every worker must resume on redelivery, without leaks.

The crash points are not guessed: one happy run of the lifecycle below records every write each
worker makes (tests/fakes/crash_points.py), and each case replays the same lifecycle with the
process killed right after exactly one of them. The ids say which write and how many there are
(`070of111-deploy_worker[advance]:store.update#20(Task:m3-evented:finished/done)`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from chalicelib.adapters.queue_messages import ADVANCE
from chalicelib.adapters.sagemaker_shapes import endpoint_state_change
from chalicelib.config import dead_letter_name
from chalicelib.domain.errors import RetryableError, TerminalHostingError
from chalicelib.domain.models import AlarmState
from chalicelib.domain.names import variant_alarm_names, variant_name
from chalicelib.ports import VariantSpec
from tests.conftest import TEST_ENV
from tests.fakes.artifacts import publish_in_memory
from tests.fakes.crash_points import CrashPlan, CrashPoint
from tests.fakes.fake_hosting import FakeHosting
from tests.fakes.memory import InMemoryAlarms
from tests.scenarios.conftest import DIMENSION, manifest_for
from tests.scenarios.memory_world import MemoryWorld, creating_for_one_poll, memory_world

BAKE = {"bake_seconds": 60}
TASKS = {"m1-blue": "deploy", "m1-green": "deploy", "m1-delete": "delete", "m2-poison": "deploy",
         "m3-evented": "deploy", "m3-delete": "delete", "m4-canceled": "deploy",
         "m5-blue": "deploy", "m5-alarmed": "deploy", "m5-delete": "delete"}
MODELS = ("m1", "m2", "m3", "m4", "m5")
WORKERS = ("api", "requests_worker", "deploy_worker", "teardown_worker", "deploy_dead_letters", "sweeper")


def lifecycle(world: MemoryWorld) -> None:
    """Every worker at work. The intake submits m1's first version; a second comes over HTTP with
    manual promotion, one of its messages is lost (the sweeper re-kicks it), and it is promoted
    over HTTP once its candidate waits, bakes, and the old one is torn down after the bake
    (rollback stops being offered first); m1 is deleted over HTTP at the end. m5's second version
    goes live and its 5XX alarm goes to ALARM during its bake: CloudWatch's event wakes it, the
    alias goes back to m5's first version and the second is torn down with its alarms. m3 is woken by
    SageMaker's state-change event while the intake's delete of m3 waits for it; m4 is cancelled
    while its endpoint comes up. m2's endpoint never answers DescribeEndpoint, so its step reaches the
    deploy DLQ, whose handler fails the task and tears its green down. A leftover variant's
    teardown is refused five times (teardown DLQ), and the sweeper hands it to teardown again."""
    settings = world.adapters.settings
    prefix = settings.resource_prefix
    world.hosting.script(None, creation_seconds=creating_for_one_poll(settings))
    for model_id in MODELS:
        publish_in_memory(world.adapters.artifacts, settings, model_id, manifest_for(model_id))
    leftover = f"{prefix}-leftover-00000000-11111111"
    world.hosting.seed(VariantSpec(leftover, "leftover", "crashed-task", "s3://x", "img", "ml.g5.xlarge", 1))
    world.hosting.fail("delete_variant", TerminalHostingError("SageMaker denied the request"), times=5,
                       name=leftover)
    world.hosting.fail("describe", RetryableError("DescribeEndpoint throttled"), times=None,
                       name=variant_name(prefix, "m2", "m2-poison"))
    evented = variant_name(prefix, "m3", "m3-evented")
    world.hosting.script(evented, creation_seconds=0)

    world.intake({"action": "deploy", "embedding_model_id": "m1", "id": "m1-blue", "config": BAKE})
    world.pump()
    # m1's second version is promoted by hand after the gate (the reindex window).
    green = {**BAKE, "promotion": "manual"}
    assert world.post("/deploy", {"embedding_model_id": "m1", "id": "m1-green", "config": green}).status_code == 200
    world.lose.append(lost_once(world, "m1-green", stage="waiting"))
    awaiting = lambda: stage_of(world, "m1-green") == "awaiting_promotion"  # noqa: E731
    for _ in range(4):  # the lost message stalls it until the sweeper's next run finds it
        world.pump(until=awaiting)
        if awaiting():
            break
        world.clock.advance(world.adapters.settings.stall_seconds + 1)
        world.sweep()
    assert world.post("/deploy/m1-green/promote", {}).status_code == 200
    world.settle()

    assert world.post("/deploy", {"embedding_model_id": "m3", "id": "m3-evented"}).status_code == 200
    world.intake({"action": "delete", "embedding_model_id": "m3", "id": "m3-delete"})
    world.pump(until=lambda: stage_of(world, "m3-evented") == "waiting")
    world.sqs.send(settings.deploy_queue, json.dumps(
        endpoint_state_change(evented, "IN_SERVICE", {"embedding_model_id": "m3", "task_id": "m3-evented"},
                              region="us-east-1", account="123456789012", at=world.clock.now())
    ))
    assert world.post("/deploy", {"embedding_model_id": "m4", "id": "m4-canceled"}).status_code == 200
    world.pump(until=lambda: stage_of(world, "m4-canceled") == "waiting")
    assert world.post("/deploy/m4-canceled/cancel", {}).status_code == 200
    world.pump()
    assert world.post("/deploy", {"embedding_model_id": "m5", "id": "m5-blue", "config": BAKE}).status_code == 200
    world.pump()
    assert world.post("/deploy", {"embedding_model_id": "m5", "id": "m5-alarmed", "config": BAKE}).status_code == 200
    world.pump(until=lambda: stage_of(world, "m5-alarmed") == "baking")
    alarmed = variant_alarm_names(variant_name(prefix, "m5", "m5-alarmed"))[0]
    world.adapters.alarms.set_state(alarmed, AlarmState.ALARM, "Threshold Crossed")  # type: ignore[attr-defined]
    world.sqs.send(settings.deploy_queue, json.dumps(
        alarm_state_change(alarmed, AlarmState.ALARM, "Threshold Crossed", world.clock.now(),
                           account="123456789012", region="us-east-1")
    ))
    world.pump()
    assert world.post("/delete", {"embedding_model_id": "m5", "id": "m5-delete"}).status_code == 200
    world.pump()
    assert world.post("/delete", {"embedding_model_id": "m1", "id": "m1-delete"}).status_code == 200
    assert world.post("/deploy", {"embedding_model_id": "m2", "id": "m2-poison"}).status_code == 200
    world.settle()


def alarmed_name(world: MemoryWorld) -> str:
    return variant_alarm_names(variant_name(world.adapters.settings.resource_prefix, "m5", "m5-alarmed"))[0]


def stage_of(world: MemoryWorld, task_id: str) -> str | None:
    task = world.adapters.store.get(task_id)
    return task.stage.value if task is not None else None


def lost_once(world: MemoryWorld, task_id: str, stage: str) -> Any:
    """Loses the first step message of `task_id` that arrives while the task is in `stage`."""
    lost: list[bool] = []

    def rule(body: dict[str, Any]) -> bool:
        if lost or body.get("action") != ADVANCE or body.get("task_id") != task_id:
            return False
        task = world.adapters.store.get(task_id)
        if task is None or task.stage.value != stage:
            return False
        lost.append(True)
        return True

    return rule


@dataclass(frozen=True)
class Outcome:
    """What a user would see once everything settled."""

    statuses: dict[str, str]
    running: list[str]  # SageMaker resources of ours still there (they bill)
    alarms: list[str]  # CloudWatch alarms of ours still there
    endpoints_created: int
    live_models: list[str]
    published_aliases: dict[str, str]
    slots: dict[str, str]
    leases_of_active_tasks: list[str]
    waiting_messages: dict[str, int]
    new_deploys_accepted: dict[str, int]


def alarms_of(world: MemoryWorld) -> InMemoryAlarms:
    alarms = world.adapters.alarms._target  # type: ignore[attr-defined]  # under the crashing wrapper
    assert isinstance(alarms, InMemoryAlarms)
    return alarms


def outcome(world: MemoryWorld) -> Outcome:
    adapters = world.adapters
    statuses = {task_id: world.task(task_id, kind)["status"] for task_id, kind in TASKS.items()}
    leases = []
    for lease in adapters.locks.list_held():
        task = adapters.store.get(lease.task_id)
        if task is not None and task.is_active:
            leases.append(lease.task_id)
    waiting = {name: len(queue.messages) for name, queue in world.sqs.queues.items() if queue.messages}
    result = Outcome(
        statuses=statuses,
        running=sorted({r.name for r in world.hosting.owned_resources()}),
        alarms=sorted(alarms_of(world).alarms),
        endpoints_created=world.hosting.part_creations["endpoint"],
        live_models=[a.embedding_model_id for a in adapters.aliases.list_live()],
        published_aliases=dict(adapters.mirror.parameters),  # type: ignore[attr-defined]
        slots=adapters.slots.holders(),
        leases_of_active_tasks=leases,
        waiting_messages=waiting,
        # Last: a lease or a slot left behind would refuse the next deploy of its model.
        new_deploys_accepted={
            model_id: world.post("/deploy", {"embedding_model_id": model_id, "id": f"{model_id}-next"}).status_code
            for model_id in MODELS
        },
    )
    return result


def run(target: CrashPoint | None) -> tuple[MemoryWorld, CrashPlan, Outcome]:
    plan = CrashPlan(target=target)
    with memory_world(TEST_ENV, plan, FakeHosting(dimension=DIMENSION)) as world:
        lifecycle(world)
        writes = len(plan.recorded)
        plan.target = None
        result = outcome(world)
        del plan.recorded[writes:]  # the outcome's own requests are not part of the matrix
        return world, plan, result


@cache
def happy_run() -> tuple[MemoryWorld, CrashPlan, Outcome]:
    return run(None)


def distinct(points: list[CrashPoint]) -> list[CrashPoint]:
    """The first of each kind of write: the intake's re-sends while its model is busy, or a second
    poll of the same stage, repeat a code path and the state it leaves."""
    seen: set[tuple[str, str, str, str, str]] = set()
    chosen = []
    for point in points:
        key = (point.worker, point.during, point.port, point.method, point.subject)
        if key not in seen:
            seen.add(key)
            chosen.append(point)
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "crash_point" in metafunc.fixturenames:
        points = distinct(happy_run()[1].recorded)
        ids = [f"{n:03d}of{len(points)}-{point.label}" for n, point in enumerate(points, 1)]
        metafunc.parametrize("crash_point", points, ids=ids)


def test_the_happy_run_shows_every_worker_at_work_and_ends_clean() -> None:
    world, plan, result = happy_run()
    assert result == Outcome(
        statuses={"m1-blue": "done", "m1-green": "done", "m1-delete": "done", "m2-poison": "failed",
                  "m3-evented": "done", "m3-delete": "done", "m4-canceled": "canceled",
                  "m5-blue": "done", "m5-alarmed": "failed", "m5-delete": "done"},
        running=[],
        alarms=[],
        endpoints_created=7,
        live_models=[],
        published_aliases={},
        slots={},
        leases_of_active_tasks=[],
        waiting_messages={},
        new_deploys_accepted=dict.fromkeys(MODELS, 200),
    )
    outcomes = {(i.worker, i.outcome) for i in world.invocations}
    assert {("lost", "lost"), ("deploy_dead_letters", "ok"), ("teardown_dead_letters", "ok")} <= outcomes
    settings = world.adapters.settings
    assert not world.sqs.queues[dead_letter_name(settings.requests_queue)].messages  # no request lost
    # Every worker leaves writes behind, so every one of them is crashed somewhere in the matrix.
    assert {p.worker for p in plan.recorded} == set(WORKERS)
    rekicks = [p for p in plan.recorded if p.worker == "sweeper" and p.method == "note_rekick"]
    assert [p.subject for p in rekicks][:1] == ["Task:m1-green:waiting/processing"]
    # Each kind of message and request is handled somewhere in the run, so it is crashed somewhere.
    assert {(p.worker, p.during) for p in plan.recorded} >= {
        ("requests_worker", "deploy"), ("requests_worker", "delete"), ("api", "/deploy"), ("api", "/delete"),
        ("api", "/deploy/m4-canceled/cancel"), ("api", "/deploy/m1-green/promote"),
        ("deploy_worker", "advance"), ("deploy_worker", "endpoint_changed"), ("deploy_worker", "alarm_changed"),
        ("teardown_worker", "teardown_variant"), ("teardown_worker", "delete_model"),
        ("deploy_dead_letters", "advance"), ("sweeper", "schedule"),
    }
    # Blue's teardown after the bake stops offering it for rollback before it deletes it.
    assert any(p.worker == "teardown_worker" and p.during == "teardown_variant" and p.port == "aliases"
               for p in plan.recorded)
    # The bakes' writes are crashed too: a look at the alarms (a written hop), the bake's end, and
    # the alarm's rollback (the decision, the alias back on m5's first version, the task's end).
    written = {p.subject for p in plan.recorded if p.worker == "deploy_worker" and p.port == "store"}
    assert {"Task:m1-green:baking/processing", "Task:m1-green:finished/done",
            "Task:m5-alarmed:baking/processing", "Task:m5-alarmed:baking/failed"} <= written
    back_to_blue = f"Alias:m5->{variant_name(settings.resource_prefix, 'm5', 'm5-blue')}"
    assert [(p.worker, p.port) for p in plan.recorded if p.subject == back_to_blue] == [
        ("deploy_worker", "aliases"), ("deploy_worker", "mirror"),  # the swap of m5-blue is the first's
        ("deploy_worker", "aliases"), ("deploy_worker", "mirror"),  # the rollback
    ]
    alarmed = world.adapters.store.get("m5-alarmed")
    assert alarmed is not None and alarmed.detail is not None
    assert alarmed_name(world) in alarmed.detail and "Threshold Crossed" in alarmed.detail
    # m3's endpoint event woke it: the poll it had scheduled found the task moved on.
    assert world.hosting.count("describe", variant_name(settings.resource_prefix, "m3", "m3-evented")) == 1


def test_a_crash_after_any_write_resumes_without_leaks(crash_point: CrashPoint) -> None:
    world, plan, result = run(crash_point)
    # The process died exactly once, right after the recorded call, in the recorded worker.
    assert plan.crashed_at == crash_point
    assert [i.worker for i in world.invocations if i.outcome == "crashed"] == [crash_point.worker]
    assert result == happy_run()[2]
