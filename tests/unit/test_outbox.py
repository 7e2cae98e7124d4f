"""Unit tests: each message goes to its queue, and a task is written only after its messages went out."""
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


def test_a_failed_send_leaves_the_task_as_it_was_stored(memory_adapters: wiring.Adapters) -> None:
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m")
    task = memory_adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    task.record(at=memory_adapters.clock.now(), status=TaskStatus.PROCESSING, detail="a step")
    memory_adapters.deploy_queue.fail_next = 1  # type: ignore[attr-defined]
    with pytest.raises(DispatchError):
        memory_adapters.writer.advance(task)
    stored = memory_adapters.store.get(task.task_id)
    assert stored is not None and (stored.version, stored.status) == (1, TaskStatus.PENDING)


def test_ending_a_task_sends_its_messages_writes_it_and_frees_the_model(memory_adapters: wiring.Adapters) -> None:
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m")
    task = memory_adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    memory_adapters.deploy_queue.drain()  # type: ignore[attr-defined]
    teardown = TeardownVariant("m", "esd-m-1", "deploy failed", task_id=task.task_id)
    ended = memory_adapters.writer.end(task, TaskStatus.FAILED, "it broke", teardown)
    assert (ended.status, ended.detail, ended.version) == (TaskStatus.FAILED, "it broke", 2)
    assert memory_adapters.teardown_queue.messages == [(teardown, 0)]  # type: ignore[attr-defined]
    assert memory_adapters.locks.get("m") is None
