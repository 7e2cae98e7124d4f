"""Scenarios: manual promotion (the reindex window) through HTTP and the intake queue, with its faults."""
from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.models import EndpointState
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World
from tests.scenarios.test_crashes_and_sweeper import sweep
from tests.scenarios.test_deploy_lifecycle import first_deploy, stages

WINDOW = 3600


def manual_deploy(world: World, model: str = "m1", **config: Any) -> dict[str, Any]:
    """Submit a manual-promotion deploy and run it until its candidate awaits promotion."""
    task = world.deploy(model, promotion="manual", promotion_timeout_seconds=WINDOW, **config)
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] in ("awaiting_promotion", "finished"))
    waiting = world.task(task["task_id"])
    assert waiting["stage"] == "awaiting_promotion" and waiting["status"] == "processing", waiting
    return waiting


def test_a_candidate_waits_beside_blue_until_promoted(world: World) -> None:
    blue = first_deploy(world, bake_seconds=60)
    world.upload_artifact("m1", manifest_for("m1", version=2))
    waiting = manual_deploy(world, bake_seconds=60)
    candidate = waiting["endpoint_name"]
    assert "awaits promotion until" in waiting["detail"] and waiting["promote_by"]

    # The alias has not moved; the model shows the candidate and its content hash.
    model = world.get("/models/m1").json_body
    assert model["endpoint_name"] == blue["endpoint_name"]
    assert model["candidate_endpoint_name"] == candidate
    assert model["candidate_content_hash"] == waiting["config"]["content_hash"] != model["content_hash"]
    assert model["candidate_task_id"] == waiting["task_id"]
    assert world.get("/models").json_body == {"models": [model]}
    assert sorted(world.hosting.endpoint_names()) == sorted([blue["endpoint_name"], candidate])

    # Re-embedding a corpus: the candidate answers on request, the live alias by default.
    through_candidate = world.post("/models/m1/invoke", {"inputs": ["a", "b"], "target": "candidate"})
    assert through_candidate.status_code == 200, through_candidate.json_body
    assert through_candidate.json_body["endpoint_name"] == candidate
    assert len(through_candidate.json_body["embeddings"]) == 2
    assert world.post("/models/m1/invoke", {"inputs": ["a"]}).json_body["endpoint_name"] == blue["endpoint_name"]
    bad_target = world.post("/models/m1/invoke", {"inputs": ["a"], "target": "green"})
    assert bad_target.status_code == 422 and bad_target.json_body["field"] == "target"

    # The lease stays held: another deploy, a delete or a rollback is a 409 naming the waiting task.
    for path, body in (("/deploy", {"embedding_model_id": "m1"}), ("/delete", {"embedding_model_id": "m1"})):
        busy = world.post(path, body)
        assert busy.status_code == 409, busy.json_body
        assert busy.json_body["active_task_id"] == waiting["task_id"]
        assert f"POST /deploy/{waiting['task_id']}/promote" in busy.json_body["detail"]
    assert world.post("/models/m1/rollback").status_code == 409

    # Hours go by (in hops the sweeper does not mistake for a stall): still waiting, alias on blue.
    world.pump.run(until=lambda: world.clock.now().timestamp() > _at(waiting["updated_at"]) + WINDOW / 2)
    assert sweep(world)["rekicked"] == []
    assert world.task(waiting["task_id"])["stage"] == "awaiting_promotion"

    promoted = world.post(f"/deploy/{waiting['task_id']}/promote")
    assert promoted.status_code == 200, promoted.json_body
    world.pump.run()
    done = world.task(waiting["task_id"])
    assert done["status"] == "done", done
    assert stages(done)[-5:] == ["verifying", "awaiting_promotion", "swapping", "baking", "finished"]
    model = world.get("/models/m1").json_body
    assert model["endpoint_name"] == candidate and model["candidate_endpoint_name"] is None
    assert world.hosting.endpoint_names() == [candidate]  # blue torn down after the bake
    answer = world.post("/models/m1/invoke", {"inputs": ["a"], "target": "candidate"})
    assert answer.status_code == 409 and "no candidate awaiting promotion" in answer.json_body["detail"]


