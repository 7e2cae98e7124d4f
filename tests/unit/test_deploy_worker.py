"""Unit tests of DeployWorker on the in-memory ports: each step of the state machine, its faults, and
messages that come too early or too late. One scenario per test."""
from __future__ import annotations

import pytest

from chalicelib import wiring
from chalicelib.adapters.memory import ManualClock
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.errors import RetryableError
from chalicelib.domain.messages import Advance, EndpointChanged, TeardownVariant
from chalicelib.domain.models import EndpointState, Stage, Task, TaskStatus
from chalicelib.domain.names import variant_name
from chalicelib.services.deploy_worker import MAX_EARLY_RESENDS, DeployWorker
from chalicelib.services.tasks import TaskService
from tests.fakes import Answer, FakeHosting
from tests.fakes.artifacts import publish_in_memory
from tests.unit.state_machine import (
    STILL_CREATING,
    deploy_at,
    hosted,
    live_deploy,
    next_step,
    run_next_step,
    sent,
    stored,
    submitted_deploy,
    teardowns_sent,
)


def accepted_deploy(adapters: wiring.Adapters) -> Task:
    adapters.hosting_factory = lambda: FakeHosting(dimension=8)
    publish_in_memory(adapters.artifacts, adapters.settings, "m")
    task = adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    return task


def test_given_a_message_ahead_of_the_stored_task_when_it_arrives_then_it_comes_back_in_seconds(
    memory_adapters: wiring.Adapters,
) -> None:
    """Issue 12: it used to fail the delivery and wait out the queue's visibility timeout (18 min)."""
    task = accepted_deploy(memory_adapters)
    memory_adapters.build(DeployWorker).advance(Advance(task.task_id, task.version + 1))
    delay = memory_adapters.settings.early_message_delay_seconds
    assert memory_adapters.deploy_queue.messages == [  # type: ignore[attr-defined]
        (Advance(task.task_id, task.version + 1, attempt=1), delay)
    ]
    assert delay <= 60
    stored = memory_adapters.store.get(task.task_id)
    assert stored is not None and stored.version == task.version  # nothing ran ahead of its step


def test_given_a_write_that_never_lands_when_the_message_came_back_often_enough_then_sqs_takes_over(
    memory_adapters: wiring.Adapters,
) -> None:
    task = accepted_deploy(memory_adapters)
    with pytest.raises(RetryableError, match="re-sends"):
        memory_adapters.build(DeployWorker).advance(Advance(task.task_id, task.version + 1, attempt=MAX_EARLY_RESENDS))
    assert memory_adapters.deploy_queue.messages == []  # type: ignore[attr-defined]


# ---- one step at a time: where each step leaves the task ------------------------------------


