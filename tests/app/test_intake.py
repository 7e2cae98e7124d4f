"""The requests queue entry point: same validation and idempotency as HTTP, partial failures."""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring


def sqs_event(*bodies: Any) -> dict[str, Any]:
    """Like Client.events.generate_sqs_event, but each record gets its own messageId."""
    return {
        "Records": [
            {
                "messageId": f"msg-{index}",
                "receiptHandle": f"rh-{index}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:esdeploy-test-requests",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    with Client(app) as client:
        return client.lambda_.invoke("requests_worker", event).payload


def test_valid_messages_become_tasks_and_invalid_ones_are_reported(
    aws_adapters: wiring.Adapters, upload
) -> None:
    upload("abc123")
    result = invoke(
        sqs_event(
            {"action": "deploy", "model_id": "abc123", "id": "auto-1", "config": {}},
            {"action": "delete", "embedding_model_id": "other", "id": "auto-2", "reason": "retired"},
            {"action": "promote", "embedding_model_id": "m"},
            {"action": "deploy", "embedding_model_id": "m", "surprise": True},
            "not json",
        )
    )
    assert result == {
        "batchItemFailures": [{"itemIdentifier": "msg-2"}, {"itemIdentifier": "msg-3"}, {"itemIdentifier": "msg-4"}]
    }
    deploy = aws_adapters.store.get("auto-1")
    delete = aws_adapters.store.get("auto-2")
    assert deploy is not None and deploy.source == "sqs" and deploy.status == "pending"
    assert delete is not None and delete.reason == "retired"


def test_redelivered_message_does_not_make_a_second_task(aws_adapters: wiring.Adapters, upload) -> None:
    upload("m")
    message = {"action": "deploy", "embedding_model_id": "m", "id": "auto-1"}
    assert invoke(sqs_event(message)) == {"batchItemFailures": []}
    assert invoke(sqs_event(message)) == {"batchItemFailures": []}
    task = aws_adapters.store.get("auto-1")
    assert task is not None and task.version == 1


def test_busy_model_message_waits_on_the_requests_queue(
    aws_adapters: wiring.Adapters, aws: dict[str, Any], upload
) -> None:
    """Defect 3.3: it used to fail the message, which reached the requests DLQ after five receives,
    long before a real endpoint (10-20 min) freed the model. It goes back to the queue, delayed."""
    upload("m")
    invoke(sqs_event({"action": "deploy", "embedding_model_id": "m"}))
    result = invoke(sqs_event({"action": "delete", "embedding_model_id": "m", "id": "retire-m"}))
    assert result == {"batchItemFailures": []}
    assert aws_adapters.store.get("retire-m") is None  # not a task yet: it waits
    sqs = aws["session"].client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=aws["queues"].requests, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_invalid_message_is_logged_as_json_with_its_reason(
    aws_adapters: wiring.Adapters, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")
    invoke(sqs_event({"action": "deploy", "embedding_model_id": "bad id"}))
    invalid = [r for r in caplog.records if r.getMessage() == "invalid intake message"]
    assert invalid and "embedding_model_id" in invalid[0].reason  # type: ignore[attr-defined]
    # The line CloudWatch gets is the Powertools JSON of that record, with its fields on top.
    formatter = logging.getLogger("chalicelib").handlers[0].formatter
    assert formatter is not None
    line = json.loads(formatter.format(invalid[0]))
    assert line["level"] == "ERROR" and line["embedding_model_id"] == "bad id"
    assert "not allowed" in line["reason"]


def test_accepted_request_log_line_carries_task_and_model(
    aws_adapters: wiring.Adapters, caplog: pytest.LogCaptureFixture, upload
) -> None:
    upload("m")
    caplog.set_level(logging.INFO, logger="chalicelib")
    invoke(sqs_event({"action": "deploy", "embedding_model_id": "m", "id": "auto-9"}))
    formatter = logging.getLogger("chalicelib").handlers[0].formatter
    assert formatter is not None
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    submitted = [line for line in lines if line["message"] == "task submitted"]
    assert submitted and submitted[0]["task_id"] == "auto-9" and submitted[0]["embedding_model_id"] == "m"
