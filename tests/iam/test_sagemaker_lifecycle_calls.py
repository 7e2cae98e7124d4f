"""The lifecycle through the real handlers and SageMakerHosting on moto: every call each function
makes is allowed by that function's own policy, and every grant of every policy is needed.

Each scenario asserts what a user would see; the IAM recorder (tests/conftest.py) fails the test
on any call our policies would deny, naming the call and the statements it considered.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from chalicelib.adapters.queue_messages import to_body
from chalicelib.config import Settings
from chalicelib.domain.messages import TeardownVariant
from chalicelib.domain.models import parse_iso
from chalicelib.domain.names import variant_alarm_names
from esdeploy.iam.aws_checks import OWN_CHECKS
from esdeploy.iam.code_calls import Needed
from esdeploy.iam.evaluation import glob_match
from tests.iam.lifecycle import INSTANCE_TYPE, REFUSED_INSTANCE_TYPE, SageMakerWorld, WarpClock
from tests.iam.needed import entries, stale
from tests.iam.policies import StackValues, function_names, function_policy, stage_names
from tests.iam.recorder import Recorder
from tests.iam.runtime import runtime_authorizations, runtime_decisions


@contextlib.contextmanager
def fresh_world(settings: Settings) -> Iterator[SageMakerWorld]:
    from app import app
    from chalicelib import wiring
    from esdeploy.local.embedded_aws import create_resources, keep_dynamodb_atomic

    keep_dynamodb_atomic()
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        urls = create_resources(session, os.environ)  # the test stage's environment (the settings fixture's)
        with Client(app) as client:
            world = SageMakerWorld(client=client, settings=settings, session=session, clock=WarpClock(), urls=urls)
            try:
                yield world
                world.run_until()
                world.assert_no_leaks()
            finally:
                wiring.use(None)


def failed_deliveries(world: SageMakerWorld) -> list[Any]:
    return [d for d in world.pump.deliveries if d.outcome == "failed"]


def first_deploy(world: SageMakerWorld, model: str = "m1", **config: Any) -> dict[str, Any]:
    world.upload(model)
    world.answer_next_invocation(model)
    task = world.deploy(model, **config)
    world.run_until(lambda: world.task(task["task_id"])["status"] not in ("pending", "processing"))
    done = world.task(task["task_id"])
    assert done["status"] == "done", done
    return done


# ---- scenarios: each ends with its queues drained and no resource leaked (fresh_world) ------------

def deploy_and_invoke_through_the_alias(world: SageMakerWorld) -> None:
    done = first_deploy(world)
    world.answer_next_invocation("m1", ["hello"])
    answer = world.post("/models/m1/invoke", {"inputs": ["hello"]})
    assert answer.status_code == 200, answer.json_body
    assert answer.json_body["endpoint_name"] == done["endpoint_name"]
    assert world.resource_names()["endpoints"] == [done["endpoint_name"]]
    assert world.get("/deploy-status/m1").json_body["task_id"] == done["task_id"]
    assert [m["endpoint_name"] for m in world.get("/models").json_body["models"]] == [done["endpoint_name"]]


def redeploy_tears_down_blue_after_the_bake(world: SageMakerWorld) -> None:
    scaling = {"min_instances": 1, "max_instances": 3, "target_invocations_per_instance": 200}
    blue = first_deploy(world, bake_seconds=1200, autoscaling=scaling)
    green = first_deploy(world, bake_seconds=1200)  # carries blue's autoscaling over
    world.run_until()  # the bake passes on the warp clock; blue's teardown runs
    assert world.resource_names()["endpoints"] == [green["endpoint_name"]]
    assert blue["endpoint_name"] not in world.resource_names()["models"]
    scaling = world.session.client("application-autoscaling")
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t["ResourceId"] for t in targets] == [f"endpoint/{green['endpoint_name']}/variant/AllTraffic"]


def rollback_during_the_bake_then_the_rolled_away_green_goes(world: SageMakerWorld) -> None:
    blue = first_deploy(world, bake_seconds=3600)
    world.upload("m1")
    world.answer_next_invocation("m1")
    green = world.deploy("m1", bake_seconds=3600)
    world.run_until(lambda: world.task(green["task_id"])["stage"] == "baking")
    answer = world.post("/models/m1/rollback")
    assert answer.status_code == 200, answer.json_body
    assert answer.json_body["endpoint_name"] == blue["endpoint_name"]
    world.run_until()
    assert world.task(green["task_id"])["status"] == "canceled"
    assert world.resource_names()["endpoints"] == [blue["endpoint_name"]]
    assert alarm_names(world) == sorted(variant_alarm_names(blue["endpoint_name"]))


def a_rollback_whose_ssm_write_failed_converges_before_the_rolled_away_green_goes(world: SageMakerWorld) -> None:
    """SSM refuses the rollback's mirror write (TooManyUpdates): the teardown worker reads the copy and
    publishes the alias again before it deletes the endpoint the copy names; a later rollback reads
    the copy to tell a retry from a second rollback."""
    from botocore.exceptions import ClientError

    from chalicelib import wiring

    blue = first_deploy(world, bake_seconds=600)
    green = first_deploy(world, bake_seconds=600)  # done; blue's teardown not yet run
    refused = [False]

    def refuse_once(**_: object) -> None:
        if not refused[0]:
            refused[0] = True
            raise ClientError({"Error": {"Code": "TooManyUpdates", "Message": "concurrent updates"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutParameter")

    wiring.adapters().mirror._client.meta.events.register(  # type: ignore[attr-defined]
        "before-call.ssm.PutParameter", refuse_once)
    assert world.post("/models/m1/rollback").status_code == 503
    world.run_until()
    parameter = world.session.client("ssm").get_parameter(Name=f"{world.settings.ssm_prefix}/models/m1/endpoint")
    assert parameter["Parameter"]["Value"] == blue["endpoint_name"]
    assert world.resource_names()["endpoints"] == [blue["endpoint_name"]]
    assert green["endpoint_name"] not in world.resource_names()["models"]
    again = world.post("/models/m1/rollback")
    assert again.status_code == 409 and "no previous variant" in again.json_body["detail"], again.json_body


def an_alarm_during_the_bake_rolls_back(world: SageMakerWorld) -> None:
    """CloudWatch's event wakes the baking task (the deploy worker scans the held leases), which reads
    the alarm, moves the alias back and hands green (and its alarms) to teardown."""
    blue = first_deploy(world, bake_seconds=3600)
    world.upload("m1")
    world.answer_next_invocation("m1")
    green = world.deploy("m1", bake_seconds=3600, rollback_alarms=["checkout-errors"])
    world.run_until(lambda: world.task(green["task_id"])["stage"] == "baking")
    five_xx = variant_alarm_names(world.task(green["task_id"])["endpoint_name"])[0]
    cloudwatch = world.session.client("cloudwatch")
    cloudwatch.set_alarm_state(AlarmName=five_xx, StateValue="ALARM", StateReason="Threshold Crossed: 1 datapoint")
    world.sqs.send_message(QueueUrl=world.urls.deploy, MessageBody=json.dumps(alarm_state_change(
        five_xx, "ALARM", "Threshold Crossed: 1 datapoint", world.clock.now(), "123456789012", "us-east-1")))
    world.run_until()
    failed = world.task(green["task_id"])
    assert failed["status"] == "failed" and five_xx in failed["detail"], failed
    assert "checkout-errors does not exist" in failed["events"][-3]["detail"]
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert world.resource_names()["endpoints"] == [blue["endpoint_name"]]
    assert alarm_names(world) == sorted(variant_alarm_names(blue["endpoint_name"]))


def a_bake_cut_short_by_the_dead_letter_queue_keeps_green_and_removes_blue_at_its_end(world: SageMakerWorld) -> None:
    """SQS gives up on a look at the alarms: the dead-letter handler ends the task, green stays live
    and blue's teardown waits for the bake's end (the teardown worker re-sends it in hops)."""
    blue = first_deploy(world, bake_seconds=1200)
    world.upload("m1")
    world.answer_next_invocation("m1")
    green = world.deploy("m1", bake_seconds=1200)
    world.run_until(lambda: world.task(green["task_id"])["stage"] == "baking")
    dlq = world.urls.dead_letters[world.settings.deploy_queue]
    for message in world.sqs.receive_message(QueueUrl=world.urls.deploy, MaxNumberOfMessages=10)["Messages"]:
        world.sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"])
        world.sqs.delete_message(QueueUrl=world.urls.deploy, ReceiptHandle=message["ReceiptHandle"])
    live_at = world.task(green["task_id"])["live_at"]
    world.run_until()
    failed = world.task(green["task_id"])
    assert failed["status"] == "failed" and "stays live" in failed["detail"], failed
    assert world.get("/models/m1").json_body["endpoint_name"] == failed["endpoint_name"]
    assert world.resource_names()["endpoints"] == [failed["endpoint_name"]]
    assert blue["endpoint_name"] not in world.resource_names()["models"]
    assert (world.clock.now() - parse_iso(live_at)).total_seconds() >= 1200  # not before the bake's end


def alarm_names(world: SageMakerWorld) -> list[str]:
    alarms = world.session.client("cloudwatch").describe_alarms()["MetricAlarms"]
    return sorted(a["AlarmName"] for a in alarms)


def green_failing_the_smoke_test_is_torn_down(world: SageMakerWorld) -> None:
    blue = first_deploy(world)
    world.upload("m1")
    world.answer_next_invocation("m1", good=False)
    task = world.deploy("m1")
    world.run_until()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed" and "cosine" in failed["detail"], failed
    assert world.resource_names()["endpoints"] == [blue["endpoint_name"]]


def missing_artifact_fails_naming_it(world: SageMakerWorld) -> None:
    """S3 answers 404 (not 403) for a missing key only to a caller that may list the bucket: the API
    function reading a latest.json that is not there, and the deploy worker a pinned artifact gone since."""
    answer = world.post("/deploy", {"embedding_model_id": "never-uploaded", "config": {"instance_type": INSTANCE_TYPE}})
    assert answer.status_code == 422, answer.json_body
    assert "models/never-uploaded/latest.json does not exist" in answer.json_body["detail"]
    url = world.upload("m1")
    task = world.deploy("m1")
    bucket, key = url[len("s3://"):].split("/", 1)
    world.s3.delete_object(Bucket=bucket, Key=key)
    world.run_until()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed", failed
    assert f"Model artifact not found at {url}" in failed["detail"], failed
    assert failed_deliveries(world) == []


def an_explicit_artifact_is_pinned_at_submit(world: SageMakerWorld) -> None:
    """The API function reads the manifest at the head of a named artifact to pin its content hash."""
    first = world.upload("m1")
    first_probes = world.probes["m1"]
    world.upload("m1")  # latest.json now names another version
    world.answer_next_invocation("m1", first_probes)
    task = world.deploy("m1", model_data_url=first)
    world.run_until()
    done = world.task(task["task_id"])
    assert done["status"] == "done", done
    assert done["config"]["model_data_url"] == first


def half_made_green_is_torn_down(world: SageMakerWorld) -> None:
    """SageMaker refuses the endpoint config after the model was made: teardown then deletes an
    endpoint and a config that never existed, and must hear "not found", not AccessDenied."""
    world.upload("m1")
    task = world.deploy("m1", instance_type=REFUSED_INSTANCE_TYPE)
    world.run_until()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed", failed
    assert "SageMaker rejected the request" in failed["detail"], failed
    assert world.resource_names() == {"models": [], "configs": [], "endpoints": []}
    assert failed_deliveries(world) == []  # nothing retried towards a DLQ


def cancelled_green_is_torn_down(world: SageMakerWorld) -> None:
    blue = first_deploy(world)
    task = world.deploy("m1")
    world.run_until(lambda: world.task(task["task_id"])["stage"] == "waiting")
    assert world.post(f"/deploy/{task['task_id']}/cancel").status_code == 200
    world.run_until()
    assert world.task(task["task_id"])["status"] == "canceled"
    assert world.resource_names()["endpoints"] == [blue["endpoint_name"]]


def delete_removes_every_variant_and_a_repeated_teardown_finds_nothing(world: SageMakerWorld) -> None:
    first_deploy(world, bake_seconds=3600)
    green = first_deploy(world, bake_seconds=3600)
    answer = world.post("/delete", {"model_id": "m1", "reason": "retired"})
    assert answer.status_code == 200, answer.json_body
    world.run_until()
    assert world.task(answer.json_body["task_id"], kind="delete")["status"] == "done"
    assert world.resource_names() == {"models": [], "configs": [], "endpoints": []}
    # SQS delivers at least once: the same teardown again, for parts that are gone.
    world.sqs.send_message(QueueUrl=world.urls.teardown, MessageBody=json.dumps(
        to_body(TeardownVariant("m1", green["endpoint_name"], reason="duplicate delivery"))))
    world.run_until()
    assert failed_deliveries(world) == []


def sweeper_rekicks_and_hands_orphans_to_teardown(world: SageMakerWorld) -> None:
    live = first_deploy(world)["endpoint_name"]
    settings = world.settings
    orphan = f"{settings.resource_prefix}-leftover-00000000-11111111"  # a crashed deploy's model
    world.sagemaker.create_model(
        ModelName=orphan, ExecutionRoleArn=settings.sagemaker_role_arn,
        PrimaryContainer={"Image": settings.default_image_uri, "ModelDataUrl": "s3://x/model.tar.gz"},
        Tags=[{"Key": "embedding_model_id", "Value": "leftover"}, {"Key": "task_id", "Value": "crashed"},
              {"Key": "managed-by", "Value": "esdeploy"}])
    world.upload("m2")
    world.answer_next_invocation("m2")
    stalled = world.deploy("m2")
    world.run_until(lambda: world.task(stalled["task_id"])["stage"] == "waiting")
    world.sqs.purge_queue(QueueUrl=world.urls.deploy)  # its poll message is lost
    # A crash after a task's last write left its live-model slot taken.
    from chalicelib import wiring

    slots = wiring.adapters().slots
    slots.reserve("crashed-model", "crashed", cap=settings.max_deployed_models)
    world.clock.advance(2 * settings.poll_max_seconds + 121)
    report = world.sweep()
    assert report == {"rekicked": [stalled["task_id"]], "orphans": [orphan]}, report
    assert "crashed-model" not in slots.holders()
    world.run_until()
    assert world.task(stalled["task_id"])["status"] == "done"
    assert orphan not in world.resource_names()["models"]
    assert live in world.resource_names()["endpoints"]


def dead_letter_handlers_fail_the_task_and_tear_down_its_green(world: SageMakerWorld) -> None:
    world.upload("m1")
    task = world.deploy("m1")
    world.run_until(lambda: world.task(task["task_id"])["stage"] == "waiting")
    # SQS gives up on the task's message: move it to the DLQ as the redrive policy would.
    dlq = world.urls.dead_letters[world.settings.deploy_queue]
    for message in world.sqs.receive_message(QueueUrl=world.urls.deploy, MaxNumberOfMessages=10)["Messages"]:
        world.sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"])
        world.sqs.delete_message(QueueUrl=world.urls.deploy, ReceiptHandle=message["ReceiptHandle"])
    world.run_until()
    failed = world.task(task["task_id"])
    assert failed["status"] == "failed" and "deploy-tasks-dlq" in failed["detail"], failed
    assert world.resource_names() == {"models": [], "configs": [], "endpoints": []}

    # The teardown DLQ: a variant teardown is only logged loudly; a delete task ends failed.
    live = first_deploy(world, "m2")
    deletion = world.post("/delete", {"model_id": "m2"}).json_body
    teardown_dlq = world.urls.dead_letters[world.settings.teardown_queue]
    for message in world.sqs.receive_message(QueueUrl=world.urls.teardown, MaxNumberOfMessages=10)["Messages"]:
        world.sqs.send_message(QueueUrl=teardown_dlq, MessageBody=message["Body"])
        world.sqs.delete_message(QueueUrl=world.urls.teardown, ReceiptHandle=message["ReceiptHandle"])
    world.sqs.send_message(QueueUrl=teardown_dlq, MessageBody=json.dumps(
        to_body(TeardownVariant("m1", "esd-gone-00000000-00000000", reason="kept failing"))))
    world.run_until()
    assert world.task(deletion["task_id"], kind="delete")["status"] == "failed"
    assert world.resource_names()["endpoints"] == [live["endpoint_name"]]  # still aliased: not a leak


def automation_intake_deploys_one_request_at_a_time(world: SageMakerWorld) -> None:
    world.upload("m3")
    world.answer_next_invocation("m3")

    def intake(request_id: str) -> None:
        world.sqs.send_message(QueueUrl=world.urls.requests, MessageBody=json.dumps(
            {"action": "deploy", "model_id": "m3", "id": request_id, "config": {"instance_type": INSTANCE_TYPE}}))

    # A request for a model never uploaded: the requests worker hears 404 for its latest.json, not 403.
    world.sqs.send_message(QueueUrl=world.urls.requests, MessageBody=json.dumps(
        {"action": "deploy", "model_id": "never-uploaded", "id": "auto-0"}))
    intake("auto-1")
    world.run_until(lambda: world.task("auto-1").get("stage") == "waiting")
    intake("auto-2")  # m3 is busy: the requests worker looks up which task holds it
    world.run_until()
    assert world.task("auto-1")["status"] == "done"
    assert world.task("auto-2").get("status") in (None, "done", "refused")  # never two deploys at once
    assert "status" not in world.task("auto-0")  # invalid: no task; it goes to the requests DLQ


SCENARIOS: dict[str, Callable[[SageMakerWorld], None]] = {
    f.__name__: f for f in (
        deploy_and_invoke_through_the_alias,
        redeploy_tears_down_blue_after_the_bake,
        rollback_during_the_bake_then_the_rolled_away_green_goes,
        a_rollback_whose_ssm_write_failed_converges_before_the_rolled_away_green_goes,
        an_alarm_during_the_bake_rolls_back,
        a_bake_cut_short_by_the_dead_letter_queue_keeps_green_and_removes_blue_at_its_end,
        green_failing_the_smoke_test_is_torn_down,
        missing_artifact_fails_naming_it,
        an_explicit_artifact_is_pinned_at_submit,
        half_made_green_is_torn_down,
        cancelled_green_is_torn_down,
        delete_removes_every_variant_and_a_repeated_teardown_finds_nothing,
        sweeper_rekicks_and_hands_orphans_to_teardown,
        dead_letter_handlers_fail_the_task_and_tear_down_its_green,
        automation_intake_deploys_one_request_at_a_time,
    )
}


Grant = tuple[str, str, str]  # (function, statement, action)
REGION, ACCOUNT = "us-east-1", "123456789012"


@dataclass
class Used:
    """What one scenario's calls were allowed by, the authorizations they needed (the list doctor
    reads), and whether SageMaker calls were among them."""

    grants: set[Grant]
    needed: set[Needed]
    saw_sagemaker: bool


# Filled as the scenarios run in this process: the tests after them read it instead of running them again.
USED_BY_SCENARIO: dict[str, Used] = {}


def run_scenario(scenario: str, settings: Settings, recorder: Recorder) -> None:
    """Run one scenario in a fresh world (it runs to its end or raises) and keep what it used."""
    before = len(recorder.calls)
    with fresh_world(settings) as world:
        SCENARIOS[scenario](world)
    calls = recorder.calls[before:]
    assert calls, "no call reached the recorder"
    used: set[Grant] = set()
    needed: set[Needed] = set()
    names = stage_names(settings, REGION, ACCOUNT)
    for evaluated in calls:
        function = evaluated.call.function or ""
        needed |= entries(function, evaluated.decisions, names)
        for authorization, decision in evaluated.decisions:
            if authorization.principal == "function" and decision.allowed:
                used |= {(function, s.where, decision.request.action) for s in decision.allowed_by}
    USED_BY_SCENARIO[scenario] = Used(used, needed, any(c.call.signing_name == "sagemaker" for c in calls))


def all_scenarios_used(settings: Settings, recorder: Recorder) -> list[Used]:
    """What every scenario used: the ones that ran in this process already (a file stays on one
    worker, in order) left it; any that did not (this test run alone, or with -k) run here."""
    for scenario in SCENARIOS:
        if scenario not in USED_BY_SCENARIO:
            run_scenario(scenario, settings, recorder)
    return [USED_BY_SCENARIO[name] for name in SCENARIOS]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_call_of_the_lifecycle_is_allowed(scenario: str, settings: Settings, iam_checked_calls: Recorder) -> None:
    run_scenario(scenario, settings, iam_checked_calls)


def test_every_grant_of_every_function_policy_is_needed(settings: Settings, iam_checked_calls: Recorder) -> None:
    """Least privilege, from the other side: each action of each statement in a function's policy
    allowed at least one call that function made in the lifecycle (or the Lambda service's own
    calls for it: logs, the SQS event source). A grant nothing uses is one to remove.

    What AWS exercises on its own for a call (esdeploy/iam/aws_checks.py: Application Auto Scaling
    validating its caller, composite alarms needing "*", the service-linked role on first use)
    counts as used: those grants are needed although no call of ours names them."""
    scenarios = all_scenarios_used(settings, iam_checked_calls)
    used: set[Grant] = set()
    for one in scenarios:
        used |= one.grants
    assert any(one.saw_sagemaker for one in scenarios), "the real adapter is not in use"
    values = StackValues.from_settings(settings, REGION, ACCOUNT)
    for function, decision in runtime_decisions(values):
        assert decision.allowed, decision.explain()
        used |= {(function, s.where, decision.request.action) for s in decision.allowed_by}
    unused = []
    for function in function_names():
        statements, _ = function_policy(function, values)
        for statement in statements:
            for action in statement.actions:
                if not any(f == function and where == statement.where and glob_match(action, a, ignore_case=True)
                           for f, where, a in used):
                    unused.append(f"{function}: {statement.where} grants {action}, which no call of it needed")
    assert unused == []


def test_the_list_doctor_simulates_is_what_the_lifecycle_needs(settings: Settings, iam_checked_calls: Recorder) -> None:
    """esdeploy/iam/code_calls.json is the one list of what each function's code (and AWS on its
    behalf, and the Lambda service) asks IAM for: `esdeploy doctor` simulates it against a deployed
    stage's roles. It must be exactly what the lifecycle needed, nothing missing and nothing stale."""
    needed: set[Needed] = set()
    for one in all_scenarios_used(settings, iam_checked_calls):
        needed |= one.needed
    names = stage_names(settings, REGION, ACCOUNT)
    values = StackValues.from_settings(settings, REGION, ACCOUNT)
    for function in function_names():
        needed |= entries(function, runtime_authorizations(values, function), names)
    aws_checked = {entry.aws_check for entry in needed if entry.aws_check}
    assert aws_checked == {check.name for check in OWN_CHECKS}, "a row of aws_checks.py no scenario exercises"
    assert stale(function_names(), needed) == []
