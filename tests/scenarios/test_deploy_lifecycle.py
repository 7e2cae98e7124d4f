"""Scenarios through the real entry points: deploy, redeploy, faults, cancel, rollback, delete."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import sagemaker_refusal
from chalicelib.domain.errors import RetryableError, TerminalHostingError
from chalicelib.domain.models import EndpointState, parse_iso
from tests.fakes.fake_hosting import Answer
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World

CREATING = EndpointState.CREATING
IN_SERVICE = EndpointState.IN_SERVICE


def first_deploy(world: World, model: str = "m1", **config) -> dict:
    world.upload_artifact(model, manifest_for(model))
    task = world.deploy(model, **config)
    world.pump.run()
    done = world.task(task["task_id"])
    assert done["status"] == "done", done
    return done


def stages(task: dict) -> list[str]:
    seen: list[str] = []
    for event in task["events"]:
        if not seen or seen[-1] != event["stage"]:
            seen.append(event["stage"])
    return seen


def test_first_deploy_goes_live_behind_the_alias(world: World) -> None:
    done = first_deploy(world, "your_model_id")
    assert stages(done) == ["queued", "preflight", "creating", "waiting", "verifying", "swapping", "finished"]
    assert "smoke test passed on 3 probe texts (reference embeddings)" in [e.get("detail") for e in done["events"]]
    model = world.get("/models/your_model_id").json_body
    assert model["endpoint_name"] == done["endpoint_name"]
    assert model["previous_endpoint_name"] is None
    assert world.hosting.endpoint_names() == [done["endpoint_name"]]
    ssm = world.adapters.mirror
    assert ssm.parameter_name("your_model_id") == "/esdeploy/test/models/your_model_id/endpoint"  # type: ignore[attr-defined]
    import boto3

    value = boto3.client("ssm", region_name="us-east-1").get_parameter(
        Name="/esdeploy/test/models/your_model_id/endpoint"
    )["Parameter"]["Value"]
    assert value == done["endpoint_name"]
    assert world.get("/models").json_body["models"][0]["embedding_model_id"] == "your_model_id"
    assert world.hosting.count("create_variant") == 1
    world.assert_no_leaks()


def test_redeploy_replaces_blue_and_tears_it_down_after_the_bake(world: World) -> None:
    blue = first_deploy(world, bake_seconds=1200)
    green_task = world.deploy("m1", bake_seconds=1200)
    world.pump.run(until=lambda: world.task(green_task["task_id"])["stage"] == "baking")
    green = world.task(green_task["task_id"])
    assert green["status"] == "processing" and "live_at" in green
    alias = world.get("/models/m1").json_body
    assert alias["endpoint_name"] == green["endpoint_name"]
    assert alias["previous_endpoint_name"] == blue["endpoint_name"]
    # Blue still serves during the bake (rollback is one alias write away).
    assert blue["endpoint_name"] in world.hosting.endpoint_names()
    swapped_at = parse_iso(green["live_at"])
    start = len(world.pump.deliveries)
    world.pump.run(until=lambda: world.task(green_task["task_id"])["status"] == "done")
    assert blue["endpoint_name"] in world.hosting.endpoint_names()  # handed over with the task's end
    assert (world.clock.now() - swapped_at).total_seconds() >= 1200
    # The bake is a chain of looks at the alarms, each within SQS's delay limit: more than one hop.
    looks = [d for d in world.pump.deliveries[start:] if d.body.get("action") == "advance"]
    assert len(looks) >= 1200 // world.adapters.settings.bake_check_seconds
    world.pump.run()
    assert world.hosting.endpoint_names() == [green["endpoint_name"]]
    assert world.get("/models/m1").json_body["previous_endpoint_name"] is None
    world.assert_no_leaks()


def test_redeploying_the_artifact_that_is_live_says_so_at_once(world: World) -> None:
    """The same content again is a whole blue/green swap (a new endpoint: minutes, and money): not
    refused, since changing the instance type or replacing a degraded endpoint is a reason, but said
    in the first answer, with what does change."""
    blue = first_deploy(world)
    content = blue["config"]["content_hash"]
    again = world.deploy("m1")
    assert again["detail"] == (
        f"{blue['endpoint_name']} serves this artifact already (content {content[:12]}): this deploy replaces it "
        "with a new endpoint of the same content and changes nothing else either; cancel the task if that is "
        "not what you meant"
    )
    assert [event["stage"] for event in again["events"]] == ["queued", "queued"]
    world.post(f"/deploy/{again['task_id']}/cancel")
    world.pump.run()
    bigger = world.deploy("m1", instance_type="ml.g5.2xlarge")
    assert bigger["detail"].endswith(
        "a new endpoint of the same content and changes only instance_type ml.g5.xlarge -> ml.g5.2xlarge; "
        "cancel the task if that is not what you meant"
    )
    world.post(f"/deploy/{bigger['task_id']}/cancel")
    world.pump.run()
    world.upload_artifact("m1", manifest_for("m1", version=2))
    assert "detail" not in world.deploy("m1")  # another artifact: nothing to say


def test_green_failed_leaves_blue_serving_and_removes_green(world: World) -> None:
    blue = first_deploy(world)
    world.hosting.script(outcome=EndpointState.FAILED, reason="CUDA out of memory")
    task = world.deploy("m1")
    world.pump.run()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed"
    assert "CUDA out of memory" in failed["detail"]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    world.assert_no_leaks()


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (Answer.WRONG_DIMENSION, "dimension 17, the manifest says 16"),
        (Answer.NOT_UNIT_NORM, "norm 2.0"),
        (Answer.NAN, "NaN"),
        (Answer.WRONG_VECTORS, "cosine similarity to the reference embedding is -1.0"),
        (Answer.WRONG_COUNT, "got 2 embeddings back"),
        (Answer.INVOCATION_ERROR, "did not answer properly"),
    ],
)
def test_smoke_test_mismatch_fails_with_numbers_and_keeps_blue(world: World, answer: Answer, needle: str) -> None:
    blue = first_deploy(world)
    world.hosting.script(answers=[answer])
    task = world.deploy("m1")
    world.pump.run()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed" and failed["stage"] == "verifying"
    assert needle in failed["detail"]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    world.assert_no_leaks()
    assert len(world.hosting.endpoint_names()) == 1


def test_a_model_never_uploaded_is_refused_at_submit_naming_the_upload(world: World) -> None:
    answer = world.post("/deploy", {"embedding_model_id": "m1"})
    assert answer.status_code == 422 and answer.json_body["field"] == "config.model_data_url"
    assert "s3://esdeploy-test-artifacts/models/m1/latest.json does not exist" in answer.json_body["detail"]
    assert world.get("/deploy-status/m1").status_code == 404


def test_a_pinned_artifact_deleted_before_the_preflight_fails_naming_the_url(world: World) -> None:
    url = world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    bucket, key = url[len("s3://"):].split("/", 1)
    world.s3.delete_object(Bucket=bucket, Key=key)
    world.pump.run()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed" and failed["stage"] == "preflight"
    assert f"Model artifact not found at {url} (pinned when the deploy was submitted)" in failed["detail"]
    assert world.hosting.count("create_variant") == 0


def test_cap_on_live_models_refuses(world: World) -> None:
    for model in ("a", "b", "c"):
        first_deploy(world, model)
    world.upload_artifact("d", manifest_for("d"))
    task = world.deploy("d")
    world.pump.run()
    refused = world.task(task["task_id"])
    assert refused["status"] == "refused"
    assert "the stage's cap is 3: delete a model or raise the cap" in refused["detail"]
    # A redeploy of a live model is not a new model and goes through.
    assert first_deploy(world, "a")["status"] == "done"


def test_deadline_ends_a_stuck_deploy(world: World) -> None:
    # SageMaker gives up on a creation by itself, but only after an hour or more; until then it
    # refuses to delete the endpoint.
    world.hosting.script(creation_seconds=2 * 3600)
    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    world.pump.run()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed"
    assert "deadline of 60 min" in failed["detail"]
    polls = [d for d in world.pump.deliveries if d.handler == "deploy_worker"]
    assert 5 < len(polls) < 40  # backoff, not a tight loop
    # The green was refused while Creating, waited for, then torn down: nothing leaks, nothing dead-letters.
    assert world.hosting.count("delete_variant", failed["endpoint_name"]) > 1
    assert world.hosting.endpoint_names() == []
    assert not any(d.handler.endswith("dead_letters") for d in world.pump.deliveries)
    world.assert_no_leaks()


def test_endpoint_event_wakes_the_task_before_the_next_poll(world: World) -> None:
    world.hosting.script(creation_seconds=3600)
    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting")
    world.pump.run(steps=1)  # the first poll: still creating
    name = world.task(task["task_id"])["endpoint_name"]
    before = world.clock.now()
    world.hosting.set_state(name, IN_SERVICE)
    world.emit_endpoint_event(name, IN_SERVICE)  # sent as AWS documents it: EndpointStatus "IN_SERVICE"
    world.pump.run(until=lambda: world.task(task["task_id"])["status"] == "done")
    assert (world.clock.now() - before).total_seconds() < 1
    world.pump.run()  # the overtaken poll message arrives later and changes nothing
    assert world.task(task["task_id"])["status"] == "done"
    assert world.hosting.count("create_variant") == 1


def test_cancel_tears_down_the_green_variant_once_it_stops_creating(world: World) -> None:
    blue = first_deploy(world)
    world.hosting.script(creation_seconds=1800)
    task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting")
    green = world.task(task["task_id"])["endpoint_name"]
    answer = world.post(f"/deploy/{task['task_id']}/cancel")
    assert answer.status_code == 200, answer.json_body
    world.pump.run()
    canceled = world.task(task["task_id"])
    assert canceled["status"] == "canceled"
    # SageMaker refused to delete it while Creating; the teardown came back until it could.
    assert world.hosting.count("delete_variant", green) > 1
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert not any(d.handler.endswith("dead_letters") for d in world.pump.deliveries)
    again = world.post(f"/deploy/{task['task_id']}/cancel")  # a retry: answered, not refused
    assert again.status_code == 200 and again.json_body["status"] == "canceled"
    assert again.json_body["events"] == canceled["events"]
    world.assert_no_leaks()


def test_cancel_before_start_and_of_unknown_task(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    assert world.post(f"/deploy/{task['task_id']}/cancel").json_body["status"] == "canceled"
    world.pump.run()
    assert world.hosting.count("create_variant") == 0
    assert world.post("/deploy/nope/cancel").status_code == 404
    assert first_deploy(world)["status"] == "done"  # the model is free again


def test_rollback_swaps_back_and_removes_the_rolled_away_variant(world: World) -> None:
    blue = first_deploy(world)
    green_task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(green_task["task_id"])["status"] == "done")
    green = world.task(green_task["task_id"])
    before = world.get("/models/m1").json_body
    assert (before["task_id"], before["previous_task_id"]) == (green["task_id"], blue["task_id"])
    answer = world.post("/models/m1/rollback")
    assert answer.status_code == 200, answer.json_body
    assert answer.json_body["endpoint_name"] == blue["endpoint_name"]
    # `models` names the task whose variant is live again, not the one rolled back.
    assert (answer.json_body["task_id"], answer.json_body["previous_task_id"]) == (blue["task_id"], None)
    assert [m["task_id"] for m in world.get("/models").json_body["models"]] == [blue["task_id"]]
    world.pump.run()
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    assert green["endpoint_name"] not in world.hosting.endpoint_names()
    # The bake-period teardown of blue found it live again and left it alone.
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    again = world.post("/models/m1/rollback")
    assert again.status_code == 409 and "no previous variant" in again.json_body["detail"]
    assert world.post("/models/nope/rollback").status_code == 404
    world.assert_no_leaks()


def ssm_names(world: World, model: str = "m1") -> str | None:
    """What every `embedder()` resolves: the alias's copy in SSM, read as a client reads it."""
    name = world.adapters.mirror.parameter_name(model)  # type: ignore[attr-defined]
    try:
        return str(boto3.client("ssm", region_name="us-east-1").get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError:
        return None


def throttle_ssm_writes(world: World, times: int = 1) -> None:
    """SSM refuses the next PutParameter(s) of the product as it does under load (TooManyUpdates)."""
    left = [times]

    def refuse(**_: object) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise ClientError(
                {"Error": {"Code": "TooManyUpdates", "Message": "There are concurrent updates for a resource "
                           "that supports one update at a time."}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                "PutParameter",
            )

    client = world.adapters.mirror._client  # type: ignore[attr-defined]
    client.meta.events.register("before-call.ssm.PutParameter", refuse)


def rolled_back_with_its_mirror_write_refused(world: World) -> tuple[dict, dict]:
    """A rollback after the deploy ended (blue's teardown not yet run) whose alias write landed and
    whose SSM write was refused: the caller saw a 503."""
    blue = first_deploy(world)
    green_task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(green_task["task_id"])["status"] == "done")
    green = world.task(green_task["task_id"])
    assert ssm_names(world) == green["endpoint_name"]
    throttle_ssm_writes(world)
    answer = world.post("/models/m1/rollback")
    assert answer.status_code == 503, answer.json_body
    assert "TooManyUpdates" in answer.json_body["detail"]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]  # the alias moved
    assert ssm_names(world) == green["endpoint_name"]  # its copy did not
    return blue, green


