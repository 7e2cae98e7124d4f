"""Scenario harness: drives the real Lambda entry points from moto SQS, with a clock we move.

Delays are not waited out: the queue adapter records when a message is due (on the manual
clock) and the pump delivers messages in due order, moving the clock forward as it goes.
Failed messages are made visible again, so moto's redrive moves poison to the DLQs exactly as
SQS does, and the pump hands those to the dead-letter handlers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalice.test import Client

from chalicelib import wiring
from chalicelib.adapters.queue_messages import to_body
from chalicelib.adapters.sagemaker_shapes import endpoint_state_change, variant_tags
from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.domain.messages import WorkMessage
from chalicelib.domain.models import EndpointState, iso, parse_iso
from esdeploy.local.pollers import sqs_record
from tests.fakes.artifacts import publish_to_s3
from tests.fakes.fake_hosting import ACCOUNT, REGION, FakeHosting
from tests.fakes.memory import ManualClock

HELD_SECONDS = 3600


class TimeWarpQueue(SqsQueue):
    """SqsQueue that sends at once but stamps the due time instead of asking SQS to delay."""

    def __init__(self, client: Any, queue_name: str, clock: ManualClock) -> None:
        super().__init__(client, queue_name)
        self._clock = clock

    def send(self, message: WorkMessage, delay_seconds: int = 0) -> str:
        # Real SQS refuses longer delays; the services must chain hops themselves.
        assert 0 <= delay_seconds <= 900, f"SQS would refuse DelaySeconds={delay_seconds}"
        due = self._clock.peek_after(delay_seconds)
        answer = self._client.send_message(
            QueueUrl=self.url,
            MessageBody=json.dumps(to_body(message)),
            MessageAttributes={"due_at": {"DataType": "String", "StringValue": iso(due)}},
        )
        return str(answer["MessageId"])


class WarpClock(ManualClock):
    def peek_after(self, seconds: float) -> datetime:
        return self.now() + timedelta(seconds=seconds)

    def move_to(self, when: Any) -> None:
        delta = (when - self.now()).total_seconds()
        if delta > 0:
            self.advance(delta)


@dataclass
class Delivery:
    handler: str
    body: dict[str, Any]
    outcome: str  # "ok" | "failed"


@dataclass
class Pump:
    client: Client
    sqs: Any
    clock: WarpClock
    handlers: dict[str, str]  # queue url -> Lambda handler name
    deliveries: list[Delivery] = field(default_factory=list)
    duplicate_every_message: bool = False
    _held: list[tuple[Any, str, dict[str, Any]]] = field(default_factory=list)

    def run(self, max_deliveries: int = 400, until: Any = None, steps: int | None = None) -> list[Delivery]:
        """Deliver until every queue is empty, `until()` is true, or `steps` messages were handled."""
        start = len(self.deliveries)
        while len(self.deliveries) - start < max_deliveries:
            if until is not None and until():
                break
            if steps is not None and len(self.deliveries) - start >= steps:
                break
            held = self._drain()
            if not held:
                break
            chosen = min(held, key=lambda item: item[0])
            held.remove(chosen)
            due, url, message = chosen
            self.clock.move_to(due)
            times = 2 if self.duplicate_every_message else 1
            results = [self._deliver(url, message) for _ in range(times)]
            if all(results):
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                # Back to SQS: the next receive counts, and redrive to the DLQ works as on AWS.
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        else:
            raise AssertionError(f"still delivering after {max_deliveries} messages: a loop?")
        self._release_held()
        return self.deliveries[start:]

    def _release_held(self) -> None:
        """Stopping early hands undelivered messages back to SQS (a test may purge or inspect them)."""
        for _due, url, message in self._held:
            self.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        self._held.clear()

    def _drain(self) -> list[tuple[Any, str, dict[str, Any]]]:
        """Messages received but not yet delivered stay held (invisible) until their turn, so that
        waiting in line does not count as a receive, just as with Lambda's event source mapping."""
        held = self._held
        for url in self.handlers:
            while True:
                answer = self.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=HELD_SECONDS,
                    MessageAttributeNames=["All"],
                    AttributeNames=["All"],
                )
                messages = answer.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    attribute = message.get("MessageAttributes", {}).get("due_at")
                    due = parse_iso(attribute["StringValue"]) if attribute else self.clock.now()
                    held.append((due, url, message))
        return held

    def _deliver(self, url: str, message: dict[str, Any]) -> bool:
        handler = self.handlers[url]
        record = sqs_record(message, url)
        payload = self.client.lambda_.invoke(handler, {"Records": [record]}).payload
        ok = not payload["batchItemFailures"]
        self.deliveries.append(Delivery(handler, json.loads(message["Body"]), "ok" if ok else "failed"))
        return ok


@dataclass
class World:
    """Everything a scenario touches: the HTTP client, the adapters, the fake SageMaker."""

    client: Client
    adapters: wiring.Adapters
    hosting: FakeHosting
    clock: WarpClock
    pump: Pump
    sqs: Any
    urls: Any
    s3: Any

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.http.post(
            path, headers={"Content-Type": "application/json"}, body=json.dumps(body or {})
        )

    def get(self, path: str) -> Any:
        return self.client.http.get(path)

    def upload_artifact(
        self, model_id: str, manifest: dict[str, Any] | None = None, *, inside: Any = None
    ) -> str:
        """Upload as `esdeploy package --upload` does (content-addressed, then the latest pointer), with
        `manifest` inside the tarball and beside it; `inside` puts something else in the tarball."""
        return publish_to_s3(self.s3, self.adapters.settings.artifact_root_url, model_id, manifest, inside)

    def deploy(self, model_id: str, **config: Any) -> dict[str, Any]:
        answer = self.post("/deploy", {"embedding_model_id": model_id, "config": config})
        assert answer.status_code == 200, answer.json_body
        return answer.json_body

    def task(self, task_id: str, kind: str = "deploy") -> dict[str, Any]:
        return self.get(f"/{kind}/{task_id}").json_body

    def emit_endpoint_event(self, name: str, status: EndpointState | str) -> None:
        """What EventBridge puts on the deploy-tasks queue when SageMaker reports `status`, in the
        documented shape (EndpointStatus IN_SERVICE, Tags a map)."""
        spec = self.hosting.spec(name)
        assert spec is not None
        event = endpoint_state_change(
            name, status, variant_tags(spec), region=REGION, account=ACCOUNT, at=self.clock.now()
        )
        self.sqs.send_message(QueueUrl=self.urls.deploy, MessageBody=json.dumps(event))

    def assert_no_leaks(self) -> None:
        """Every SageMaker resource of ours is owned by an alias or by an active task."""
        owned: set[str] = set()
        for alias in self.adapters.aliases.list_live():
            owned.update(v for v in (alias.live_variant, alias.previous_variant) if v)
        for lock in self.adapters.locks.list_held():
            task = self.adapters.store.get(lock.task_id)
            if task is not None and task.is_active and task.variant:
                owned.add(task.variant)
        leaked = sorted({r.name for r in self.hosting.owned_resources()} - owned)
        assert not leaked, f"SageMaker resources nobody owns: {leaked}"
