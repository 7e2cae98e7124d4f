"""Unit tests of TeardownWorker on the in-memory ports: nothing is deleted that an active deploy owns."""
from __future__ import annotations

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.messages import TeardownVariant
from chalicelib.domain.models import Stage, Task, TaskStatus
from chalicelib.domain.names import variant_name
from chalicelib.ports import VariantSpec
from chalicelib.services.tasks import TaskService
from chalicelib.services.teardown_worker import TeardownWorker
from tests.fakes import FakeHosting
from tests.fakes.artifacts import publish_in_memory


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
