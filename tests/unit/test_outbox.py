"""Unit tests: each message goes to its queue; what a write hands over goes out before it, the next step after it."""
from __future__ import annotations

import pytest

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.errors import DispatchError
from chalicelib.domain.messages import Advance, DeleteModel, TeardownVariant
from chalicelib.domain.models import TaskStatus
from chalicelib.services.tasks import TaskService
from tests.fakes.artifacts import publish_in_memory


def test_advance_goes_to_deploy_tasks_and_the_rest_to_teardown_tasks(memory_adapters: wiring.Adapters) -> None:
    outbox = memory_adapters.outbox
    outbox.send(Advance("t1", 2), delay_seconds=30)
    outbox.send(TeardownVariant("m", "v", "r"))
    outbox.send(DeleteModel("t2", "m"))
    assert memory_adapters.deploy_queue.messages == [(Advance("t1", 2), 30)]  # type: ignore[attr-defined]
    assert memory_adapters.teardown_queue.messages == [  # type: ignore[attr-defined]
        (TeardownVariant("m", "v", "r"), 0),
        (DeleteModel("t2", "m"), 0),
    ]


def test_a_failed_send_of_a_handed_over_message_leaves_the_task_as_it_was_stored(
    memory_adapters: wiring.Adapters,
) -> None:
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m")
    task = memory_adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    task.record(at=memory_adapters.clock.now(), status=TaskStatus.PROCESSING, detail="a step")
    memory_adapters.teardown_queue.fail_next = 1  # type: ignore[attr-defined]
    with pytest.raises(DispatchError):
        memory_adapters.writer.commit(task, TeardownVariant("m", "esd-m-1", "deploy failed"))
    stored = memory_adapters.store.get(task.task_id)
    assert stored is not None and (stored.version, stored.status) == (1, TaskStatus.PENDING)


def test_a_failed_send_of_the_next_step_leaves_the_write_marked_for_the_redelivery_to_finish(
    memory_adapters: wiring.Adapters,
) -> None:
    """Issue 22: the next step goes out after its write (it used to go first and overtake the write);
    a failed send leaves the write saying who made it and when its next step is due."""
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m")
    task = memory_adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    task.record(at=memory_adapters.clock.now(), status=TaskStatus.PROCESSING, detail="a step")
    memory_adapters.deploy_queue.fail_next = 1  # type: ignore[attr-defined]
    with pytest.raises(DispatchError):
        memory_adapters.writer.advance(task, delay_seconds=30, token="msg-1")
    stored = memory_adapters.store.get(task.task_id)
    assert stored is not None and (stored.version, stored.status, stored.step_token) == (
        2, TaskStatus.PROCESSING, "msg-1"
    )
    assert stored.next_at is not None and 29 < (stored.next_at - memory_adapters.clock.now()).total_seconds() <= 30
    assert memory_adapters.deploy_queue.messages == []  # type: ignore[attr-defined]
    memory_adapters.writer.send_next(stored, 30)
    assert memory_adapters.deploy_queue.messages == [(Advance(task.task_id, 2), 30)]  # type: ignore[attr-defined]


def test_ending_a_task_sends_its_messages_writes_it_and_frees_the_model(memory_adapters: wiring.Adapters) -> None:
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m")
    task = memory_adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    teardown = TeardownVariant("m", "esd-m-1", "deploy failed", task_id=task.task_id)
    ended = memory_adapters.writer.end(task, TaskStatus.FAILED, "it broke", teardown)
    assert (ended.status, ended.detail, ended.version) == (TaskStatus.FAILED, "it broke", 2)
    assert memory_adapters.teardown_queue.messages == [(teardown, 0)]  # type: ignore[attr-defined]
    assert memory_adapters.locks.get("m") is None