def test_a_retried_rollback_whose_mirror_write_failed_finishes_it_and_answers_200(world: World) -> None:
    blue, green = rolled_back_with_its_mirror_write_refused(world)
    again = world.post("/models/m1/rollback")
    assert again.status_code == 200, again.json_body
    assert again.json_body["endpoint_name"] == blue["endpoint_name"]
    assert ssm_names(world) == blue["endpoint_name"]
    world.pump.run()
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    assert world.hosting.count("delete_variant", green["endpoint_name"]) >= 1
    assert ssm_names(world) == blue["endpoint_name"]
    # Once the copy agrees, a rollback has nothing left to do: the documented 409.
    third = world.post("/models/m1/rollback")
    assert third.status_code == 409 and "no previous variant" in third.json_body["detail"]


def test_a_rollback_whose_mirror_write_failed_converges_before_the_rolled_away_variant_goes(world: World) -> None:
    """Nobody retries: the teardown of the variant rolled away from publishes the alias again before
    it removes the endpoint the copy still names, so no `embedder()` resolves a deleted endpoint."""
    blue, green = rolled_back_with_its_mirror_write_refused(world)
    world.pump.run()
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    assert world.hosting.count("delete_variant", green["endpoint_name"]) >= 1
    assert ssm_names(world) == blue["endpoint_name"]


