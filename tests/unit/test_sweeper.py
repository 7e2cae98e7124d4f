"""Unit tests of Sweeper on the in-memory ports: how often it re-kicks, what it hands to teardown, and
what it leaves alone."""
from __future__ import annotations

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.messages import Advance, TeardownVariant
from chalicelib.domain.models import Stage
from chalicelib.ports import VariantSpec
from chalicelib.services.sweeper import Sweeper
from chalicelib.services.tasks import TaskService
from tests.fakes import ALL_PARTS, FakeHosting
from tests.fakes.artifacts import publish_in_memory
from tests.fakes.memory import ManualClock
from tests.unit.state_machine import STILL_CREATING, deploy_at, hosted, live_deploy, next_step, run_next_step, sent


def queued_deploys(adapters: wiring.Adapters, clock: ManualClock, count: int) -> list[str]:
    """Deploys of `count` models whose first messages sit in a long queue (none delivered yet)."""
    adapters.hosting_factory = lambda: FakeHosting(dimension=8)
    ids = []
    for index in range(count):
        publish_in_memory(adapters.artifacts, adapters.settings, f"m{index}")
        ids.append(adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": f"m{index}"})).task_id)
        clock.advance(1)
    adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    return ids


def test_given_stalled_tasks_when_the_sweeper_runs_twice_in_a_stall_window_then_each_is_rekicked_once(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    """Issue 15: with ~3,000 tasks queued, every run re-sent every one of them (429 duplicates in 8 min)."""
    ids = queued_deploys(memory_adapters, clock, 4)
    clock.advance(memory_adapters.settings.stall_seconds + 1)
    sweeper = memory_adapters.build(Sweeper)
    assert sweeper.sweep().rekicked == ids
    sent = memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    # The step each task waits for; recording the re-kick does not move the task's version.
    assert [message for message, _ in sent] == [Advance(task_id, 1) for task_id in ids]
    clock.advance(600)  # the next scheduled run: still inside the stall window of the re-kick
    assert sweeper.sweep().rekicked == []
    assert memory_adapters.deploy_queue.messages == []  # type: ignore[attr-defined]
    clock.advance(memory_adapters.settings.stall_seconds)
    assert sweeper.sweep().rekicked == ids
    stored = memory_adapters.store.get(ids[0])
    assert stored is not None and stored.rekicked_at is not None


def test_given_more_stalled_tasks_than_the_cap_when_the_sweeper_runs_then_it_rekicks_the_oldest_up_to_the_cap(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    ids = queued_deploys(memory_adapters, clock, 5)
    clock.advance(memory_adapters.settings.stall_seconds + 1)
    memory_adapters.settings = memory_adapters.settings.model_copy(update={"sweep_max_rekicks": 2})
    sweeper = memory_adapters.build(Sweeper)
    assert sweeper.sweep().rekicked == ids[:2]
    assert sweeper.sweep().rekicked == ids[2:4]
    assert sweeper.sweep().rekicked == ids[4:]
    assert sweeper.sweep().rekicked == []


def test_given_slots_left_by_ended_tasks_when_the_sweeper_runs_then_only_those_of_models_not_live_are_freed(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    """A crash between a task's last write and freeing its slot must not shrink the cap for good."""
    from chalicelib.domain.models import Alias, TaskStatus

    running, crashed, live = queued_deploys(memory_adapters, clock, 3)
    slots = memory_adapters.slots
    for model, task_id in (("m0", running), ("m1", crashed), ("m2", live)):
        slots.reserve(model, task_id, cap=10)
    for task_id in (crashed, live):
        task = memory_adapters.store.get(task_id)
        assert task is not None
        task.record(at=clock.now(), stage=Stage.FINISHED, status=TaskStatus.FAILED, detail="ended")
        memory_adapters.store.update(task)  # written, but the slot was never freed (a crash)
    memory_adapters.aliases.swap(Alias("m2", "esd-m2-live", None, live, clock.now()), expected_version=0)
    slots.reserve("m3", "a-task-that-was-never-stored", cap=10)
    report = memory_adapters.build(Sweeper).sweep()
    assert report.freed_slots == ["m1", "m3"]
    assert slots.holders() == {"m0": running, "m2": live}


def test_given_a_variant_nobody_owns_when_the_sweeper_runs_then_it_is_handed_to_teardown_as_an_orphan(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters)
    orphan = VariantSpec("esd-leftover-00000000-11111111", "leftover", "crashed-task", "s3://x", "img",
                         "ml.g5.xlarge", 1)
    hosting.seed(orphan, parts=ALL_PARTS[:2])  # a create that died half-way
    report = memory_adapters.build(Sweeper).sweep()
    assert report.orphans == [orphan.name]
    assert [m for m, _ in sent(memory_adapters, "teardown_queue")] == [
        TeardownVariant("leftover", orphan.name, reason="orphan sweep", task_id="crashed-task")
    ]


def test_given_a_live_variant_a_baking_blue_and_a_green_in_flight_when_the_sweeper_runs_then_it_spares_all_three(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters)
    live_deploy(memory_adapters, "m")
    deploy_at(memory_adapters, Stage.SWAPPING, "m")
    assert run_next_step(memory_adapters).stage == Stage.BAKING  # m: live green, blue kept for the bake
    next_step(memory_adapters)  # its next look at the alarms, not delivered
    hosting.script(None, creation_seconds=STILL_CREATING)
    in_flight = deploy_at(memory_adapters, Stage.WAITING, "other")
    assert len(hosting.endpoint_names()) == 3
    report = memory_adapters.build(Sweeper).sweep()
    assert report.orphans == [] and report.rekicked == []
    assert sent(memory_adapters, "teardown_queue") == []
    assert in_flight.variant in hosting.endpoint_names()


def test_given_a_baking_deploy_whose_next_look_was_lost_when_the_sweeper_runs_then_the_bake_goes_on(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    hosting = hosted(memory_adapters)
    live_deploy(memory_adapters, "m", bake_seconds=3600)
    deploy_at(memory_adapters, Stage.SWAPPING, "m", bake_seconds=3600)
    green = run_next_step(memory_adapters)
    assert green.stage == Stage.BAKING
    next_step(memory_adapters)  # lost with a crashed Lambda
    clock.advance(memory_adapters.settings.stall_seconds + 1)
    report = memory_adapters.build(Sweeper).sweep()
    assert report.rekicked == [green.task_id] and report.orphans == []
    assert len(hosting.endpoint_names()) == 2  # blue and green both spared
    resumed, _delay = next_step(memory_adapters)
    assert resumed == Advance(green.task_id, green.version)
