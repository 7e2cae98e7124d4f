"""Unit tests of TeardownWorker (the Remover) on the in-memory ports: variants after their bake, orphans,
endpoints SageMaker cannot delete yet, delete tasks; nothing is deleted that an active deploy owns."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.errors import RetryableError
from chalicelib.domain.messages import DeleteModel, TeardownVariant
from chalicelib.domain.models import Stage, Task, TaskStatus
from chalicelib.domain.names import variant_alarm_names, variant_name
from chalicelib.ports import VariantSpec
from chalicelib.services.dead_letters import DeadLetterOutcome, DeadLetterService
from chalicelib.services.models import ModelActions
from chalicelib.services.tasks import TaskService
from chalicelib.services.teardown_worker import MAX_TEARDOWN_ATTEMPTS, TEARDOWN_RETRY_SECONDS, TeardownWorker
from tests.fakes import FakeHosting
from tests.fakes.artifacts import publish_in_memory
from tests.fakes.memory import InMemoryAlarms, ManualClock
from tests.unit.state_machine import (
    deploy_at,
    hosted,
    live_deploy,
    next_step,
    run_next_step,
    sent,
    stored,
    submitted_delete,
)


def deploy_creating_green(adapters: wiring.Adapters, hosting: FakeHosting) -> Task:
    """A deploy in stage `waiting` whose green variant exists, as the worker leaves it."""
    adapters.hosting_factory = lambda: hosting
    publish_in_memory(adapters.artifacts, adapters.settings, "m")
    task = adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    task.variant = variant_name(adapters.settings.resource_prefix, "m", task.task_id)
    task.record(at=adapters.clock.now(), stage=Stage.WAITING, status=TaskStatus.PROCESSING)
    stored = adapters.store.update(task)
    hosting.create_variant(VariantSpec(task.variant, "m", task.task_id, "s3://b/m.tar.gz", "img", "ml.g5.xlarge", 1))
    adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    return stored


def test_given_a_green_of_an_active_deploy_when_an_orphan_teardown_arrives_then_nothing_is_deleted(
    memory_adapters: wiring.Adapters,
) -> None:
    """Issue 12: the sweeper read the locks before it listed the variants, so a green whose
    CreateModel landed in between looked orphaned, and the teardown deleted it."""
    hosting = FakeHosting(dimension=8)
    task = deploy_creating_green(memory_adapters, hosting)
    assert task.variant is not None
    orphan = TeardownVariant("m", task.variant, reason="orphan sweep")
    memory_adapters.build(TeardownWorker).teardown_variant(orphan)
    assert hosting.endpoint_names() == [task.variant]
    assert hosting.count("delete_variant") == 0
    # It asks again later: by then the deploy has ended and the alias (or this check) decides.
    [(again, delay)] = memory_adapters.teardown_queue.drain()  # type: ignore[attr-defined]
    assert isinstance(again, TeardownVariant) and again.variant == task.variant and delay > 0


def test_given_a_green_handed_over_by_its_task_when_the_task_has_ended_then_it_is_deleted(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = FakeHosting(dimension=8)
    task = deploy_creating_green(memory_adapters, hosting)
    assert task.variant is not None
    teardown = TeardownVariant("m", task.variant, reason="deploy failed", task_id=task.task_id)
    memory_adapters.writer.end(task, TaskStatus.FAILED, "it broke", teardown)
    memory_adapters.teardown_queue.drain()  # type: ignore[attr-defined]
    memory_adapters.build(TeardownWorker).teardown_variant(teardown)
    assert hosting.owned_resources() == []


# ---- one variant ----------------------------------------------------------------------------


def blue_replaced_by_green(adapters: wiring.Adapters, bake_seconds: int = 1200) -> tuple[Task, Task, TeardownVariant]:
    """m live on green, blue kept as the alias's previous variant, and the bake cut short: the deploy
    DLQ's handler ended the baking task (its step kept failing), so blue's teardown waits for the
    bake's end (`not_before`) with nobody watching alarms. Returns blue, green and that teardown."""
    hosted(adapters)
    blue = live_deploy(adapters, bake_seconds=bake_seconds)
    deploy_at(adapters, Stage.SWAPPING, bake_seconds=bake_seconds)
    green = run_next_step(adapters)
    assert green.stage == Stage.BAKING
    message, _ = next_step(adapters)
    outcome = adapters.build(DeadLetterService).handle(message, "esdeploy-test-deploy-tasks-dlq", "5")
    assert outcome is DeadLetterOutcome.TASK_FAILED
    [(teardown, _delay)] = sent(adapters, "teardown_queue")
    assert isinstance(teardown, TeardownVariant) and teardown.variant == blue.variant
    assert teardown.not_before == (green.live_at or clock_never()) + timedelta(seconds=bake_seconds)
    return blue, stored(adapters, green.task_id), teardown


