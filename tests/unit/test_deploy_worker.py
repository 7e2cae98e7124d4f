"""Unit tests of DeployWorker on the in-memory ports: each step of the state machine, its faults, and
messages that come too early or too late. One scenario per test."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.errors import ConcurrentUpdateError, InvalidStateError, RetryableError
from chalicelib.domain.messages import Advance, AlarmChanged, Delivery, EndpointChanged, TeardownVariant
from chalicelib.domain.models import AlarmState, EndpointState, Stage, Task, TaskStatus, iso
from chalicelib.domain.names import variant_alarm_names, variant_name
from chalicelib.services.deploy_worker import MAX_EARLY_RESENDS, DeployWorker
from chalicelib.services.models import ModelActions
from chalicelib.services.tasks import TaskService
from tests.fakes import Answer, FakeHosting
from tests.fakes.artifacts import publish_in_memory
from tests.fakes.memory import InMemoryAlarms, ManualClock
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
    assert spec is not None and spec.model_data_url == task.deploy_config.model_data_url
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


def test_given_a_live_blue_when_green_is_swapped_in_then_it_bakes_with_its_alarms_and_blue_stays(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    blue = live_deploy(memory_adapters, bake_seconds=1200)
    green = deploy_at(memory_adapters, Stage.SWAPPING, bake_seconds=1200, max_model_latency_ms=750)
    swapped_at = memory_adapters.clock.now()
    green = run_next_step(memory_adapters)
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and (alias.live_variant, alias.previous_variant) == (green.variant, blue.variant)
    assert (green.status, green.stage) == (TaskStatus.PROCESSING, Stage.BAKING)
    assert green.live_at is not None and 0 <= (green.live_at - swapped_at).total_seconds() < 1
    assert sent(memory_adapters, "teardown_queue") == []  # blue is not handed over before the bake ends
    assert memory_adapters.locks.get("m") is not None  # the lease is held through the bake
    five_xx, latency = variant_alarm_names(green.variant or "")
    requests = {name: alarm.request for name, alarm in alarms_of(memory_adapters).alarms.items()}
    assert set(requests) == {five_xx, latency, *variant_alarm_names(blue.variant or "")}  # blue keeps its own
    assert requests[latency] is not None and requests[latency]["Threshold"] == 750 * 1000  # microseconds
    assert requests[five_xx] is not None and requests[five_xx]["Threshold"] == float(
        memory_adapters.settings.rollback_max_5xx_errors_per_minute
    )
    assert green.detail is not None and five_xx in green.detail and str(blue.variant) in green.detail
    assert next_step(memory_adapters) == (
        Advance(green.task_id, green.version), memory_adapters.settings.bake_check_seconds
    )


def test_given_a_first_deploy_when_swapped_in_then_it_is_done_at_once_with_no_bake_but_its_alarms(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.SWAPPING, bake_seconds=1200)
    task = run_next_step(memory_adapters)
    assert (task.status, task.stage) == (TaskStatus.DONE, Stage.FINISHED)
    assert task.live_at is not None
    assert task.detail is not None and "nothing to roll back to, so no bake" in task.detail
    assert set(alarms_of(memory_adapters).alarms) == set(variant_alarm_names(task.variant or ""))
    assert memory_adapters.locks.get("m") is None


def baking(adapters: wiring.Adapters, bake_seconds: int = 1200, **config: object) -> tuple[Task, Task]:
    """(blue, green): green live and baking, its first look waiting on deploy-tasks."""
    hosted(adapters)
    blue = live_deploy(adapters, bake_seconds=bake_seconds)
    green = deploy_at(adapters, Stage.SWAPPING, bake_seconds=bake_seconds, **config)
    green = run_next_step(adapters)
    assert green.stage == Stage.BAKING
    return blue, green


def alarms_of(adapters: wiring.Adapters) -> InMemoryAlarms:
    alarms = adapters.alarms
    assert isinstance(alarms, InMemoryAlarms)
    return alarms


def test_given_a_quiet_bake_when_each_look_runs_then_it_hops_until_the_end_and_then_hands_blue_over(
    memory_adapters: wiring.Adapters, clock: ManualClock
) -> None:
    blue, green = baking(memory_adapters, bake_seconds=150)
    delays = []
    task = green
    while task.is_active:
        message, delay = next_step(memory_adapters)
        delays.append(delay)
        clock.advance(delay)
        memory_adapters.build(DeployWorker).handle(message)
        task = stored(memory_adapters, green.task_id)
    assert delays == [60, 60, 30]  # never past the bake's end
    assert (task.status, task.stage) == (TaskStatus.DONE, Stage.FINISHED)
    assert teardowns_sent(memory_adapters) == [blue.variant]
    assert memory_adapters.locks.get("m") is None


def test_given_a_bake_when_esdeploys_alarm_goes_to_alarm_then_the_alias_goes_back_and_the_task_fails_naming_it(
    memory_adapters: wiring.Adapters,
) -> None:
    blue, green = baking(memory_adapters)
    five_xx, _ = variant_alarm_names(green.variant or "")
    alarms_of(memory_adapters).set_state(five_xx, AlarmState.ALARM, "Threshold Crossed: 1 datapoint [9.0] > 5.0")
    decided = run_next_step(memory_adapters)  # the decision is written first...
    assert decided.rollback_detail is not None and decided.is_active
    task = run_next_step(memory_adapters)  # ...then the alias moves and the task ends
    assert task.status == TaskStatus.FAILED
    assert task.detail is not None and five_xx in task.detail and "Threshold Crossed" in task.detail
    assert iso(alarms_of(memory_adapters).alarms[five_xx].since or task.updated_at) in task.detail
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and (alias.live_variant, alias.previous_variant) == (blue.variant, None)
    assert memory_adapters.mirror.parameters == {"m": blue.variant}  # type: ignore[attr-defined]
    assert teardowns_sent(memory_adapters) == [green.variant]
    assert memory_adapters.locks.get("m") is None


def test_given_a_bake_when_a_listed_rollback_alarm_fires_then_it_rolls_back_too(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    alarms_of(memory_adapters).define("checkout-errors")
    blue, green = baking(memory_adapters, rollback_alarms=["checkout-errors", "never-made"])
    assert green.detail is not None and "never-made does not exist in CloudWatch" in green.detail
    alarms_of(memory_adapters).set_state("checkout-errors", AlarmState.ALARM, "Threshold Crossed")
    run_next_step(memory_adapters)
    task = run_next_step(memory_adapters)
    assert task.status == TaskStatus.FAILED and task.detail is not None and "checkout-errors" in task.detail
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and alias.live_variant == blue.variant


def test_given_a_crash_after_the_rollback_write_when_the_step_runs_again_then_it_still_ends_failed_naming_the_alarm(
    memory_adapters: wiring.Adapters,
) -> None:
    blue, green = baking(memory_adapters)
    five_xx, _ = variant_alarm_names(green.variant or "")
    alarms_of(memory_adapters).set_state(five_xx, AlarmState.ALARM, "Threshold Crossed")
    run_next_step(memory_adapters)
    message, _ = next_step(memory_adapters)
    # The alias went back to blue, then the process died before the task was written.
    alias = memory_adapters.aliases.get("m")
    assert alias is not None
    memory_adapters.aliases.swap(
        replace(alias, live_variant=blue.variant, previous_variant=None), expected_version=alias.version
    )
    alarms_of(memory_adapters).set_state(five_xx, AlarmState.OK, "back to normal")  # and it recovered since
    memory_adapters.build(DeployWorker).handle(message)  # SQS redelivers the step
    task = stored(memory_adapters, green.task_id)
    assert task.status == TaskStatus.FAILED and task.detail is not None and five_xx in task.detail


def test_given_a_bake_when_it_is_canceled_then_the_alias_goes_back_and_the_task_ends_canceled(
    memory_adapters: wiring.Adapters,
) -> None:
    blue, green = baking(memory_adapters)
    next_step(memory_adapters)  # the hop, not delivered
    memory_adapters.build(TaskService).cancel(green.task_id)
    task = run_next_step(memory_adapters)
    assert task.status == TaskStatus.CANCELED and task.detail is not None and "during the bake" in task.detail
    alias = memory_adapters.aliases.get("m")
    assert alias is not None and alias.live_variant == blue.variant
    assert teardowns_sent(memory_adapters) == [green.variant]


def test_given_a_bake_when_rolled_back_by_hand_then_the_next_look_ends_it_canceled_and_only_it_hands_green_over(
    memory_adapters: wiring.Adapters,
) -> None:
    blue, green = baking(memory_adapters)
    alias = memory_adapters.build(ModelActions).rollback("m")
    assert alias.live_variant == blue.variant
    assert teardowns_sent(memory_adapters) == []  # the baking task hands green over, once
    with pytest.raises(InvalidStateError, match=r"rolled back during the bake .* already"):
        memory_adapters.build(ModelActions).rollback("m")
    five_xx, _ = variant_alarm_names(green.variant or "")
    alarms_of(memory_adapters).set_state(five_xx, AlarmState.ALARM, "Threshold Crossed")  # too late to matter
    task = run_next_step(memory_adapters)
    assert task.status == TaskStatus.CANCELED
    assert task.detail is not None and "rolled back by hand" in task.detail
    assert teardowns_sent(memory_adapters) == [green.variant]
    alias_now = memory_adapters.aliases.get("m")
    assert alias_now is not None and alias_now.live_variant == blue.variant


def test_given_a_bake_when_a_watched_alarm_event_arrives_then_the_task_looks_at_once(
    memory_adapters: wiring.Adapters,
) -> None:
    _blue, green = baking(memory_adapters)
    hop, _ = next_step(memory_adapters)  # due in a minute: not delivered
    five_xx, _ = variant_alarm_names(green.variant or "")
    alarms_of(memory_adapters).set_state(five_xx, AlarmState.ALARM, "Threshold Crossed")
    worker = memory_adapters.build(DeployWorker)
    worker.handle(AlarmChanged("someone-elses-alarm", AlarmState.ALARM))
    assert stored(memory_adapters, green.task_id).rollback_detail is None  # not watched: nothing happens
    worker.handle(AlarmChanged(five_xx, AlarmState.ALARM))
    assert stored(memory_adapters, green.task_id).rollback_detail is not None
    run_next_step(memory_adapters)
    assert stored(memory_adapters, green.task_id).status == TaskStatus.FAILED
    worker.handle(hop)  # the hop that was scheduled finds the task ended
    assert sent(memory_adapters, "deploy_queue") == []


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


# ---- write, then send: nothing waits on its own write, nothing is lost ---------------------------


def test_given_a_step_when_it_runs_then_its_next_message_goes_out_after_its_write(
    memory_adapters: wiring.Adapters,
) -> None:
    """Issue 22: each step sent its next message before its own write; the next step came first, found the
    write missing and was sent again 5 s later. Now the message is sent once the write is there."""
    hosted(memory_adapters)
    task = submitted_deploy(memory_adapters)
    message, _ = next_step(memory_adapters)
    seen_at_send: list[int] = []
    queue = memory_adapters.deploy_queue
    original = queue.send

    def send(sent: Any, delay_seconds: int = 0) -> str:
        stored_now = memory_adapters.store.get(task.task_id)
        assert stored_now is not None
        seen_at_send.append(stored_now.version)
        return original(sent, delay_seconds)

    queue.send = send  # type: ignore[method-assign]
    memory_adapters.build(DeployWorker).handle(message, Delivery("msg-1"))
    [(sent_next, _)] = memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    assert isinstance(sent_next, Advance) and seen_at_send == [sent_next.version] == [task.version + 1]


def test_given_a_step_that_ended_the_task_when_its_message_comes_again_then_it_gives_back_what_the_task_held(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters, outcome=EndpointState.FAILED)
    task = deploy_at(memory_adapters, Stage.WAITING)
    message, _ = next_step(memory_adapters)
    locks = memory_adapters.locks
    release = locks.release
    locks.release = lambda *args, **kwargs: (_ for _ in ()).throw(RetryableError("DynamoDB throttled"))  # type: ignore[method-assign]
    with pytest.raises(RetryableError):
        memory_adapters.build(DeployWorker).handle(message, Delivery("msg-7"))
    ended = stored(memory_adapters, task.task_id)
    assert ended.status == TaskStatus.FAILED and locks.get("m") is not None  # written, the lease still held
    locks.release = release  # type: ignore[method-assign]
    memory_adapters.build(DeployWorker).handle(message, Delivery("msg-7", receive_count=2))
    assert locks.get("m") is None and memory_adapters.slots.holders() == {}
    assert stored(memory_adapters, task.task_id) == ended


def test_given_a_write_that_landed_though_the_store_said_conflict_when_the_step_runs_then_it_goes_on(
    memory_adapters: wiring.Adapters,
) -> None:
    """A conditional write retried after a lost answer fails its own condition; the step reads who wrote."""
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.WAITING)
    message, _ = next_step(memory_adapters)
    store = memory_adapters.store
    update = store.update

    def landed_but_lost_the_answer(written: Task) -> Task:
        update(written)
        raise ConcurrentUpdateError(f"task {written.task_id} changed since version {written.version} was read")

    store.update = landed_but_lost_the_answer  # type: ignore[method-assign]
    memory_adapters.build(DeployWorker).handle(message, Delivery("msg-3"))
    store.update = update  # type: ignore[method-assign]
    assert stored(memory_adapters, task.task_id).stage == Stage.VERIFYING
    assert next_step(memory_adapters) == (Advance(task.task_id, task.version + 1), 0)


def test_given_a_cancel_whose_wake_up_was_lost_when_the_tasks_own_older_message_comes_then_it_ends_the_task(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters, creation_seconds=STILL_CREATING)
    task = deploy_at(memory_adapters, Stage.WAITING)
    poll, _ = next_step(memory_adapters)
    memory_adapters.build(TaskService).cancel(task.task_id)
    next_step(memory_adapters)  # the cancel's wake-up, lost
    memory_adapters.build(DeployWorker).handle(poll, Delivery("msg-9"))
    assert stored(memory_adapters, task.task_id).status == TaskStatus.CANCELED
    assert teardowns_sent(memory_adapters) == [task.variant]
