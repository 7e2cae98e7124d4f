"""HTTP entry points through chalice.test.Client over moto DynamoDB/SQS."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(aws_adapters: wiring.Adapters, upload) -> Iterator[Client]:
    # The models these tests deploy were uploaded by `esdeploy package --upload`.
    for model_id in ("abc123", "m1"):
        upload(model_id)
    with Client(app) as test_client:
        yield test_client


def post(client: Client, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.http.post(path, headers=headers or JSON, body=raw)


def queue_bodies(aws: dict[str, Any], url: str) -> list[dict[str, Any]]:
    sqs = aws["session"].client("sqs")
    answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_health(client: Client) -> None:
    answer = client.http.get("/health")
    assert answer.status_code == 200 and answer.json_body["status"] == "ok"


def test_seed_deploy_example_works_as_written(client: Client, aws: dict[str, Any]) -> None:
    answer = post(client, "/deploy", {"model_id": "abc123", "config": {}})
    assert answer.status_code == 200
    task = answer.json_body
    assert task["embedding_model_id"] == "abc123"
    assert task["status"] == "pending" and task["stage"] == "queued"
    assert task["created_at"].endswith("Z") and task["updated_at"].endswith("Z")
    assert task["config"]["instance_type"] == "ml.g5.xlarge"
    assert task["events"][0]["status"] == "pending"
    messages = queue_bodies(aws, aws["queues"].deploy)
    assert messages == [{"action": "advance", "task_id": task["task_id"], "version": 1}]


def test_seed_delete_example_works_as_written(client: Client, aws: dict[str, Any]) -> None:
    answer = post(client, "/delete", {"model_id": "your_model_id", "reason": "No longer needed"})
    assert answer.status_code == 200
    assert answer.json_body["reason"] == "No longer needed"
    assert answer.json_body["embedding_model_id"] == "your_model_id"
    assert queue_bodies(aws, aws["queues"].teardown)[0]["action"] == "delete_model"


def test_get_task_by_id_and_newest_by_model(client: Client) -> None:
    first = post(client, "/deploy", {"embedding_model_id": "m1", "id": "task-1"}).json_body
    assert client.http.get("/deploy/task-1").json_body == first
    assert client.http.get("/deploy-status/m1").json_body["task_id"] == "task-1"
    deletion = post(client, "/delete", {"embedding_model_id": "m2", "id": "del-1"}).json_body
    assert client.http.get("/delete/del-1").json_body == deletion
    assert client.http.get("/delete-status/m2").json_body["task_id"] == "del-1"


def test_newest_wins_once_the_first_task_ended(client: Client, aws_adapters: wiring.Adapters) -> None:
    post(client, "/deploy", {"embedding_model_id": "m1", "id": "older"})
    older = aws_adapters.store.get("older")
    assert older is not None
    from chalicelib.domain.models import TaskStatus

    older.record(at=aws_adapters.clock.now(), status=TaskStatus.FAILED, detail="gone wrong")
    aws_adapters.store.update(older)
    post(client, "/deploy", {"embedding_model_id": "m1", "id": "newer"})
    assert client.http.get("/deploy-status/m1").json_body["task_id"] == "newer"


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/deploy/nope", "Deployment task with ID `nope` is not found"),
        ("/delete/nope", "Deletion task with ID `nope` is not found"),
        ("/deploy-status/nope", "Deployment task for model with ID `nope` is not found"),
        ("/delete-status/nope", "Deletion task for model with ID `nope` is not found"),
    ],
)
def test_not_found_texts(client: Client, path: str, detail: str) -> None:
    answer = client.http.get(path)
    assert answer.status_code == 404
    assert answer.json_body == {"detail": detail}


def test_replay_returns_the_same_task_and_sends_its_first_step_again_while_pending(
    client: Client, aws: dict[str, Any]
) -> None:
    body = {"embedding_model_id": "m1", "id": "client-42", "config": {"bake_seconds": 30}}
    first = post(client, "/deploy", body)
    second = post(client, "/deploy", {**body, "model_id": body["embedding_model_id"]} | {})
    assert first.status_code == second.status_code == 200
    assert second.json_body == first.json_body
    # The first attempt may have died before its send (tests/scenarios/test_crash_matrix.py); the
    # retry sends the same step again, and the worker runs it once (the task's version decides).
    steps = queue_bodies(aws, aws["queues"].deploy)
    assert len(steps) == 2 and steps[0] == steps[1]
    changed = post(client, "/deploy", {**body, "config": {"bake_seconds": 31}})
    assert changed.status_code == 409
    assert "client-42" in changed.json_body["detail"]


def test_busy_model_is_409_naming_the_active_task(client: Client) -> None:
    first = post(client, "/deploy", {"embedding_model_id": "m1"}).json_body
    answer = post(client, "/delete", {"embedding_model_id": "m1"})
    assert answer.status_code == 409
    assert answer.json_body["active_task_id"] == first["task_id"]
    assert first["task_id"] in answer.json_body["detail"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ("{not json", 400, "not valid JSON"),
        ("[1, 2]", 422, "JSON object"),
        ("", 422, "empty"),
        ({}, 422, "embedding_model_id"),
        ({"embedding_model_id": 12}, 422, "embedding_model_id"),
        ({"embedding_model_id": "m", "colour": "red"}, 422, "unknown field `colour`"),
        ({"embedding_model_id": "m", "config": {"gpu": "yes"}}, 422, "config.gpu"),
        ({"embedding_model_id": "m", "config": {"initial_instance_count": "2"}}, 422, "initial_instance_count"),
        ({"embedding_model_id": "m", "config": {"initial_instance_count": 0}}, 422, "initial_instance_count"),
        ({"embedding_model_id": "m", "config": []}, 422, "config"),
        ({"embedding_model_id": "bad id!"}, 422, "embedding_model_id"),
        ({"embedding_model_id": "x" * 129}, 422, "embedding_model_id"),
        ({"embedding_model_id": "m", "model_id": "n"}, 422, "different models"),
        ({"embedding_model_id": "m", "id": "a/b"}, 422, "id"),
        ({"embedding_model_id": "m", "config": {"instance_type": "ml.t2.nano"}}, 422, "instance_type"),
    ],
)
def test_bad_deploy_bodies_name_the_problem(client: Client, body: Any, status: int, needle: str) -> None:
    answer = post(client, "/deploy", body)
    assert answer.status_code == status, answer.body
    assert needle in answer.json_body["detail"]
    assert "Traceback" not in answer.body.decode()


def test_oversized_body_is_413(client: Client) -> None:
    answer = post(client, "/delete", {"embedding_model_id": "m", "reason": "x" * 100_000})
    assert answer.status_code == 413
    assert "limit" in answer.json_body["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])  # curl -d sends the 2nd
def test_wrong_content_type_is_415_in_our_shape(client: Client, content_type: str) -> None:
    answer = post(client, "/deploy", '{"embedding_model_id": "m"}', headers={"Content-Type": content_type})
    assert answer.status_code == 415
    assert answer.json_body == {
        "detail": f"Content-Type {content_type} is not supported: send the body as JSON with "
        "Content-Type: application/json"
    }


def test_a_method_a_route_does_not_have_is_405_in_our_shape(client: Client) -> None:
    answer = client.http.put("/deploy", headers=JSON, body="{}")
    assert answer.status_code == 405
    assert answer.json_body == {"detail": "Unsupported method: PUT; this path allows POST"}


def test_sqs_outage_fails_the_task_with_the_seed_message(
    client: Client, aws: dict[str, Any], aws_adapters: wiring.Adapters
) -> None:
    sqs = aws["session"].client("sqs")
    sqs.delete_queue(QueueUrl=aws["queues"].deploy)
    answer = post(client, "/deploy", {"embedding_model_id": "m1", "id": "lost"})
    assert answer.status_code == 503
    assert answer.json_body == {"detail": "Failed to create and send model deployment task"}
    task = client.http.get("/deploy/lost").json_body
    assert task["status"] == "failed" and "Failed to create and send" in task["detail"]
    assert aws_adapters.locks.get("m1") is None


def test_unexpected_fault_is_a_bare_500(client: Client, aws_adapters: wiring.Adapters, monkeypatch) -> None:
    def explode(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(aws_adapters.store, "get", explode)
    answer = client.http.get("/deploy/x")
    assert answer.status_code == 500
    assert answer.json_body == {"detail": "Internal error"}


def test_each_request_is_one_json_log_line_with_task_and_model(client: Client, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO)
    task = post(client, "/deploy", {"embedding_model_id": "m1"}).json_body
    client.http.get("/deploy/nope")
    formatter = logging.getLogger("chalicelib").handlers[0].formatter
    assert formatter is not None
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.getMessage() == "http request"]
    assert [(line["route"], line["status_code"]) for line in lines] == [("/deploy", 200), ("/deploy/{task_id}", 404)]
    assert lines[1]["path_params"] == {"task_id": "nope"}
    assert lines[0]["task_id"] == task["task_id"] and lines[0]["embedding_model_id"] == "m1"
    assert lines[0]["duration_ms"] >= 0


@pytest.mark.parametrize(("pointer", "needle"), [(b"", "is an empty file (0 bytes)"), (b"{oops", "is not JSON")])
def test_a_broken_latest_pointer_is_a_422_naming_it_not_a_500(
    client: Client, aws: dict[str, Any], aws_adapters: wiring.Adapters, pointer: bytes, needle: str
) -> None:
    """A zero-byte latest.json (an upload cut short, a `touch`) makes S3 answer the ranged GET with
    InvalidRange: the caller learns which file is wrong, and nothing is queued."""
    at = aws_adapters.settings.artifact_layout.pointer("m1")
    aws["session"].client("s3").put_object(Bucket=at.bucket, Key=at.key, Body=pointer)
    answer = post(client, "/deploy", {"embedding_model_id": "m1"})
    assert answer.status_code == 422, answer.body
    assert answer.json_body["field"] == "config.model_data_url"
    assert at.url in answer.json_body["detail"] and needle in answer.json_body["detail"]
    assert queue_bodies(aws, aws["queues"].deploy) == []