@pytest.mark.parametrize("retried", [False, True])
def test_a_rollback_during_the_bake_whose_mirror_write_failed_converges(world: World, retried: bool) -> None:
    """Retried at once, the rollback finishes itself; else the baking task's next look publishes it."""
    blue = first_deploy(world, bake_seconds=3600)
    green_task = world.deploy("m1", bake_seconds=3600)
    world.pump.run(until=lambda: world.task(green_task["task_id"])["stage"] == "baking")
    green = world.task(green_task["task_id"])
    throttle_ssm_writes(world)
    assert world.post("/models/m1/rollback").status_code == 503
    assert ssm_names(world) == green["endpoint_name"]
    if retried:
        again = world.post("/models/m1/rollback")
        assert again.status_code == 200, again.json_body
        assert again.json_body["endpoint_name"] == blue["endpoint_name"]
        assert ssm_names(world) == blue["endpoint_name"]
    world.pump.run(until=lambda: world.task(green_task["task_id"])["status"] == "canceled")
    assert ssm_names(world) == blue["endpoint_name"]
    world.pump.run()
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    assert ssm_names(world) == blue["endpoint_name"]


def test_delete_while_live_clears_alias_then_removes_everything(world: World) -> None:
    first_deploy(world)
    green_task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(green_task["task_id"])["status"] == "done")
    assert len(world.hosting.endpoint_names()) == 2  # blue still baking
    answer = world.post("/delete", {"model_id": "m1", "reason": "retired"})
    assert answer.status_code == 200
    world.pump.run()
    deleted = world.get("/delete-status/m1").json_body
    assert deleted["status"] == "done", deleted
    assert stages(deleted) == ["queued", "unaliasing", "tearing_down", "finished"]
    assert world.hosting.owned_resources() == []
    assert world.get("/models/m1").status_code == 404
    assert world.get("/models").json_body == {"models": []}
    # The model's item (its lease and alias) goes with it: model items do not pile up.
    import boto3

    models = boto3.resource("dynamodb", region_name="us-east-1").Table(world.adapters.settings.models_table)
    assert "Item" not in models.get_item(Key={"embedding_model_id": "m1"}, ConsistentRead=True)
    world.assert_no_leaks()


