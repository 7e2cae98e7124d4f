"""A cancel against a deploy worker that writes as fast as it can, in a thread of its own: many rounds,
each cancel sent at another point of the deploy. A cancel is never refused for the worker's writes, and
one recorded before the swap always wins: the deploy ends canceled and the alias never names its green.

Issue 22: a cancel sent 100-250 ms after accept lost its conditional write to the worker five times in
a row, answered 409, and the deploy went live."""
from __future__ import annotations

import threading
import time
from typing import Any

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.errors import InvalidStateError
from chalicelib.domain.models import Alias, Stage, Task, TaskStatus
from chalicelib.services.deploy_worker import DeployWorker
from chalicelib.services.tasks import TaskService
from tests.fakes import FakeHosting
from tests.unit.state_machine import DIMENSION, uploaded

# The stages a cancel's answer can show while green cannot be live yet.
BEFORE_THE_SWAP = {Stage.QUEUED, Stage.PREFLIGHT, Stage.CREATING, Stage.WAITING, Stage.VERIFYING}
# Every point of a deploy, counted in writes of its task: submit, preflight, create, polls, InService, gate, swap.
CANCEL_AT_VERSIONS = range(1, 12)
ROUNDS_PER_POINT = 12


class AliasWrites:
    """The Aliases port, remembering every alias written."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written: list[Alias] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def swap(self, alias: Alias, expected_version: int) -> Alias:
        written = self.inner.swap(alias, expected_version)
        with self._lock:
            self.written.append(written)
        return written


class RoundTrips:
    """The TaskStore port at a network's distance: a read takes `read` seconds more, a write `write`
    (a DynamoDB round trip; a write arrives after its trip), so a worker writing back to back lands its
    writes between a canceler's read and its write, as on a real stack."""

    def __init__(self, inner: Any, read: float, write: float) -> None:
        self.inner = inner
        self.trips = {"get": read, "update": write, "create": write, "request_cancel": write}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in self.trips:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self.trips[name])
            return attribute(*args, **kwargs)

        return call


class Worker(threading.Thread):
    """The deploy worker handling every message the moment it is sent, delays ignored."""

    def __init__(self, adapters: wiring.Adapters) -> None:
        super().__init__(daemon=True)
        self.adapters = adapters
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        worker = self.adapters.build(DeployWorker)
        while not self.stop.is_set():
            messages = self.adapters.deploy_queue.drain()  # type: ignore[attr-defined]
            self.adapters.teardown_queue.drain()  # type: ignore[attr-defined]
            if not messages:
                time.sleep(0)
            for message, _delay in messages:
                try:
                    worker.handle(message)
                except Exception as error:  # a step that fails is a finding of this test
                    self.errors.append(error)


def settled(adapters: wiring.Adapters, task_id: str) -> Task:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        task = adapters.store.get(task_id)
        assert task is not None
        if not task.is_active:
            return task
        time.sleep(0.0005)
    raise AssertionError(f"task {task_id} never ended")


def test_a_cancel_recorded_before_the_swap_always_wins_against_a_worker_writing_as_fast_as_it_can(
    memory_adapters: wiring.Adapters,
) -> None:
    adapters = memory_adapters
    adapters.settings = adapters.settings.model_copy(update={"max_deployed_models": 1000})
    # Endpoints come up in a few milliseconds of real time, so the worker polls (and writes) many times.
    hosting = FakeHosting(dimension=DIMENSION, creation_seconds=0.003)
    adapters.hosting_factory = lambda: hosting
    aliases = AliasWrites(adapters.aliases)
    adapters.aliases = aliases
    store = adapters.store
    adapters.store = RoundTrips(store, read=0.0001, write=0.001)
    service = adapters.build(TaskService)
    worker = Worker(adapters)
    worker.start()
    won: dict[Stage, int] = {}
    after_the_end = 0
    try:
        for round_ in range(len(CANCEL_AT_VERSIONS) * ROUNDS_PER_POINT):
            model = f"m{round_}"
            uploaded(adapters, model)
            task = service.submit(parse_deploy({"embedding_model_id": model}))
            at_version = CANCEL_AT_VERSIONS[round_ % len(CANCEL_AT_VERSIONS)]
            while (read := store.get(task.task_id)) is not None and read.is_active and read.version < at_version:
                time.sleep(0)
            try:
                answer: Task | None = service.cancel(task.task_id)
            except InvalidStateError as error:
                assert "is already done" in str(error)  # the deploy ended first
                answer, after_the_end = None, after_the_end + 1
            final = settled(adapters, task.task_id)
            went_live = final.variant is not None and any(a.live_variant == final.variant for a in aliases.written)
            if answer is not None and answer.stage in BEFORE_THE_SWAP:
                assert (final.status, went_live) == (TaskStatus.CANCELED, False), (answer.stage, final.detail)
                won[answer.stage] = won.get(answer.stage, 0) + 1
            elif answer is None:
                assert went_live and final.status == TaskStatus.DONE
    finally:
        worker.stop.set()
        worker.join()
    assert worker.errors == []
    # The race was run: cancels landed while the worker was writing, at more than one point of the deploy.
    assert sum(won.values()) >= ROUNDS_PER_POINT * 3 and len(won) >= 3, won
