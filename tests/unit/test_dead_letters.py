"""Unit tests of DeadLetterService on the in-memory ports: a message SQS gave up on ends its task,
never leaves it processing, and a variant's teardown that reached its DLQ is said out loud."""
from __future__ import annotations

import logging
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.domain.errors import ConcurrentUpdateError
from chalicelib.domain.messages import Advance, AlarmChanged, DeleteModel, EndpointChanged, TeardownVariant
from chalicelib.domain.models import AlarmState, EndpointState, Stage, TaskStatus
from chalicelib.services.dead_letters import DeadLetterOutcome, DeadLetterService
from tests.unit.state_machine import deploy_at, hosted, live_deploy, sent, stored, submitted_delete

DEPLOY_DLQ = "esdeploy-test-deploy-tasks-dlq"


def test_given_a_deploy_step_that_kept_failing_when_its_message_reaches_the_dlq_then_the_task_fails_and_green_goes(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.WAITING)
    outcome = memory_adapters.build(DeadLetterService).handle(Advance(task.task_id, task.version), DEPLOY_DLQ, "5")
    assert outcome is DeadLetterOutcome.TASK_FAILED
    ended = stored(memory_adapters, task.task_id)
    assert ended.status == TaskStatus.FAILED
    assert ended.detail == (
        "the deploy worker failed on this task's message 5 times in stage waiting; SQS moved it to "
        f"{DEPLOY_DLQ}. Search the worker logs for task_id {task.task_id} for the error."
    )
    assert [m for m, _ in sent(memory_adapters, "teardown_queue")] == [
        TeardownVariant("m", task.variant or "", reason="deploy failed (dead letter)", task_id=task.task_id)
    ]
    assert memory_adapters.locks.get("m") is None and memory_adapters.slots.holders() == {}


def test_given_a_step_the_task_has_moved_past_when_it_reaches_the_dlq_then_the_active_task_is_left_as_it_is(
    memory_adapters: wiring.Adapters,
) -> None:
    """A stale hop (a promotion window's, overtaken by the promote) that waited out its receives must
    not fail the deploy that is now baking."""
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.VERIFYING)
    outcome = memory_adapters.build(DeadLetterService).handle(Advance(task.task_id, task.version - 1), DEPLOY_DLQ, "5")
    assert outcome is DeadLetterOutcome.SUPERSEDED
    assert stored(memory_adapters, task.task_id) == task
    assert sent(memory_adapters, "teardown_queue") == []


def test_given_a_task_that_ended_meanwhile_when_its_old_message_reaches_the_dlq_then_the_task_is_left_as_it_is(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = live_deploy(memory_adapters)
    outcome = memory_adapters.build(DeadLetterService).handle(Advance(task.task_id, 2), DEPLOY_DLQ, "5")
    assert outcome is DeadLetterOutcome.TASK_ALREADY_ENDED
    assert stored(memory_adapters, task.task_id) == task
    assert sent(memory_adapters, "teardown_queue") == []


def test_given_a_delete_that_kept_failing_when_it_reaches_the_dlq_then_the_delete_task_fails_naming_the_queue(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    live_deploy(memory_adapters)
    task = submitted_delete(memory_adapters)
    sent(memory_adapters, "teardown_queue")
    queue = "esdeploy-test-teardown-tasks-dlq"
    memory_adapters.build(DeadLetterService).handle(DeleteModel(task.task_id, "m"), queue, None)
    ended = stored(memory_adapters, task.task_id)
    assert ended.status == TaskStatus.FAILED
    assert ended.detail is not None and "several times" in ended.detail and queue in ended.detail
    assert memory_adapters.locks.get("m") is None


@pytest.mark.parametrize(
    ("stage", "config"),
    [
        (Stage.WAITING, {}),
        (Stage.AWAITING_PROMOTION, {"promotion": "manual"}),
        (Stage.BAKING, {"bake_seconds": 3600}),
    ],
)
def test_given_an_endpoint_state_change_that_kept_failing_when_it_reaches_the_dlq_then_its_task_goes_on(
    memory_adapters: wiring.Adapters, caplog: pytest.LogCaptureFixture, stage: Stage, config: dict[str, Any]
) -> None:
    """SageMaker's event only wakes a waiting deploy early (and may come several times per change):
    the task polls on its own, so a dead-lettered one must not fail a deploy that is fine."""
    hosted(memory_adapters)
    if stage is Stage.BAKING:
        live_deploy(memory_adapters)  # a blue to bake against
    task = deploy_at(memory_adapters, stage, **config)
    assert task.variant is not None
    event = EndpointChanged(task.variant, EndpointState.IN_SERVICE, "InService", task.task_id, "m")
    with caplog.at_level(logging.ERROR, logger="chalicelib"):
        outcome = memory_adapters.build(DeadLetterService).handle(event, DEPLOY_DLQ, "5")
    assert outcome is DeadLetterOutcome.HINT_DROPPED
    assert stored(memory_adapters, task.task_id) == task
    assert sent(memory_adapters, "teardown_queue") == []
    assert memory_adapters.locks.get("m") is not None
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.endpoint == task.variant  # type: ignore[attr-defined]


def test_given_an_alarm_state_change_that_kept_failing_when_it_reaches_the_dlq_then_no_task_is_touched(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    live_deploy(memory_adapters)
    task = deploy_at(memory_adapters, Stage.BAKING, bake_seconds=3600)
    alarm = AlarmChanged(f"{task.variant}-invocation-5xx", AlarmState.ALARM)
    outcome = memory_adapters.build(DeadLetterService).handle(alarm, DEPLOY_DLQ, "5")
    assert outcome is DeadLetterOutcome.HINT_DROPPED
    assert stored(memory_adapters, task.task_id) == task


def test_given_a_variant_teardown_that_kept_failing_when_it_reaches_the_dlq_then_it_is_reported_abandoned(
    memory_adapters: wiring.Adapters, caplog: pytest.LogCaptureFixture
) -> None:
    hosted(memory_adapters)
    message = TeardownVariant("m", "esd-m-00000000-11111111", reason="orphan sweep")
    with caplog.at_level(logging.ERROR, logger="chalicelib"):
        outcome = memory_adapters.build(DeadLetterService).handle(message, "esdeploy-test-teardown-tasks-dlq", "5")
    assert outcome is DeadLetterOutcome.TEARDOWN_ABANDONED  # app.py counts it: the abandoned-teardown alarm
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.variant == "esd-m-00000000-11111111"  # type: ignore[attr-defined]
    assert "may still be running" in record.getMessage()


def test_given_a_task_that_keeps_changing_when_its_dead_letter_is_handled_then_the_message_fails_for_sqs_to_retry(
    memory_adapters: wiring.Adapters,
) -> None:
    hosted(memory_adapters)
    task = deploy_at(memory_adapters, Stage.WAITING)

    class AlwaysOvertaken:
        def __getattr__(self, name: str) -> Any:
            return getattr(memory_adapters.store, name)

        def update(self, _task: Any) -> Any:
            raise ConcurrentUpdateError("the task was written meanwhile")

    writer = memory_adapters.writer
    writer.store = AlwaysOvertaken()
    service = DeadLetterService(store=memory_adapters.store, writer=writer)
    with pytest.raises(ConcurrentUpdateError, match="kept changing"):
        service.handle(Advance(task.task_id, task.version), DEPLOY_DLQ, "5")
    assert stored(memory_adapters, task.task_id).status == TaskStatus.PROCESSING