def test_delete_of_a_model_with_nothing_deployed_is_refused(world: World) -> None:
    answer = world.post("/delete", {"model_id": "ghost"})
    world.pump.run()
    task = world.task(answer.json_body["task_id"], kind="delete")
    assert task["status"] == "refused"
    assert "has nothing deployed" in task["detail"]


def test_every_message_delivered_twice_gives_the_same_result(world: World) -> None:
    world.pump.duplicate_every_message = True
    blue = first_deploy(world, bake_seconds=60)
    green_task = world.deploy("m1", bake_seconds=60)
    world.pump.run()
    green = world.task(green_task["task_id"])
    assert green["status"] == "done"
    assert world.hosting.endpoint_names() == [green["endpoint_name"]]
    assert world.hosting.part_creations["endpoint"] == 2  # one per deploy, never a duplicate
    assert blue["endpoint_name"] not in world.hosting.endpoint_names()
    world.post("/delete", {"model_id": "m1"})
    world.pump.run()
    assert world.hosting.owned_resources() == []
    world.assert_no_leaks()


def test_retryable_faults_are_redelivered_and_recover(world: World) -> None:
    world.hosting.fail("create_variant", RetryableError("ThrottlingException"), times=2)
    world.hosting.fail("invoke", RetryableError("timed out"), times=1)
    done = first_deploy(world)
    assert done["status"] == "done"
    failed = [d for d in world.pump.deliveries if d.outcome == "failed"]
    assert len(failed) == 3


