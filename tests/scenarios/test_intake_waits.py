"""Automation intake (defect 3.3 of issue 11): a request for a busy model waits, it is never lost."""
from __future__ import annotations

import json
from datetime import timedelta

from chalicelib.domain.models import iso
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World

SLOW_ENDPOINT_SECONDS = 20 * 60  # a GPU endpoint at the slow end of its 5-20 minutes


def slow_deploy(world: World) -> dict:
    world.hosting.script(creation_seconds=SLOW_ENDPOINT_SECONDS)
    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting")
    return task


def send_request(world: World, body: dict) -> None:
    world.sqs.send_message(QueueUrl=world.urls.requests, MessageBody=json.dumps(body))


def requests_dead_letters(world: World) -> list[dict]:
    dlq = world.urls.dead_letters[world.adapters.settings.requests_queue]
    return world.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])


def test_given_a_model_busy_for_20_minutes_when_automation_asks_to_delete_it_then_the_delete_runs_after(
    world: World,
) -> None:
    deploy = slow_deploy(world)
    started = world.clock.now()
    send_request(world, {"action": "delete", "embedding_model_id": "m1", "id": "retire-m1"})
    world.pump.run()
    assert world.task(deploy["task_id"])["status"] == "done"
    deleted = world.task("retire-m1", kind="delete")
    assert deleted["status"] == "done", deleted
    assert deleted["created_at"] > world.task(deploy["task_id"])["updated_at"]
    assert (world.clock.now() - started) > timedelta(minutes=15)
    intake = [d for d in world.pump.deliveries if d.handler == "requests_worker"]
    assert len(intake) > 5 and all(d.outcome == "ok" for d in intake)  # waiting is not failing
    assert requests_dead_letters(world) == []
    assert world.hosting.owned_resources() == []


def test_given_a_model_busy_past_the_requests_deadline_then_it_ends_refused_saying_why(world: World) -> None:
    deploy = slow_deploy(world)
    deadline = world.clock.now() + timedelta(minutes=5)
    send_request(world, {"action": "deploy", "embedding_model_id": "m1", "id": "redeploy-m1",
                         "config": {"bake_seconds": 60}, "deadline": iso(deadline)})
    world.pump.run()
    refused = world.task("redeploy-m1")
    assert refused["status"] == "refused", refused
    assert deploy["task_id"] in refused["detail"] and "deadline" in refused["detail"]
    assert refused["source"] == "sqs"
    assert world.task(deploy["task_id"])["status"] == "done"
    assert requests_dead_letters(world) == []
