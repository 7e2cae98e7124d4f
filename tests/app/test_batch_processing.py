"""The SQS entry points on Powertools' BatchProcessor: partial batch responses, never a raise for a
wholly failed batch, one MessagesFailed per failed record; events as Chalice's test client makes them."""
from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.domain.models import TaskKind
from tests.app.test_intake import sqs_event
from tests.fakes.artifacts import publish_in_memory

VALID = {"action": "deploy", "embedding_model_id": "m1"}
REFUSED = {"action": "deploy", "embedding_model_id": "m1", "config": {"instance_type": "ml.t2.nano"}}


def failed_message_metrics(out: str) -> list[dict[str, Any]]:
    return [doc for doc in (json.loads(line) for line in out.splitlines() if '"_aws"' in line)
            if "MessagesFailed" in doc]


def test_chalices_generated_sqs_event_goes_through_the_batch_processor(memory_adapters: wiring.Adapters) -> None:
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m1")
    with Client(app) as client:
        event = client.events.generate_sqs_event([json.dumps(VALID)], queue_name="esdeploy-test-requests")
        assert client.lambda_.invoke("requests_worker", event).payload == {"batchItemFailures": []}
    task = memory_adapters.store.newest_for_model("m1", TaskKind.DEPLOY)
    assert task is not None and task.status.value == "pending"


def test_chalices_generated_event_reports_a_failure_under_the_one_message_id_it_gives_every_record(
    memory_adapters: wiring.Adapters,
) -> None:
    """Chalice's test client gives every record the id `message-id`: a failure is reported under
    it, which on AWS (distinct ids) names only the failed record."""
    with Client(app) as client:
        event = client.events.generate_sqs_event([json.dumps(REFUSED)], queue_name="esdeploy-test-requests")
        assert client.lambda_.invoke("requests_worker", event).payload == {
            "batchItemFailures": [{"itemIdentifier": "message-id"}]
        }


def test_a_wholly_failed_batch_is_answered_not_raised_and_each_failure_is_counted(
    memory_adapters: wiring.Adapters, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with Client(app) as client:
        answer = client.lambda_.invoke("requests_worker", sqs_event(REFUSED, REFUSED)).payload
    assert answer == {"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]}
    metrics = failed_message_metrics(capsys.readouterr().out)
    assert [(m["function"], m["message_id"], m["MessagesFailed"]) for m in metrics] == [
        ("requests_worker", "msg-0", [1.0]), ("requests_worker", "msg-1", [1.0])
    ]
