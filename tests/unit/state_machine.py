"""GIVEN helpers for the unit tests of the workers: tasks brought to a stage on the in-memory ports
by the workers themselves, one message at a time, so that a test starts where its scenario does."""
from __future__ import annotations

from typing import Any

from chalicelib import wiring
from chalicelib.api.schemas import parse_delete, parse_deploy
from chalicelib.domain.messages import Advance, TeardownVariant, WorkMessage
from chalicelib.domain.models import EndpointState, Stage, Task
from chalicelib.services.deploy_worker import DeployWorker
from chalicelib.services.tasks import TaskService
from tests.fakes import FakeHosting, fake_embedding
from tests.fakes.artifacts import minimal_manifest, publish_in_memory
from tests.fakes.memory import InMemoryQueue

DIMENSION = 8
PROBES = ("first probe text", "a second, longer probe text")


# An endpoint that stays Creating for as long as any test looks at it.
STILL_CREATING = 10**9


def hosted(adapters: wiring.Adapters, *, outcome: EndpointState | None = None, **options: Any) -> FakeHosting:
    """A FakeHosting the adapters use from now on; its GOOD answers match `uploaded` manifests.
    `outcome`: what its endpoints settle to (FAILED for a green that fails)."""
    hosting = FakeHosting(dimension=DIMENSION, **options)
    if outcome is not None:
        hosting.script(outcome=outcome)
    adapters.hosting_factory = lambda: hosting
    adapters.__dict__.pop("hosting", None)  # forget a hosting built before
    return hosting


def uploaded(adapters: wiring.Adapters, model_id: str, version: int = 1) -> str:
    """What `esdeploy package --upload` leaves: an artifact whose probes the fake endpoint answers."""
    manifest = minimal_manifest(
        model_id, version, DIMENSION, PROBES, embed=lambda text: fake_embedding(text, DIMENSION)
    )
    return publish_in_memory(adapters.artifacts, adapters.settings, model_id, manifest)


def queue(adapters: wiring.Adapters, name: str) -> InMemoryQueue:
    port = getattr(adapters, name)
    assert isinstance(port, InMemoryQueue)
    return port


def submitted_deploy(adapters: wiring.Adapters, model_id: str = "m", **config: Any) -> Task:
    if adapters.settings.artifact_layout.pointer(model_id).url not in adapters.artifacts.pointers:  # type: ignore[attr-defined]
        uploaded(adapters, model_id)
    return adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": model_id, "config": config}))


def submitted_delete(adapters: wiring.Adapters, model_id: str = "m") -> Task:
    return adapters.build(TaskService).submit(parse_delete({"embedding_model_id": model_id}))


def next_step(adapters: wiring.Adapters) -> tuple[Advance, int]:
    """The one message on deploy-tasks (taken off it) and its delay."""
    [(message, delay)] = queue(adapters, "deploy_queue").drain()
    assert isinstance(message, Advance)
    return message, delay


def run_next_step(adapters: wiring.Adapters) -> Task:
    message, _delay = next_step(adapters)
    adapters.build(DeployWorker).handle(message)
    return stored(adapters, message.task_id)


def deploy_at(adapters: wiring.Adapters, stage: Stage, model_id: str = "m", **config: Any) -> Task:
    """A deploy that the worker brought to `stage`; its next step waits on deploy-tasks."""
    task = submitted_deploy(adapters, model_id, **config)
    for _ in range(10):
        if task.stage == stage:
            return task
        task = run_next_step(adapters)
    raise AssertionError(f"the deploy never reached {stage}: it is {task.stage} / {task.status}")


def live_deploy(adapters: wiring.Adapters, model_id: str = "m", keep_teardowns: bool = False, **config: Any) -> Task:
    """A deploy run to its end (done: after its bake, when it replaced a live variant), the clock
    moved through its delays, its messages drained (the teardowns it sent kept with `keep_teardowns`)."""
    task = deploy_at(adapters, Stage.SWAPPING, model_id, **config)
    for _ in range(1000):
        if not task.is_active:
            if not keep_teardowns:
                queue(adapters, "teardown_queue").drain()
            return task
        message, delay = next_step(adapters)
        adapters.clock.advance(delay)  # type: ignore[attr-defined]
        adapters.build(DeployWorker).handle(message)
        task = stored(adapters, message.task_id)
    raise AssertionError(f"the deploy never ended: it is {task.stage} / {task.status}")


def stored(adapters: wiring.Adapters, task_id: str) -> Task:
    task = adapters.store.get(task_id)
    assert task is not None
    return task


def sent(adapters: wiring.Adapters, name: str) -> list[tuple[WorkMessage, int]]:
    return queue(adapters, name).drain()


def teardowns_sent(adapters: wiring.Adapters) -> list[str | None]:
    """The variants handed to the teardown queue since the last look (None: another message)."""
    return [m.variant if isinstance(m, TeardownVariant) else None for m, _ in sent(adapters, "teardown_queue")]