def sagemaker_answers(code: str, message: str, doing: str) -> Exception:
    """What SageMakerHosting raises when SageMaker answers `code`: the real adapter's own classification."""
    return sagemaker_refusal(ClientError({"Error": {"Code": code, "Message": message}}, "CreateEndpoint"), doing)


def test_terminal_hosting_fault_fails_and_cleans_up(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    rejected = sagemaker_answers(
        "ValidationException",
        "The execution role ARN arn:aws:iam::123456789012:role/gone is invalid.",
        "create endpoint `m1`",
    )
    assert type(rejected) is TerminalHostingError  # neither retryable nor a quota: the deploy's own fault
    world.hosting.fail("create_variant", rejected, after="model")
    task = world.deploy("m1")
    world.pump.run()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed"
    assert "role/gone is invalid" in failed["detail"] and "Check the deploy config" in failed["detail"]
    assert world.hosting.owned_resources() == []


def test_poison_message_lands_in_the_dlq_and_fails_the_task(world: World) -> None:
    world.hosting.fail("describe", RetryableError("SageMaker is down"), times=None)
    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    world.pump.run()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed"
    assert "esdeploy-test-deploy-tasks-dlq" in failed["detail"] and task["task_id"] in failed["detail"]
    world.hosting.clear_faults()
    world.pump.run()
    assert world.hosting.owned_resources() == []
    assert any(d.handler == "deploy_dead_letters" for d in world.pump.deliveries)


def test_teardown_of_an_endpoint_still_creating_is_deferred_not_dead_lettered(world: World) -> None:
    blue = first_deploy(world)
    world.hosting.script(creation_seconds=3 * 3600)  # longer than the queue's five receives could wait
    task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting")
    green = world.task(task["task_id"])["endpoint_name"]
    world.post(f"/deploy/{task['task_id']}/cancel")
    world.pump.run(max_deliveries=1000)
    assert world.task(task["task_id"])["status"] == "canceled"
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    refused = [d for d in world.pump.deliveries if d.body.get("variant") == green and d.body.get("attempt")]
    assert refused, "the teardown was never deferred: was the green deleted while Creating?"
    assert not any(d.handler.endswith("dead_letters") for d in world.pump.deliveries)
    world.assert_no_leaks()


def test_a_delete_while_a_failed_green_is_still_creating_finishes_once_it_settles(world: World) -> None:
    blue = first_deploy(world)
    world.hosting.script(creation_seconds=2 * 3600)
    task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(task["task_id"])["status"] == "failed")  # the deadline
    green = world.task(task["task_id"])["endpoint_name"]
    assert sorted(world.hosting.endpoint_names()) == sorted([blue["endpoint_name"], green])
    answer = world.post("/delete", {"model_id": "m1", "reason": "retired"})
    assert answer.status_code == 200, answer.json_body
    world.pump.run()
    deleted = world.task(answer.json_body["task_id"], kind="delete")
    assert deleted["status"] == "done", deleted
    assert world.hosting.owned_resources() == []
    assert not any(d.handler.endswith("dead_letters") for d in world.pump.deliveries)


