"""The composition root builds what a route's service declares, and nothing else."""
from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.adapters import sagemaker_hosting
from chalicelib.services.dead_letters import DeadLetterService
from chalicelib.services.deploy_worker import DeployWorker
from chalicelib.services.models import ModelActions, ModelReads
from chalicelib.services.outbox import Outbox, TaskWriter
from chalicelib.services.sweeper import Sweeper
from chalicelib.services.tasks import TaskService
from chalicelib.services.teardown_worker import TeardownWorker
from tests.fakes import FakeHosting

JSON = {"Content-Type": "application/json"}


def test_reading_models_and_cancelling_never_build_sagemaker_clients(
    aws_adapters: wiring.Adapters, monkeypatch: pytest.MonkeyPatch, upload
) -> None:
    upload("m1")
    built: list[Any] = []
    real = sagemaker_hosting.make_sagemaker_clients
    monkeypatch.setattr(sagemaker_hosting, "make_sagemaker_clients", lambda *a: built.append(a) or real(*a))
    with Client(app) as client:
        assert client.http.get("/models").status_code == 200
        assert client.http.get("/models/m1").status_code == 404
        task = client.http.post("/deploy", headers=JSON, body=json.dumps({"embedding_model_id": "m1"})).json_body
        assert client.http.post(f"/deploy/{task['task_id']}/cancel").json_body["status"] == "canceled"
        assert built == []
        # The routes whose service talks to endpoints do build them, once per process.
        body = json.dumps({"inputs": ["x"]})
        assert client.http.post("/models/m1/invoke", headers=JSON, body=body).status_code == 404
        assert client.http.post("/models/m1/invoke", headers=JSON, body=body).status_code == 404
    assert len(built) == 1


@pytest.mark.parametrize(
    "service",
    [TaskService, DeployWorker, TeardownWorker, Sweeper, DeadLetterService, ModelReads, ModelActions, Outbox,
     TaskWriter],
)
def test_every_service_can_be_built_from_the_adapters(memory_adapters: wiring.Adapters, service: type) -> None:
    fake = FakeHosting()
    memory_adapters.hosting_factory = lambda: fake
    built = memory_adapters.build(service)
    assert isinstance(built, service)
    if hasattr(built, "hosting"):
        assert built.hosting is fake


@pytest.mark.parametrize(
    ("function", "reader"),
    [("deploy_worker", "read_deploy_tasks"), ("teardown_worker", "read_teardown_tasks"),
     ("deploy_dead_letters", "read_dead_letter"), ("teardown_dead_letters", "read_dead_letter")],
)
def test_the_workers_read_their_messages_through_the_wiring(
    memory_adapters: wiring.Adapters, function: str, reader: str
) -> None:
    """app.py imports no adapter: each worker reads its queue's messages with the adapters' reader, which a
    test (or the local stack) can swap like any port."""
    from chalicelib.adapters import queue_messages
    from chalicelib.domain.errors import UnreadableMessageError

    read: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(queue_messages, name)

    def recorded(text: str) -> Any:
        read.append(text)
        raise UnreadableMessageError("the test's reader reads nothing")

    messages = Recording()
    setattr(messages, reader, recorded)
    memory_adapters.messages = messages  # a stand-in reader, as for any port
    event = {"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": '{"action": "advance"}',
                          "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}]}
    with Client(app) as client:
        assert client.lambda_.invoke(function, event).payload == {"batchItemFailures": []}
    assert read == ['{"action": "advance"}']


LAMBDA_ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
                      "AWS_SESSION_TOKEN": "token", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"}


@pytest.mark.parametrize(
    ("choice", "environment", "expected"),
    [
        ("stdlib", {}, "stdlib"),
        ("boto3", {}, "boto3"),
        # Credentials a profile holds, or an endpoint only boto3 resolves: boto3 is built, never a broken client.
        ("stdlib", {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "boto3"),
        ("stdlib", {"AWS_USE_FIPS_ENDPOINT": "true"}, "boto3"),
    ],
    ids=["stdlib-on-lambda", "boto3-chosen", "no-credentials-in-the-environment", "fips-endpoint"],
)
def test_the_tables_client_is_the_stdlib_one_where_it_can_reach_dynamodb(
    settings: Any, monkeypatch: pytest.MonkeyPatch, choice: str, environment: dict[str, str], expected: str
) -> None:
    from chalicelib.adapters.dynamodb_http import DynamoDbHttpClient

    for name, value in {**LAMBDA_ENVIRONMENT, **environment}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    config = settings.model_copy(update={"dynamodb_client": choice, "region": "eu-west-1"})
    client = wiring.dynamodb_client(config)
    if expected == "stdlib":
        assert isinstance(client, DynamoDbHttpClient)
        assert client.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"
        assert client.max_attempts == wiring.MAX_ATTEMPTS
    else:
        assert not isinstance(client, DynamoDbHttpClient)
        assert client.meta.service_model.service_name == "dynamodb"
        assert client.meta.region_name == "eu-west-1"
