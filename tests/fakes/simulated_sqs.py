"""Test fake: SQS in memory, on a manual clock — delays, visibility timeouts, receive counts and
redrive to a dead-letter queue, as the Lambda event source mapping sees them.

moto gives the same semantics over HTTP-shaped calls; this one costs microseconds per message,
which is what lets the crash matrix replay the whole lifecycle hundreds of times.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.adapters.queue_messages import to_body
from chalicelib.config import SQS_MAX_DELAY_SECONDS
from chalicelib.domain.messages import WorkMessage
from tests.fakes.memory import ManualClock

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class SimulatedMessage:
    message_id: str
    body: str
    visible_at: datetime
    sequence: int
    receive_count: int = 0


@dataclass
class SimulatedQueue:
    name: str
    visibility_timeout: int
    dead_letter_queue: str | None = None
    max_receive_count: int = 5
    messages: list[SimulatedMessage] = field(default_factory=list)


class SimulatedSqs:
    """Queues by name. `receive` hands out the message that is visible first (or moves it to the
    dead-letter queue once its receives are used up); a message not deleted reappears after the
    queue's visibility timeout."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.queues: dict[str, SimulatedQueue] = {}
        self._ids = itertools.count(1)

    def create_queue(
        self, name: str, visibility_timeout: int, dead_letter_queue: str | None = None, max_receive_count: int = 5
    ) -> None:
        self.queues[name] = SimulatedQueue(name, visibility_timeout, dead_letter_queue, max_receive_count)

    def send(self, queue: str, body: str, delay_seconds: int = 0) -> str:
        # Real SQS refuses longer delays; the services must chain hops themselves.
        assert 0 <= delay_seconds <= SQS_MAX_DELAY_SECONDS, f"SQS would refuse DelaySeconds={delay_seconds}"
        number = next(self._ids)
        message = SimulatedMessage(
            f"msg-{number}", body, self.clock.now() + timedelta(seconds=delay_seconds), sequence=number
        )
        self.queues[queue].messages.append(message)
        return message.message_id

    def next_visible(self, queues: list[str]) -> tuple[str, SimulatedMessage] | None:
        """The message (of these queues) that becomes visible first; ties go to the one sent first."""
        candidates = [(m.visible_at, m.sequence, name, m) for name in queues for m in self.queues[name].messages]
        if not candidates:
            return None
        _, _, name, message = min(candidates, key=lambda c: (c[0], c[1]))
        return name, message

    def receive(self, queue: str, message: SimulatedMessage) -> dict[str, Any] | None:
        """One receive of `message` (already visible): the Lambda event record, or None when this
        receive exceeded maxReceiveCount and SQS moved the message to the dead-letter queue."""
        spec = self.queues[queue]
        assert message.visible_at <= self.clock.now(), "receive of a message that is not visible yet"
        if spec.dead_letter_queue is not None and message.receive_count >= spec.max_receive_count:
            spec.messages.remove(message)
            message.visible_at = self.clock.now()
            self.queues[spec.dead_letter_queue].messages.append(message)
            return None
        message.receive_count += 1
        message.visible_at = self.clock.now() + timedelta(seconds=spec.visibility_timeout)
        return {
            "messageId": message.message_id,
            "receiptHandle": f"{message.message_id}-{message.receive_count}",
            "body": message.body,
            "attributes": {"ApproximateReceiveCount": str(message.receive_count)},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
            "awsRegion": REGION,
        }

    def delete(self, queue: str, message: SimulatedMessage) -> None:
        self.queues[queue].messages.remove(message)

    def bodies(self, queue: str) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in self.queues[queue].messages]


class SimulatedQueuePort:
    """The Queue port on a simulated queue: the same JSON body the SqsQueue adapter sends."""

    def __init__(self, sqs: SimulatedSqs, name: str) -> None:
        self._sqs = sqs
        self.name = name

    def send(self, message: WorkMessage, delay_seconds: int = 0) -> str:
        return self._sqs.send(self.name, json.dumps(to_body(message)), delay_seconds)