def test_task_outcomes_become_cloudwatch_metrics(world: World, capfd) -> None:
    capfd.readouterr()
    world.hosting.script(outcome=EndpointState.FAILED, reason="bad image")
    world.upload_artifact("m1", manifest_for("m1"))
    world.deploy("m1")
    world.pump.run()
    import json

    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    failed = [line for line in lines if "TasksFailed" in line]
    assert len(failed) == 1
    assert failed[0]["service"] == "esdeploy" and failed[0]["TasksFailed"] == [1.0]
    assert failed[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "esdeploy/dev"  # the stage config


def test_invoke_through_the_alias_reaches_the_live_variant(world: World) -> None:
    done = first_deploy(world)
    answer = world.post("/models/m1/invoke", {"inputs": ["hello", "world"]})
    assert answer.status_code == 200, answer.json_body
    assert answer.json_body["endpoint_name"] == done["endpoint_name"]
    assert len(answer.json_body["embeddings"]) == 2 and answer.json_body["dimension"] == 16
    assert world.post("/models/nope/invoke", {"inputs": ["x"]}).status_code == 404
    world.hosting.script(answers=[Answer.INVOCATION_ERROR])
    failed = world.post("/models/m1/invoke", {"inputs": ["x"]})
    assert failed.status_code == 502 and failed.json_body["detail"]


def test_automation_intake_invalid_message_ends_in_the_requests_dlq(world: World) -> None:
    import json

    from tests.scenarios.harness import Pump

    settings = world.adapters.settings
    requests_url = world.urls.requests
    dlq_url = world.urls.dead_letters[settings.requests_queue]
    intake = Pump(client=world.client, sqs=world.sqs, clock=world.clock, handlers={requests_url: "requests_worker"})
    world.upload_artifact("m1", manifest_for("m1"))
    world.sqs.send_message(QueueUrl=requests_url, MessageBody=json.dumps({"action": "promote", "model_id": "m1"}))
    world.sqs.send_message(
        QueueUrl=requests_url, MessageBody=json.dumps({"action": "deploy", "model_id": "m1", "id": "auto-1"})
    )
    intake.run()
    failed = [d for d in intake.deliveries if d.outcome == "failed"]
    assert len(failed) == 5  # the queue's max receive count, then SQS's redrive takes it
    dead = world.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["action"] for m in dead] == ["promote"]
    world.pump.run()
    assert world.task("auto-1")["status"] == "done"


def test_green_starts_at_as_many_instances_as_blue_runs_now(world: World) -> None:
    blue = first_deploy(world)
    world.hosting.scale(blue["endpoint_name"], 3)  # scaled up under load since it went live
    matched = world.deploy("m1")
    world.pump.run(until=lambda: world.task(matched["task_id"])["status"] == "done")
    green = world.task(matched["task_id"])
    spec = world.hosting.spec(green["endpoint_name"])
    assert spec is not None and spec.initial_instance_count == 3
    assert green["config"]["initial_instance_count"] == 3
    assert any(f"green starts at 3 instance(s), as many as the live {blue['endpoint_name']} runs now"
               in (e.get("detail") or "") for e in green["events"])
    world.pump.run()
    told = world.deploy("m1", initial_instance_count=2)  # the deploy's own count wins
    world.pump.run()
    spec = world.hosting.spec(world.task(told["task_id"])["endpoint_name"])
    assert spec is not None and spec.initial_instance_count == 2


def test_over_quota_is_refused_naming_the_quota_and_leaves_nothing(world: World) -> None:
    blue = first_deploy(world)
    # SageMaker's ResourceLimitExceeded as the real adapter types it (a QuotaExceededError).
    over_quota = sagemaker_answers(
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.g5.2xlarge for endpoint usage' is 0 Instances",
        "create endpoint `m1`",
    )
    world.hosting.fail("create_variant", over_quota, after="endpoint_config")
    task = world.deploy("m1", instance_type="ml.g5.2xlarge", initial_instance_count=2)
    world.pump.run()
    refused = world.task(task["task_id"])
    assert refused["status"] == "refused", refused
    detail = refused["detail"]
    assert "refused by the SageMaker quota 'ml.g5.2xlarge for endpoint usage'" in detail
    assert "2 x ml.g5.2xlarge were asked for" in detail
    assert "https://console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas" in detail
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    assert [r.name for r in world.hosting.owned_resources()] == [blue["endpoint_name"]] * 3  # nothing half-made
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]


