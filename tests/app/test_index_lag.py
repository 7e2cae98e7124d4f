"""The `by-model` index lags behind writes (GSI reads are eventually consistent): the API must not."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.adapters.dynamodb_table import DocumentTable, speak_python_types
from chalicelib.adapters.dynamodb_tasks import DynamoTaskStore
from chalicelib.domain.models import TaskStatus
from tests.fakes.lagging_index import LaggingIndexTable

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def lagging(aws_adapters: wiring.Adapters) -> Iterator[tuple[Client, LaggingIndexTable]]:
    import boto3

    client = speak_python_types(boto3.client("dynamodb"))
    table = LaggingIndexTable(DocumentTable(client, aws_adapters.settings.tasks_table))
    aws_adapters.store = DynamoTaskStore(table)
    with Client(app) as client:
        yield client, table


def test_deploy_status_right_after_deploy_finds_the_task_while_the_index_lags(
    lagging: tuple[Client, LaggingIndexTable], upload: Any
) -> None:
    """Issue 11: a 404 here is a lie; the task was stored a moment ago."""
    client, _table = lagging
    upload("m1")
    accepted = client.http.post("/deploy", headers=JSON, body=json.dumps({"model_id": "m1"}))
    assert accepted.status_code == 200, accepted.json_body
    status = client.http.get("/deploy-status/m1")
    assert status.status_code == 200, status.json_body
    assert status.json_body["task_id"] == accepted.json_body["task_id"]


def test_a_newer_task_wins_over_the_one_the_index_still_shows(lagging: tuple[Client, LaggingIndexTable]) -> None:
    client, table = lagging
    first = client.http.post("/delete", headers=JSON, body=json.dumps({"model_id": "m1"})).json_body
    adapters = wiring.adapters()
    stored = adapters.store.get(first["task_id"])
    assert stored is not None
    adapters.writer.end(stored, TaskStatus.REFUSED, "nothing deployed")  # the model is free again
    table.catch_up()  # the index shows the first delete
    second = client.http.post("/delete", headers=JSON, body=json.dumps({"model_id": "m1"}))
    assert second.status_code == 200, second.json_body
    status = client.http.get("/delete-status/m1").json_body
    assert status["task_id"] == second.json_body["task_id"]
