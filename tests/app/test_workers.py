"""The worker entry points: a message no reader understands is logged and acknowledged, never poison."""
from __future__ import annotations

import json
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from chalice.test import Client

import app as handlers
from app import app
from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.messages import Advance
from chalicelib.domain.models import Stage
from chalicelib.services.deploy_worker import MAX_EARLY_RESENDS
from chalicelib.services.tasks import TaskService
from tests.app.test_intake import sqs_event
from tests.fakes import FakeHosting
from tests.fakes.artifacts import publish_in_memory


def invoke(function: str, *bodies: Any) -> dict[str, Any]:
    with Client(app) as client:
        return client.lambda_.invoke(function, sqs_event(*bodies)).payload


@pytest.mark.parametrize(
    "function", ["deploy_worker", "teardown_worker", "deploy_dead_letters", "teardown_dead_letters"]
)
def test_unreadable_messages_are_logged_and_acknowledged(
    memory_adapters: wiring.Adapters, caplog: pytest.LogCaptureFixture, function: str
) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")
    garbage = ["not json", [1, 2], {"action": "promote", "task_id": "t1"}, {"action": "advance"}]
    assert invoke(function, *garbage) == {"batchItemFailures": []}
    logged = [r for r in caplog.records if r.getMessage().startswith("unreadable message acknowledged")]
    assert [r.message_id for r in logged] == ["msg-0", "msg-1", "msg-2", "msg-3"]  # type: ignore[attr-defined]
    assert logged[0].levelno == logging.ERROR and "not JSON" in logged[0].error  # type: ignore[attr-defined]


def test_a_message_for_the_other_worker_queue_is_unreadable_not_retried(memory_adapters: wiring.Adapters) -> None:
    misplaced = {"action": "teardown_variant", "embedding_model_id": "m", "variant": "esd-m-1", "reason": "x"}
    assert invoke("deploy_worker", misplaced) == {"batchItemFailures": []}


def test_a_readable_message_that_fails_is_reported_for_redelivery(
    memory_adapters: wiring.Adapters, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")
    memory_adapters.hosting_factory = FakeHosting
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m")
    task = memory_adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    # A message still ahead of its task after its quick re-sends is left to SQS's redelivery.
    ahead = {"action": "advance", "task_id": task.task_id, "version": task.version + 1, "attempt": MAX_EARLY_RESENDS}
    assert invoke("deploy_worker", json.dumps(ahead)) == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    failed = [r for r in caplog.records if r.getMessage().startswith("message failed")]
    assert "RetryableError" in failed[0].error and "message for version 2" in failed[0].error  # type: ignore[attr-defined]


def delivered(body: dict[str, Any], receive_count: int) -> dict[str, Any]:
    """The Lambda SQS event of `body` as SQS hands it out the `receive_count`-th time (same message id)."""
    event = sqs_event(body)
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return event


def test_a_step_whose_next_message_was_not_sent_sends_it_when_sqs_delivers_it_again(
    memory_adapters: wiring.Adapters,
) -> None:
    """Issue 22: a step writes, then sends its next message; a failed send leaves nothing lost."""
    memory_adapters.hosting_factory = FakeHosting
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m")
    task = memory_adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m"}))
    queue = memory_adapters.deploy_queue
    [(first, _)] = queue.drain()  # type: ignore[attr-defined]
    body = {"action": "advance", "task_id": task.task_id, "version": first.version}
    queue.fail_next = 1  # type: ignore[attr-defined]
    with Client(app) as client:
        assert client.lambda_.invoke("deploy_worker", delivered(body, 1)).payload == {
            "batchItemFailures": [{"itemIdentifier": "msg-0"}]
        }
        written = memory_adapters.store.get(task.task_id)
        assert written is not None and (written.stage, written.version) == (Stage.CREATING, task.version + 1)
        assert queue.messages == []  # type: ignore[attr-defined]
        # A duplicate that SQS hands out at the same time is not a redelivery: it leaves the task alone.
        assert client.lambda_.invoke("deploy_worker", delivered(body, 1)).payload == {"batchItemFailures": []}
        assert queue.messages == []  # type: ignore[attr-defined]
        assert client.lambda_.invoke("deploy_worker", delivered(body, 2)).payload == {"batchItemFailures": []}
    assert queue.messages == [(Advance(task.task_id, written.version), 0)]  # type: ignore[attr-defined]
    assert memory_adapters.store.get(task.task_id) == written  # the step did not run twice
class _MeetThenFormat(logging.Handler):
    """Holds each invocation's first line until the other invocation has logged too, then formats it
    with the app's own JSON formatter: the keys in it are whatever is in force at that moment."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        from chalicelib.logs import logger as app_logger

        self.setFormatter(app_logger.registered_formatter)
        self._meet = threading.Barrier(parties, timeout=10)
        self._met: set[int] = set()
        self.lines: list[dict[str, Any]] = []

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Before Handler.handle takes the handler's lock: the other thread must get here too.
        if threading.get_ident() not in self._met:
            self._met.add(threading.get_ident())
            self._meet.wait()
        return bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append({**json.loads(self.format(record)), "thread": threading.get_ident()})


def test_each_line_carries_the_request_id_of_the_invocation_that_logged_it(memory_adapters: wiring.Adapters) -> None:
    """The local stack runs invocations side by side in threads (HTTP requests, queue pollers),
    as Lambda runs them side by side in sandboxes: one invocation's keys must not reach another's lines."""
    from chalicelib.logs import PARENT

    meet = _MeetThenFormat(parties=2)
    PARENT.addHandler(meet)
    ids: dict[int, str] = {}

    def invocation(request_id: str) -> None:
        ids[threading.get_ident()] = request_id
        handlers.deploy_worker(sqs_event("not json"), SimpleNamespace(aws_request_id=request_id))

    try:
        threads = [threading.Thread(target=invocation, args=(f"request-{n}",)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    finally:
        PARENT.removeHandler(meet)
    unreadable = [line for line in meet.lines if line["message"].startswith("unreadable message")]
    assert len(unreadable) == 2
    assert {line["request_id"] for line in unreadable} == {"request-1", "request-2"}
    assert all(line["request_id"] == ids[line["thread"]] for line in meet.lines)


def test_a_line_logged_after_an_invocation_carries_no_request_id_of_it(memory_adapters: wiring.Adapters) -> None:
    """A queue poller's thread logs between the invocations it makes: those lines are nobody's request."""
    from chalicelib.logs import PARENT

    meet = _MeetThenFormat(parties=1)
    PARENT.addHandler(meet)
    try:
        handlers.deploy_worker(sqs_event("not json"), SimpleNamespace(aws_request_id="request-1"))
        logging.getLogger("chalicelib.poller").warning("between invocations")
    finally:
        PARENT.removeHandler(meet)
    assert [line.get("request_id") for line in meet.lines if line["message"].startswith("unreadable")] == ["request-1"]
    assert [line.get("request_id") for line in meet.lines if line["message"] == "between invocations"] == [None]