def test_a_count_quota_is_named_as_sagemaker_named_it_with_what_helps(world: World) -> None:
    """ResourceLimitExceeded also comes from the count of models, endpoint configurations or endpoints:
    the detail names that quota, not the instance type's, and does not advise another instance type."""
    blue = first_deploy(world)
    message = (
        "The account-level service limit 'Number of models' is 1000 Models, with current utilization of "
        "1000 Models and a request delta of 1 Models. Please use AWS Service Quotas to request an increase "
        "for this quota."
    )
    world.hosting.fail("create_variant", sagemaker_answers("ResourceLimitExceeded", message, "create model `m1`"))
    task = world.deploy("m1", instance_type="ml.g5.2xlarge")
    world.pump.run()
    refused = world.task(task["task_id"])
    assert refused["status"] == "refused", refused
    detail = refused["detail"]
    assert detail.startswith("refused by the SageMaker quota 'Number of models'")
    assert "search 'Number of models'" in detail and "no longer uses" in detail
    assert "for endpoint usage" not in detail and "were asked for" not in detail
    assert detail.endswith(f"SageMaker said: {message}")
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]


def scalable_targets(world: World) -> dict[str, tuple[int, int]]:
    client = world.adapters.scaling._client  # type: ignore[attr-defined]
    found = client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    return {t["ResourceId"].split("/")[1]: (t["MinCapacity"], t["MaxCapacity"]) for t in found}


def test_autoscaling_is_registered_on_green_carried_over_and_removed_with_its_variant(world: World) -> None:
    scaling = {"min_instances": 2, "max_instances": 4, "target_invocations_per_instance": 150}
    blue = first_deploy(world, bake_seconds=60, autoscaling=scaling)
    assert world.hosting.spec(blue["endpoint_name"]).initial_instance_count == 2  # type: ignore[union-attr]
    assert scalable_targets(world) == {blue["endpoint_name"]: (2, 4)}
    assert "autoscaling 2-4 instances at 150 invocations per instance a minute (config.autoscaling)" in blue["detail"]

    carried = world.deploy("m1", bake_seconds=60)
    world.pump.run(until=lambda: world.task(carried["task_id"])["stage"] == "baking")
    green = world.task(carried["task_id"])
    assert f"(carried over from {blue['endpoint_name']})" in green["detail"]
    # Registered before the alias moved to it; blue keeps its own until its teardown.
    assert scalable_targets(world) == {blue["endpoint_name"]: (2, 4), green["endpoint_name"]: (2, 4)}
    world.pump.run()
    assert scalable_targets(world) == {green["endpoint_name"]: (2, 4)}
    policy = world.adapters.scaling.policy_of(green["endpoint_name"])
    assert policy is not None and policy.target_invocations_per_instance == 150

    world.post("/delete", {"model_id": "m1"})
    world.pump.run()
    assert scalable_targets(world) == {}
    assert world.hosting.owned_resources() == []


def test_a_deploy_without_autoscaling_over_a_blue_without_any_registers_none(world: World) -> None:
    first_deploy(world, bake_seconds=0)
    again = first_deploy(world, bake_seconds=0)
    assert "autoscaling" not in again["detail"]
    world.pump.run()
    assert scalable_targets(world) == {}


@pytest.mark.parametrize(
    ("autoscaling", "field", "needle"),
    [
        ({"min_instances": 3, "max_instances": 2, "target_invocations_per_instance": 10},
         "config.autoscaling.max_instances", "below min_instances 3"),
        ({"min_instances": 1, "max_instances": 50, "target_invocations_per_instance": 10},
         "config.autoscaling.max_instances", "over the stage's limit of"),
        ({"min_instances": 1, "max_instances": 2, "target_invocations_per_instance": 0},
         "config.autoscaling.target_invocations_per_instance", "greater than 0"),
        ({"min_instances": 1, "max_instances": 2}, "config.autoscaling.target_invocations_per_instance", "required"),
    ],
)
def test_bad_autoscaling_is_a_422_naming_the_field(world: World, autoscaling: dict, field: str, needle: str) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    answer = world.post("/deploy", {"embedding_model_id": "m1", "config": {"autoscaling": autoscaling}})
    assert answer.status_code == 422, answer.json_body
    assert answer.json_body["field"] == field and needle in answer.json_body["detail"]