def test_promote_twice_swaps_once(world: World) -> None:
    first_deploy(world)
    waiting = manual_deploy(world)
    task_id = waiting["task_id"]
    first = world.post(f"/deploy/{task_id}/promote")
    second = world.post(f"/deploy/{task_id}/promote")
    assert first.status_code == second.status_code == 200
    assert second.json_body["status"] == "processing" and second.json_body["stage"] == "awaiting_promotion"
    world.pump.run()
    third = world.post(f"/deploy/{task_id}/promote")
    assert third.status_code == 200 and third.json_body["status"] == "done"
    alias = world.get("/models/m1").json_body
    assert alias["endpoint_name"] == waiting["endpoint_name"]
    # Blue's swap, this one, and the bake's end forgetting blue: a second promote wrote nothing.
    assert alias["version"] == 3
    done = world.task(task_id)
    assert [e.get("detail") for e in done["events"]].count(f"promoted: {waiting['endpoint_name']} goes live") == 1
    assert world.hosting.part_creations["endpoint"] == 2


def test_promote_after_cancel_is_refused_and_the_candidate_goes(world: World) -> None:
    blue = first_deploy(world)
    waiting = manual_deploy(world)
    task_id = waiting["task_id"]
    assert world.post(f"/deploy/{task_id}/cancel").status_code == 200
    refused = world.post(f"/deploy/{task_id}/promote")
    assert refused.status_code == 409 and "being canceled" in refused.json_body["detail"]
    world.pump.run()
    canceled = world.task(task_id)
    assert canceled["status"] == "canceled", canceled
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    again = world.post(f"/deploy/{task_id}/promote")
    assert again.status_code == 409 and "already canceled" in again.json_body["detail"]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert world.get("/models/m1").json_body["candidate_endpoint_name"] is None
    # The lease went with the task: the model takes a new deploy.
    assert first_deploy(world)["status"] == "done"


def test_promotion_timeout_cancels_and_tears_the_candidate_down(world: World) -> None:
    blue = first_deploy(world)
    waiting = manual_deploy(world)
    world.pump.run()
    ended = world.task(waiting["task_id"])
    assert ended["status"] == "canceled", ended
    assert ended["stage"] == "awaiting_promotion"
    assert f"candidate {waiting['endpoint_name']} was not promoted within 1 h" in ended["detail"]
    assert "config.promotion_timeout_seconds=3600" in ended["detail"]
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    hops = [d for d in world.pump.deliveries if d.handler == "deploy_worker"]
    assert len(hops) < 40  # 5-minute hops, not a tight loop
    late = world.post(f"/deploy/{waiting['task_id']}/promote")
    assert late.status_code == 409 and "already canceled" in late.json_body["detail"]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]


