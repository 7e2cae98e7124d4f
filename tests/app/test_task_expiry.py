"""Ended tasks expire by DynamoDB TTL: the item the console shows, written through the real handlers."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.adapters.dynamodb_tasks import EXPIRES_AT
from chalicelib.config import Settings, load_settings
from chalicelib.domain.models import parse_iso

JSON = {"Content-Type": "application/json"}


def deploy_then_cancel(client: Client) -> tuple[str, dict[str, Any]]:
    """A pending deploy cancelled at once: the quickest way through the API to a final status."""
    task = client.http.post("/deploy", headers=JSON, body=json.dumps({"embedding_model_id": "m1"})).json_body
    canceled = client.http.post(f"/deploy/{task['task_id']}/cancel").json_body
    assert canceled["status"] == "canceled", canceled
    return task["task_id"], canceled


def raw_item(aws: dict[str, Any], settings: Settings, task_id: str) -> dict[str, Any]:
    table = aws["session"].resource("dynamodb").Table(settings.tasks_table)
    return dict(table.get_item(Key={"task_id": task_id})["Item"])


@pytest.fixture
def client(aws_adapters: wiring.Adapters, upload) -> Iterator[Client]:
    # The models these tests deploy were uploaded by `esdeploy package --upload`.
    for model_id in ("m1", "m2"):
        upload(model_id)
    with Client(app) as test_client:
        yield test_client


def test_an_ended_task_item_gets_expires_at_in_epoch_seconds_and_an_active_one_none(
    client: Client, aws: dict[str, Any], settings: Settings
) -> None:
    dynamodb = aws["session"].client("dynamodb")
    ttl = dynamodb.describe_time_to_live(TableName=settings.tasks_table)["TimeToLiveDescription"]
    assert (ttl["AttributeName"], ttl["TimeToLiveStatus"]) == (EXPIRES_AT, "ENABLED")

    active = client.http.post("/deploy", headers=JSON, body=json.dumps({"embedding_model_id": "m2"})).json_body
    assert active["status"] == "pending"
    assert EXPIRES_AT not in raw_item(aws, settings, active["task_id"])

    task_id, canceled = deploy_then_cancel(client)
    ended_at = next(parse_iso(e["at"]) for e in canceled["events"] if e["status"] == "canceled")
    expires_at = raw_item(aws, settings, task_id)[EXPIRES_AT]
    # A Number (boto3 reads it as Decimal): a string or an ISO date would never expire.
    described = dynamodb.get_item(TableName=settings.tasks_table, Key={"task_id": {"S": task_id}})["Item"]
    assert set(described[EXPIRES_AT]) == {"N"}
    assert settings.task_retention_days == 90  # config.py's default: the test stage does not set it
    assert int(expires_at) == int((ended_at + timedelta(days=90)).timestamp())


def test_retention_zero_keeps_ended_tasks_forever(aws: dict[str, Any], test_env: dict[str, str], upload) -> None:
    upload("m1")
    settings = load_settings({**test_env, "ESDEPLOY_TASK_RETENTION_DAYS": "0"})
    wiring.use(wiring.aws_adapters(settings))
    try:
        with Client(app) as client:
            task_id, _ = deploy_then_cancel(client)
    finally:
        wiring.use(None)
    assert EXPIRES_AT not in raw_item(aws, settings, task_id)