def clock_never() -> datetime:
    raise AssertionError("a baking task has its live_at")


def test_given_a_bake_that_ends_when_its_last_look_runs_then_blue_is_handed_over_and_deleted_with_its_alarms(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    blue = live_deploy(memory_adapters, bake_seconds=120)
    green = live_deploy(memory_adapters, keep_teardowns=True, bake_seconds=120)
    assert green.status == TaskStatus.DONE
    [(teardown, delay)] = sent(memory_adapters, "teardown_queue")
    assert isinstance(teardown, TeardownVariant) and teardown.variant == blue.variant and delay == 0
    memory_adapters.build(TeardownWorker).handle(teardown)
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and (alias.live_variant, alias.previous_variant) == (green.variant, None)
    assert memory_adapters.hosting.endpoint_names() == [green.variant]  # type: ignore[attr-defined]
    alarms = memory_adapters.alarms
    assert isinstance(alarms, InMemoryAlarms)
    assert set(alarms.alarms) == set(variant_alarm_names(green.variant or ""))  # blue's went with it


def test_given_a_bake_longer_than_sqs_delays_when_blue_teardown_arrives_early_then_it_hops_again_and_deletes_nothing(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    blue, _green, teardown = blue_replaced_by_green(memory_adapters, bake_seconds=1200)
    clock.advance(900)
    memory_adapters.build(TeardownWorker).handle(teardown)
    [(again, delay)] = sent(memory_adapters, "teardown_queue")
    assert again == teardown and 299 <= delay <= 300
    assert blue.variant in memory_adapters.hosting.endpoint_names()  # type: ignore[attr-defined]


def test_given_the_bake_is_over_when_blue_teardown_arrives_then_rollback_stops_offering_it_and_it_is_deleted(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    _blue, green, teardown = blue_replaced_by_green(memory_adapters)
    clock.advance(1201)
    memory_adapters.build(TeardownWorker).handle(teardown)
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and (alias.live_variant, alias.previous_variant) == (green.variant, None)
    assert memory_adapters.hosting.endpoint_names() == [green.variant]  # type: ignore[attr-defined]


def test_given_a_rollback_to_blue_when_its_teardown_arrives_then_the_live_variant_is_kept(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    blue, _green, teardown = blue_replaced_by_green(memory_adapters)
    memory_adapters.build(ModelActions).rollback("m")
    clock.advance(1201)
    memory_adapters.build(TeardownWorker).handle(teardown)
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and alias.live_variant == blue.variant
    assert blue.variant in memory_adapters.hosting.endpoint_names()  # type: ignore[attr-defined]


def test_given_an_endpoint_sagemaker_cannot_delete_yet_when_torn_down_then_it_comes_back_later_each_time(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters)
    hosting.seed(VariantSpec("esd-x-00000000-11111111", "x", "gone-task", "s3://b/x", "img", "ml.g5.xlarge", 1))
    hosting.fail("delete_variant", RetryableError("Cannot update in-progress endpoint"), times=2)
    worker = memory_adapters.build(TeardownWorker)
    message = TeardownVariant("x", "esd-x-00000000-11111111", reason="orphan sweep")
    delays = []
    for _ in range(2):
        worker.handle(message)
        [(message, delay)] = sent(memory_adapters, "teardown_queue")  # type: ignore[assignment]
        delays.append(delay)
    worker.handle(message)
    assert delays == [TEARDOWN_RETRY_SECONDS, 2 * TEARDOWN_RETRY_SECONDS]
    assert hosting.owned_resources() == []


def test_given_a_teardown_deferred_too_often_when_it_is_refused_again_then_it_fails_for_sqs_and_its_dlq(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters)
    hosting.fail("delete_variant", RetryableError("Cannot update in-progress endpoint"), times=None)
    message = TeardownVariant("x", "esd-x-00000000-11111111", reason="orphan sweep", attempt=MAX_TEARDOWN_ATTEMPTS)
    with pytest.raises(RetryableError):
        memory_adapters.build(TeardownWorker).handle(message)
    assert sent(memory_adapters, "teardown_queue") == []


# ---- a delete task --------------------------------------------------------------------------


def run_delete(adapters: wiring.Adapters) -> Task:
    task = submitted_delete(adapters)
    [(message, _)] = sent(adapters, "teardown_queue")
    adapters.build(TeardownWorker).handle(message)  # type: ignore[arg-type]
    return stored(adapters, task.task_id)


def test_given_a_model_with_nothing_deployed_when_deleted_then_the_task_is_refused_saying_so(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = run_delete(memory_adapters)
    assert task.status == TaskStatus.REFUSED
    assert task.detail == "Model `m` has nothing deployed; nothing to delete"
    assert memory_adapters.locks.get("m") is None


def test_given_a_live_model_with_a_baking_blue_when_deleted_then_clients_stop_resolving_it_before_both_go(
    memory_adapters: wiring.Adapters,
) -> None:
    blue, green, _teardown = blue_replaced_by_green(memory_adapters)
    task = run_delete(memory_adapters)
    assert (task.stage, task.status) == (Stage.FINISHED, TaskStatus.DONE)
    assert task.detail == f"deleted 2 variant(s): {', '.join(sorted([str(blue.variant), str(green.variant)]))}"
    assert [e.stage for e in task.events][-3:] == [Stage.UNALIASING, Stage.TEARING_DOWN, Stage.FINISHED]
    alias = memory_adapters.aliases.get("m")
    assert alias is None or (alias.live_variant, alias.previous_variant) == (None, None)
    assert memory_adapters.mirror.parameters == {}  # type: ignore[attr-defined]
    assert memory_adapters.hosting.owned_resources() == []  # type: ignore[attr-defined]
    assert memory_adapters.locks.get("m") is None and memory_adapters.slots.holders() == {}


def test_given_an_endpoint_still_creating_when_a_delete_tears_down_then_it_waits_in_tearing_down_and_comes_back(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    live_deploy(memory_adapters)
    memory_adapters.hosting.fail(  # type: ignore[attr-defined]
        "delete_variant", RetryableError("Cannot update in-progress endpoint"), times=1
    )
    task = submitted_delete(memory_adapters)
    [(message, _)] = sent(memory_adapters, "teardown_queue")
    memory_adapters.build(TeardownWorker).handle(message)  # type: ignore[arg-type]
    assert stored(memory_adapters, task.task_id).stage == Stage.TEARING_DOWN
    [(again, delay)] = sent(memory_adapters, "teardown_queue")
    assert again == DeleteModel(task.task_id, "m", attempt=1) and delay == TEARDOWN_RETRY_SECONDS
    memory_adapters.build(TeardownWorker).handle(again)
    assert stored(memory_adapters, task.task_id).status == TaskStatus.DONE
    assert memory_adapters.hosting.owned_resources() == []  # type: ignore[attr-defined]
