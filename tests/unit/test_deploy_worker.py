"""Unit tests of DeployWorker on the in-memory ports: messages that come too early or too late."""
from __future__ import annotations

import pytest

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.errors import RetryableError
from chalicelib.domain.messages import Advance
from chalicelib.domain.models import Task
from chalicelib.services.deploy_worker import MAX_EARLY_RESENDS, DeployWorker
from chalicelib.services.tasks import TaskService
from tests.fakes import FakeHosting
from tests.fakes.artifacts import publish_in_memory


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