def test_a_first_deploy_awaiting_promotion_has_only_a_candidate(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    waiting = manual_deploy(world)
    model = world.get("/models/m1")
    assert model.status_code == 200
    assert model.json_body["endpoint_name"] is None
    assert model.json_body["candidate_endpoint_name"] == waiting["endpoint_name"]
    # Nothing is live yet, and the answers say what is there instead of "not deployed".
    live = world.post("/models/m1/invoke", {"inputs": ["a"]})
    assert live.status_code == 404
    assert live.json_body["detail"] == (
        f"Model `m1` has no live variant yet: the candidate of its first deploy, task `{waiting['task_id']}`, "
        'awaits promotion (it answers with "target": "candidate"; promote the task to make it live)'
    )
    assert world.post("/models/m1/invoke", {"inputs": ["a"], "target": "candidate"}).status_code == 200
    [listed] = world.get("/models").json_body["models"]  # the listing shows it as GET /models/m1 does
    assert listed == model.json_body
    world.post(f"/deploy/{waiting['task_id']}/promote")
    world.pump.run()
    assert world.get("/models/m1").json_body["endpoint_name"] == waiting["endpoint_name"]
    [listed] = world.get("/models").json_body["models"]
    assert (listed["endpoint_name"], listed["candidate_endpoint_name"]) == (waiting["endpoint_name"], None)


def test_what_cannot_be_promoted_says_why(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    assert world.post("/deploy/nope/promote").status_code == 404
    auto = world.deploy("m1")
    answer = world.post(f"/deploy/{auto['task_id']}/promote")
    assert answer.status_code == 409 and 'config.promotion "auto"' in answer.json_body["detail"]
    world.pump.run()
    manual = world.deploy("m1", promotion="manual")
    world.pump.run(until=lambda: world.task(manual["task_id"])["stage"] == "waiting")
    early = world.post(f"/deploy/{manual['task_id']}/promote")
    assert early.status_code == 409 and "in stage waiting" in early.json_body["detail"]
    world.post(f"/deploy/{manual['task_id']}/cancel")


@pytest.mark.parametrize(
    ("config", "field", "needle"),
    [
        ({"promotion": "later"}, "config.promotion", "'auto' or 'manual'"),
        ({"promotion_timeout_seconds": 600}, "config.promotion_timeout_seconds", 'only with config.promotion "manual"'),
        ({"promotion": "manual", "promotion_timeout_seconds": 30}, "config.promotion_timeout_seconds", "60"),
        ({"promotion": "manual", "promotion_timeout_seconds": 10**7}, "config.promotion_timeout_seconds",
         "over the stage's limit of"),
    ],
)
def test_bad_promotion_config_is_a_422_naming_the_field(
    world: World, config: dict[str, Any], field: str, needle: str
) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    answer = world.post("/deploy", {"embedding_model_id": "m1", "config": config})
    assert answer.status_code == 422, answer.json_body
    assert answer.json_body["field"] == field and needle in answer.json_body["detail"]


def test_the_automation_intake_promotes(world: World) -> None:
    first_deploy(world)
    waiting = manual_deploy(world)
    body = {"action": "promote", "task_id": waiting["task_id"]}
    world.sqs.send_message(QueueUrl=world.urls.requests, MessageBody=json.dumps(body))
    world.sqs.send_message(QueueUrl=world.urls.requests, MessageBody=json.dumps(body))  # a redelivery
    world.pump.run()
    assert world.task(waiting["task_id"])["status"] == "done"
    assert world.get("/models/m1").json_body["endpoint_name"] == waiting["endpoint_name"]
    failed = [d for d in world.pump.deliveries if d.handler == "requests_worker" and d.outcome == "failed"]
    assert failed == []


def test_a_lost_promote_message_is_found_by_the_sweeper(world: World) -> None:
    first_deploy(world)
    waiting = manual_deploy(world)
    assert world.post(f"/deploy/{waiting['task_id']}/promote").status_code == 200
    world.sqs.purge_queue(QueueUrl=world.urls.deploy)  # the wake-up and the next hop are gone
    world.clock.advance(world.adapters.settings.stall_seconds + 1)
    assert sweep(world)["rekicked"] == [waiting["task_id"]]
    world.pump.run()
    assert world.task(waiting["task_id"])["status"] == "done"


def test_a_lost_hop_still_ends_the_window(world: World) -> None:
    first_deploy(world)
    waiting = manual_deploy(world)
    world.sqs.purge_queue(QueueUrl=world.urls.deploy)
    world.clock.advance(WINDOW + 1)
    assert sweep(world)["rekicked"] == [waiting["task_id"]]
    world.pump.run()
    assert world.task(waiting["task_id"])["status"] == "canceled"


def _at(text: str) -> float:
    from chalicelib.domain.models import parse_iso

    return parse_iso(text).timestamp()


def test_a_candidate_that_failed_while_it_waited_is_not_promoted(world: World) -> None:
    blue = first_deploy(world)
    waiting = manual_deploy(world)
    world.hosting.set_state(waiting["endpoint_name"], EndpointState.FAILED, reason="instance health check failed")
    assert world.post(f"/deploy/{waiting['task_id']}/promote").status_code == 200
    world.pump.run()
    failed = world.task(waiting["task_id"])
    assert failed["status"] == "failed", failed
    assert f"candidate {waiting['endpoint_name']} is Failed (instance health check failed)" in failed["detail"]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]


def test_an_intake_promote_that_cannot_apply_ends_in_the_requests_dlq(world: World) -> None:
    first_deploy(world)
    waiting = manual_deploy(world)
    world.post(f"/deploy/{waiting['task_id']}/cancel")
    world.pump.run()
    body = {"action": "promote", "task_id": waiting["task_id"]}
    world.sqs.send_message(QueueUrl=world.urls.requests, MessageBody=json.dumps(body))
    world.pump.run()
    failed = [d for d in world.pump.deliveries if d.handler == "requests_worker" and d.outcome == "failed"]
    assert len(failed) == 5  # the queue's max receive count, then SQS's redrive takes it
    dlq = world.urls.dead_letters[world.adapters.settings.requests_queue]
    dead = world.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in dead] == [body]
    assert world.task(waiting["task_id"])["status"] == "canceled"