def test_given_a_queued_deploy_when_its_first_step_runs_then_it_reserves_a_slot_names_its_green_and_creates_next(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = submitted_deploy(memory_adapters)
    task = run_next_step(memory_adapters)
    assert (task.stage, task.status) == (Stage.CREATING, TaskStatus.PROCESSING)
    assert task.variant == variant_name(memory_adapters.settings.resource_prefix, "m", task.task_id)
    assert memory_adapters.slots.holders() == {"m": task.task_id}
    assert next_step(memory_adapters) == (Advance(task.task_id, task.version), 0)


def test_given_a_deploy_in_creating_when_the_step_runs_then_the_pinned_artifact_is_created_and_polled_later(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.CREATING)
    task = run_next_step(memory_adapters)
    assert task.stage == Stage.WAITING
    spec = hosting.spec(task.variant or "")
    assert spec is not None and spec.model_data_url == task.config["model_data_url"]
    assert next_step(memory_adapters) == (
        Advance(task.task_id, task.version), memory_adapters.settings.poll_initial_seconds
    )


def test_given_an_endpoint_still_creating_when_polled_then_the_next_poll_comes_later_each_time(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters, creation_seconds=STILL_CREATING)
    task = deploy_at(memory_adapters, Stage.WAITING)
    delays = []
    for _ in range(3):
        message, delay = next_step(memory_adapters)
        delays.append(delay)
        memory_adapters.build(DeployWorker).handle(message)
    delays.append(next_step(memory_adapters)[1])
    task = stored(memory_adapters, task.task_id)
    assert task.stage == Stage.WAITING and task.polls == 3
    settings = memory_adapters.settings
    assert delays == [settings.poll_initial_seconds] + [settings.poll_delay(n) for n in (1, 2, 3)]
    assert delays[1] < delays[2] < delays[3]
    assert hosting.count("describe") == 3


def test_given_an_endpoint_in_service_when_polled_then_the_task_goes_on_to_verify_at_once(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.WAITING)
    task = run_next_step(memory_adapters)
    assert task.stage == Stage.VERIFYING
    assert next_step(memory_adapters) == (Advance(task.task_id, task.version), 0)


def test_given_a_waiting_task_when_sagemaker_says_in_service_then_it_verifies_without_waiting_for_its_poll(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.WAITING)
    next_step(memory_adapters)  # the poll, due in 30 s: not delivered yet
    assert task.variant is not None
    event = EndpointChanged(task.variant, EndpointState.IN_SERVICE, "InService", task.task_id, "m")
    memory_adapters.build(DeployWorker).handle(event)
    assert stored(memory_adapters, task.task_id).stage == Stage.VERIFYING


def test_given_a_green_that_answers_the_probes_when_verified_then_it_becomes_live_and_the_task_is_done(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.VERIFYING)
    task = run_next_step(memory_adapters)
    assert task.stage == Stage.SWAPPING
    task = run_next_step(memory_adapters)
    assert (task.stage, task.status) == (Stage.FINISHED, TaskStatus.DONE)
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and alias.live_variant == task.variant and alias.previous_variant is None
    assert memory_adapters.mirror.parameters == {"m": task.variant}  # type: ignore[attr-defined]
    assert memory_adapters.locks.get("m") is None
    assert memory_adapters.slots.holders() == {"m": task.task_id}  # live: it keeps its slot


def test_given_a_live_blue_when_green_is_swapped_in_then_blue_stays_for_the_bake_and_its_teardown_is_scheduled(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    blue = live_deploy(memory_adapters, bake_seconds=1200)
    green = deploy_at(memory_adapters, Stage.SWAPPING, bake_seconds=1200)
    swapped_at = memory_adapters.clock.now()
    green = run_next_step(memory_adapters)
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and (alias.live_variant, alias.previous_variant) == (green.variant, blue.variant)
    [(teardown, delay)] = sent(memory_adapters, "teardown_queue")
    assert isinstance(teardown, TeardownVariant) and teardown.variant == blue.variant
    assert teardown.not_before is not None
    assert 1199 <= (teardown.not_before - swapped_at).total_seconds() <= 1201
    assert delay == 900  # SQS's longest delay; the teardown worker chains the rest


def test_given_an_endpoint_that_failed_when_polled_then_the_task_fails_with_its_reason_and_green_goes(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters, outcome=EndpointState.FAILED)
    task = deploy_at(memory_adapters, Stage.WAITING)
    task = run_next_step(memory_adapters)
    assert task.status == TaskStatus.FAILED
    assert task.detail is not None and "failed" in task.detail and str(task.variant) in task.detail
    assert [m for m, _ in sent(memory_adapters, "teardown_queue")] == [
        TeardownVariant("m", task.variant or "", reason="deploy failed", task_id=task.task_id)
    ]
    assert memory_adapters.locks.get("m") is None and memory_adapters.slots.holders() == {}


def test_given_a_green_that_answers_other_vectors_when_verified_then_the_task_fails_and_the_alias_is_untouched(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters)
    blue = live_deploy(memory_adapters)
    task = deploy_at(memory_adapters, Stage.VERIFYING)
    hosting.script(task.variant, answers=[Answer.WRONG_VECTORS])
    task = run_next_step(memory_adapters)
    assert task.status == TaskStatus.FAILED and task.detail
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and alias.live_variant == blue.variant
    assert teardowns_sent(memory_adapters) == [task.variant]


def test_given_a_deploy_past_its_deadline_when_its_poll_arrives_then_it_fails_saying_so_and_green_goes(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    hosted(memory_adapters, creation_seconds=STILL_CREATING)
    task = deploy_at(memory_adapters, Stage.WAITING)
    clock.advance(memory_adapters.settings.deploy_deadline_seconds + 1)
    task = run_next_step(memory_adapters)
    assert task.status == TaskStatus.FAILED
    assert task.detail is not None and "deadline" in task.detail
    assert teardowns_sent(memory_adapters) == [task.variant]


def test_given_a_message_older_than_the_task_when_it_arrives_then_nothing_happens(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.WAITING)
    memory_adapters.build(DeployWorker).handle(Advance(task.task_id, task.version - 1))
    assert stored(memory_adapters, task.task_id) == task
    assert hosting.count("describe") == 0
    assert next_step(memory_adapters) == (Advance(task.task_id, task.version), 30)  # only the real poll


def test_given_a_cancel_while_waiting_when_the_next_step_runs_then_the_task_ends_canceled_and_green_goes(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters, creation_seconds=STILL_CREATING)
    task = deploy_at(memory_adapters, Stage.WAITING)
    next_step(memory_adapters)
    memory_adapters.build(TaskService).cancel(task.task_id)
    task = run_next_step(memory_adapters)
    assert task.status == TaskStatus.CANCELED
    assert teardowns_sent(memory_adapters) == [task.variant]
    assert memory_adapters.locks.get("m") is None
