"""Scenario harness on the in-memory ports: the real app.py handlers, fed from a simulated SQS
(visibility, receive counts, redrive) on a manual clock, with ports that can die after any write.

Fast enough to replay the whole lifecycle once per crash point (tests/scenarios/test_crash_matrix.py).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.config import Settings, dead_letter_name, load_settings
from esdeploy.local.pollers import queue_functions
from tests.fakes.crash_points import WRITES, Crash, CrashingPort, CrashPlan
from tests.fakes.fake_hosting import FakeHosting
from tests.fakes.memory import (
    InMemoryAlarms,
    InMemoryAliases,
    InMemoryAliasMirror,
    InMemoryArtifacts,
    InMemoryLiveModelSlots,
    InMemoryModelLocks,
    InMemoryModels,
    InMemoryScaling,
    InMemoryTaskStore,
    ManualClock,
)
from tests.fakes.simulated_sqs import SimulatedQueuePort, SimulatedSqs

START = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE_SECONDS = 600  # the sweeper's rate(10 minutes)
# Shorter than the template's (180-1080 s), so that five failed receives of a deploy step stay
# well inside a deploy's deadline and the message reaches its DLQ, as a poison message would.
VISIBILITY_SECONDS = 60


@dataclass
class Invocation:
    worker: str
    body: dict[str, Any]
    outcome: str  # "ok" | "failed" | "crashed"


@dataclass
class MemoryWorld:
    client: Client
    adapters: wiring.Adapters
    hosting: FakeHosting
    sqs: SimulatedSqs
    clock: ManualClock
    plan: CrashPlan
    handlers: dict[str, str]  # queue name -> handler name
    invocations: list[Invocation] = field(default_factory=list)
    lose: list[Callable[[dict[str, Any]], bool]] = field(default_factory=list)
    next_sweep: datetime = START + timedelta(seconds=SCHEDULE_SECONDS)

    # ---- callers ------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """An HTTP request; if the function dies under it, the caller retries it as is (same id)."""
        for _ in range(2):
            self.plan.worker, self.plan.during = "api", path
            try:
                return self.client.http.post(
                    path, headers={"Content-Type": "application/json"}, body=json.dumps(body)
                )
            except Crash:
                self.invocations.append(Invocation("api", body, "crashed"))
        raise AssertionError("a request crashed twice: the plan crashes once")

    def get(self, path: str) -> Any:
        return self.client.http.get(path)

    def intake(self, body: dict[str, Any]) -> None:
        """What automation does: a message on the requests queue."""
        self.sqs.send(self.adapters.settings.requests_queue, json.dumps(body))

    def sweep(self) -> dict[str, Any]:
        """One scheduled sweeper run; if it dies, the schedule runs it again ten minutes later."""
        self.next_sweep = self.clock.now() + timedelta(seconds=SCHEDULE_SECONDS)
        for _ in range(2):
            self.plan.worker, self.plan.during = "sweeper", "schedule"
            try:
                payload: dict[str, Any] = self.client.lambda_.invoke("sweeper", scheduled_event()).payload
                return payload
            except Crash:
                self.invocations.append(Invocation("sweeper", {}, "crashed"))
                self.clock.advance(SCHEDULE_SECONDS)
        raise AssertionError("the sweeper crashed twice: the plan crashes once")

    # ---- the event source mappings ------------------------------------------------------

    def pump(self, max_invocations: int = 2000, until: Callable[[], bool] | None = None) -> None:
        """Deliver messages in the order they become visible, moving the clock, until none is left
        (or `until()` holds); the sweeper runs on its schedule meanwhile, as EventBridge runs it."""
        for _ in range(max_invocations):
            if until is not None and until():
                return
            found = self.sqs.next_visible(list(self.handlers))
            if found is None:
                return
            queue, message = found
            if message.visible_at > self.next_sweep:
                self.clock.advance(max((self.next_sweep - self.clock.now()).total_seconds(), 0))
                self.sweep()
                continue
            if message.visible_at > self.clock.now():
                self.clock.advance((message.visible_at - self.clock.now()).total_seconds())
            record = self.sqs.receive(queue, message)
            if record is None:
                continue  # moved to the dead-letter queue
            body = json.loads(record["body"])
            if any(rule(body) for rule in self.lose):
                self.sqs.delete(queue, message)  # lost: deleted without anyone acting on it
                self.invocations.append(Invocation("lost", body, "lost"))
                continue
            worker = self.handlers[queue]
            self.plan.worker = worker
            self.plan.during = str(body.get("action") or _event_kind(body))
            try:
                payload = self.client.lambda_.invoke(worker, {"Records": [record]}).payload
            except Crash:
                self.invocations.append(Invocation(worker, body, "crashed"))
                continue  # nothing deletes it: it comes back after the visibility timeout
            ok = not payload["batchItemFailures"]
            self.invocations.append(Invocation(worker, body, "ok" if ok else "failed"))
            if ok:
                self.sqs.delete(queue, message)
        raise AssertionError(f"still delivering after {max_invocations} invocations: a loop?")

    def settle(self, rounds: int = 4) -> None:
        """Drain the queues; then let the sweeper find what a lost message or a crash left, until
        a whole stall window passes with nothing for it to do."""
        self.pump()
        for _ in range(rounds):
            self.clock.advance(self.adapters.settings.stall_seconds + 1)
            report = self.sweep()
            self.pump()
            if not any(report.values()):
                return

    # ---- what a user would look at ------------------------------------------------------

    def task(self, task_id: str, kind: str = "deploy") -> dict[str, Any]:
        body: dict[str, Any] = self.get(f"/{kind}/{task_id}").json_body
        return body

    def waiting(self, queue: str) -> list[dict[str, Any]]:
        return self.sqs.bodies(queue)


def _event_kind(body: dict[str, Any]) -> str:
    if body.get("source") == "aws.cloudwatch":
        return "alarm_changed"
    return "endpoint_changed" if "detail-type" in body else "?"


def scheduled_event() -> dict[str, Any]:
    return {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {}}



def creating_for_one_poll(settings: Settings) -> float:
    """A creation time that the first DescribeEndpoint sees as Creating and the second as InService."""
    return settings.poll_initial_seconds + settings.poll_delay(1) / 2


@contextmanager
def memory_world(env: dict[str, str], plan: CrashPlan, hosting: FakeHosting) -> Iterator[MemoryWorld]:
    """The app on in-memory ports, each wrapped so that `plan` sees (and may crash after) every write."""
    settings = load_settings(env)
    clock = ManualClock(START)
    hosting.clock = clock  # endpoints take their creation time on the world's clock
    sqs = SimulatedSqs(clock)
    for name in (settings.requests_queue, settings.deploy_queue, settings.teardown_queue):
        sqs.create_queue(dead_letter_name(name), VISIBILITY_SECONDS)
        sqs.create_queue(name, VISIBILITY_SECONDS, dead_letter_queue=dead_letter_name(name))
    models = InMemoryModels()
    ports: dict[str, Any] = {
        "store": InMemoryTaskStore(settings.task_retention),
        "locks": InMemoryModelLocks(models),
        "aliases": InMemoryAliases(models),
        "slots": InMemoryLiveModelSlots(),
        "mirror": InMemoryAliasMirror(),
        "deploy_queue": SimulatedQueuePort(sqs, settings.deploy_queue),
        "teardown_queue": SimulatedQueuePort(sqs, settings.teardown_queue),
        "requests_queue": SimulatedQueuePort(sqs, settings.requests_queue),
        "hosting": hosting,
        "alarms": InMemoryAlarms(clock),
    }
    wrapped = {name: CrashingPort(port, name, plan) if name in WRITES else port for name, port in ports.items()}
    crashing_hosting = wrapped.pop("hosting")
    crashing_alarms = wrapped.pop("alarms")
    adapters = wiring.Adapters(
        settings=settings, artifacts=InMemoryArtifacts(), clock=clock,
        hosting_factory=lambda: crashing_hosting, alarms_factory=lambda: crashing_alarms,
        scaling_factory=InMemoryScaling, **wrapped,
    )
    handlers = queue_functions(app)
    with mock.patch.dict("os.environ", env), Client(app) as client:
        wiring.use(adapters)
        try:
            yield MemoryWorld(client, adapters, hosting, sqs, clock, plan, handlers)
        finally:
            wiring.use(None)
