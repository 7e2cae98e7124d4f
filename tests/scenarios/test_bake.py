"""Scenarios of the bake (issue 13 §2) through HTTP and the intake queue, on moto (CloudWatch included):
green live in stage `baking` with blue kept, esdeploy's alarms and the deploy's own watched, an alarm
rolls the alias back, a cancel or a rollback by hand ends it, and the bake's end hands blue over."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest

from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from chalicelib.domain.models import AlarmState, parse_iso
from chalicelib.domain.names import variant_alarm_names
from tests.fakes.fake_hosting import ACCOUNT, REGION
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World
from tests.scenarios.test_crashes_and_sweeper import sweep
from tests.scenarios.test_deploy_lifecycle import first_deploy, stages

BAKE = 1200


def cloudwatch() -> Any:
    return boto3.client("cloudwatch", region_name=REGION)


def alarm_names() -> list[str]:
    return sorted(a["AlarmName"] for a in cloudwatch().describe_alarms()["MetricAlarms"])


def baking(world: World, model: str = "m1", **config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(blue, green): blue done, green live and baking (its first look at the alarms not yet due)."""
    blue = first_deploy(world, model, bake_seconds=BAKE)
    world.upload_artifact(model, manifest_for(model, version=2))
    green = world.deploy(model, bake_seconds=BAKE, **config)
    world.pump.run(until=lambda: world.task(green["task_id"])["stage"] == "baking")
    return blue, world.task(green["task_id"])


def fire(world: World, name: str, reason: str = "Threshold Crossed: 1 datapoint [12.0] > 5.0",
         event: bool = True) -> None:
    """CloudWatch moves the alarm to ALARM and (with `event`) EventBridge delivers its state change."""
    cloudwatch().set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)
    if event:
        body = alarm_state_change(name, AlarmState.ALARM, reason, world.clock.now(), ACCOUNT, REGION)
        world.sqs.send_message(QueueUrl=world.urls.deploy, MessageBody=json.dumps(body))


def test_a_quiet_bake_ends_done_and_blue_goes_after_it_with_its_alarms(world: World) -> None:
    blue, green = baking(world)
    assert (green["status"], green["stage"]) == ("processing", "baking")
    live_at = parse_iso(green["live_at"])
    assert green["events"][-1]["stage"] == "baking" and "baking until" in green["detail"]
    model = world.get("/models/m1").json_body
    assert (model["endpoint_name"], model["previous_endpoint_name"]) == (green["endpoint_name"], blue["endpoint_name"])
    # Both variants have their two alarms; blue still serves.
    assert alarm_names() == sorted([*variant_alarm_names(blue["endpoint_name"]),
                                    *variant_alarm_names(green["endpoint_name"])])
    assert sorted(world.hosting.endpoint_names()) == sorted([blue["endpoint_name"], green["endpoint_name"]])
    world.pump.run(until=lambda: world.task(green["task_id"])["status"] == "done")
    done = world.task(green["task_id"])
    assert (world.clock.now() - live_at).total_seconds() >= BAKE
    assert done["live_at"] == green["live_at"]  # when it went live, not when the bake ended
    assert stages(done)[-3:] == ["swapping", "baking", "finished"]
    assert "no watched alarm in ALARM" in done["detail"] and blue["endpoint_name"] in done["detail"]
    world.pump.run()
    assert world.hosting.endpoint_names() == [green["endpoint_name"]]
    assert alarm_names() == sorted(variant_alarm_names(green["endpoint_name"]))
    assert world.get("/models/m1").json_body["previous_endpoint_name"] is None


def test_an_alarm_during_the_bake_puts_blue_back_and_fails_naming_it(world: World) -> None:
    blue, green = baking(world)
    five_xx = variant_alarm_names(green["endpoint_name"])[0]
    fire(world, five_xx)
    world.pump.run()
    failed = world.task(green["task_id"])
    assert failed["status"] == "failed", failed
    assert five_xx in failed["detail"] and "Threshold Crossed: 1 datapoint [12.0] > 5.0" in failed["detail"]
    assert "went to ALARM at 20" in failed["detail"]  # the time CloudWatch says it changed
    model = world.get("/models/m1").json_body
    assert (model["endpoint_name"], model["previous_endpoint_name"]) == (blue["endpoint_name"], None)
    # The task named is the one whose variant is live again, not the one rolled back.
    assert model["task_id"] == blue["task_id"]
    assert [m["task_id"] for m in world.get("/models").json_body["models"]] == [blue["task_id"]]
    parameter = world.adapters.mirror.parameter_name("m1")  # type: ignore[attr-defined]
    published = boto3.client("ssm", region_name=REGION).get_parameter(Name=parameter)["Parameter"]["Value"]
    assert published == blue["endpoint_name"]  # clients resolving through SSM get blue again
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]
    assert alarm_names() == sorted(variant_alarm_names(blue["endpoint_name"]))
    assert world.adapters.locks.get("m1") is None
    # Embedding goes to blue again.
    assert world.post("/models/m1/invoke", {"inputs": ["a"]}).json_body["endpoint_name"] == blue["endpoint_name"]


def test_an_alarm_event_wakes_the_task_before_its_next_look(world: World) -> None:
    _blue, green = baking(world)
    fired_at = world.clock.now()
    fire(world, variant_alarm_names(green["endpoint_name"])[1], reason="Threshold Crossed: latency")
    world.pump.run(until=lambda: world.task(green["task_id"])["status"] == "failed")
    assert (world.clock.now() - fired_at).total_seconds() < world.adapters.settings.bake_check_seconds


def test_without_the_event_the_next_look_still_finds_the_alarm(world: World) -> None:
    """EventBridge's event is a hint: a lost one costs at most one hop."""
    _blue, green = baking(world)
    fire(world, variant_alarm_names(green["endpoint_name"])[0], event=False)
    fired_at = world.clock.now()
    world.pump.run(until=lambda: world.task(green["task_id"])["status"] == "failed")
    assert (world.clock.now() - fired_at).total_seconds() <= world.adapters.settings.bake_check_seconds + 1


def test_a_listed_rollback_alarm_firing_rolls_back_and_a_missing_one_is_named(world: World) -> None:
    cloudwatch().put_metric_alarm(
        AlarmName="checkout-errors", Namespace="Shop", MetricName="CheckoutErrors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )
    blue, green = baking(world, rollback_alarms=["checkout-errors", "typo-alarm"])
    assert green["config"]["rollback_alarms"] == ["checkout-errors", "typo-alarm"]
    assert "typo-alarm does not exist in CloudWatch" in green["detail"]
    # Only alarms named like our resources wake the bake through EventBridge (infra/template.yaml).
    assert "(checkout-errors, typo-alarm read at each look only: a state change wakes the bake at once " \
        "only for alarms named esd-*)" in green["detail"]
    fire(world, "checkout-errors", reason="Threshold Crossed: checkout errors")
    world.pump.run()
    failed = world.task(green["task_id"])
    assert failed["status"] == "failed" and "checkout-errors" in failed["detail"], failed
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert "checkout-errors" in alarm_names()  # the caller's alarm is not ours to delete


def test_an_unwatched_alarm_changes_nothing(world: World) -> None:
    cloudwatch().put_metric_alarm(
        AlarmName="someone-elses", Namespace="Shop", MetricName="Other", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )
    _blue, green = baking(world)
    fire(world, "someone-elses")
    world.pump.run(until=lambda: world.task(green["task_id"])["status"] != "processing")
    assert world.task(green["task_id"])["status"] == "done"


def test_cancel_during_the_bake_is_a_rollback(world: World) -> None:
    blue, green = baking(world)
    answer = world.post(f"/deploy/{green['task_id']}/cancel")
    assert answer.status_code == 200, answer.json_body
    world.pump.run()
    canceled = world.task(green["task_id"])
    assert canceled["status"] == "canceled" and "during the bake" in canceled["detail"], canceled
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]


def test_a_rollback_by_hand_during_the_bake_then_an_alarm_changes_nothing_more(world: World) -> None:
    blue, green = baking(world)
    rolled = world.post("/models/m1/rollback")
    assert rolled.status_code == 200, rolled.json_body
    assert rolled.json_body["endpoint_name"] == blue["endpoint_name"]
    fire(world, variant_alarm_names(green["endpoint_name"])[0])  # green misbehaves, too late to matter
    world.pump.run()
    canceled = world.task(green["task_id"])
    assert canceled["status"] == "canceled" and "rolled back by hand" in canceled["detail"], canceled
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]
    assert world.hosting.endpoint_names() == [blue["endpoint_name"]]  # blue kept, green gone
    green_teardowns = [
        d for d in world.pump.deliveries
        if d.body.get("action") == "teardown_variant" and d.body.get("variant") == green["endpoint_name"]
    ]
    assert len(green_teardowns) == 1
    assert world.hosting.count("delete_variant", green["endpoint_name"]) == 1


def test_another_deploy_or_a_delete_during_the_bake_is_a_409_naming_the_baking_task(world: World) -> None:
    _blue, green = baking(world)
    for path, body in (("/deploy", {"embedding_model_id": "m1"}), ("/delete", {"embedding_model_id": "m1"})):
        busy = world.post(path, body)
        assert busy.status_code == 409, busy.json_body
        assert busy.json_body["active_task_id"] == green["task_id"]
        detail = busy.json_body["detail"]
        assert "baking" in detail and "a cancel during the bake rolls back" in detail, detail
    # Longer than the sweeper's stall window into the bake: each look is a write, so it is not stalled.
    quiet_for = timedelta(seconds=world.adapters.settings.stall_seconds + 60)
    world.pump.run(until=lambda: world.clock.now() >= parse_iso(green["live_at"]) + quiet_for)
    assert world.task(green["task_id"])["stage"] == "baking"
    assert sweep(world)["rekicked"] == []


def test_a_first_deploy_is_done_at_the_swap_with_its_alarms_on_it(world: World) -> None:
    done = first_deploy(world, bake_seconds=BAKE)
    assert "live_at" in done and stages(done)[-2:] == ["swapping", "finished"]
    assert "nothing to roll back to, so no bake" in done["detail"]
    assert alarm_names() == sorted(variant_alarm_names(done["endpoint_name"]))
    deletion = world.post("/delete", {"embedding_model_id": "m1"}).json_body
    world.pump.run()
    assert world.task(deletion["task_id"], kind="delete")["status"] == "done"
    assert alarm_names() == []  # deleted with the variant


def test_the_intake_deploys_with_rollback_alarms_and_an_alarm_rolls_it_back(world: World) -> None:
    blue = first_deploy(world, bake_seconds=BAKE)
    world.upload_artifact("m1", manifest_for("m1", version=2))
    body = {"action": "deploy", "embedding_model_id": "m1", "id": "auto-green",
            "config": {"bake_seconds": BAKE, "max_5xx_errors_per_minute": 0, "max_model_latency_ms": 500}}
    world.sqs.send_message(QueueUrl=world.urls.requests, MessageBody=json.dumps(body))
    world.pump.run(until=lambda: world.task("auto-green").get("stage") == "baking")
    green = world.task("auto-green")
    five_xx, latency = variant_alarm_names(green["endpoint_name"])
    [errors] = cloudwatch().describe_alarms(AlarmNames=[five_xx])["MetricAlarms"]
    [slow] = cloudwatch().describe_alarms(AlarmNames=[latency])["MetricAlarms"]
    assert (errors["Threshold"], slow["Threshold"]) == (0.0, 500_000.0)
    fire(world, five_xx)
    world.pump.run()
    assert world.task("auto-green")["status"] == "failed"
    assert world.get("/models/m1").json_body["endpoint_name"] == blue["endpoint_name"]


@pytest.mark.parametrize(
    ("config", "field", "needle"),
    [
        ({"rollback_alarms": ["a", "a"]}, "config.rollback_alarms", "names 'a' twice"),
        ({"rollback_alarms": [f"a{n}" for n in range(11)]}, "config.rollback_alarms", "at most 10"),
        ({"rollback_alarms": ["x" * 256]}, "config.rollback_alarms.0", "at most 255 characters"),
        ({"rollback_alarms": [""]}, "config.rollback_alarms.0", "at least 1 character"),
        ({"rollback_alarms": "one-alarm"}, "config.rollback_alarms", "valid list"),
        ({"rollback_alarm": ["a"]}, "config.rollback_alarm", "unknown field"),
        ({"max_5xx_errors_per_minute": -1}, "config.max_5xx_errors_per_minute", "greater than or equal to 0"),
        ({"max_model_latency_ms": 0}, "config.max_model_latency_ms", "greater than or equal to 1"),
        ({"max_model_latency_ms": 600_001}, "config.max_model_latency_ms", "less than or equal to 600000"),
    ],
)
def test_bad_alarm_config_is_refused_naming_the_field(
    world: World, config: dict[str, Any], field: str, needle: str
) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    answer = world.post("/deploy", {"embedding_model_id": "m1", "config": config})
    assert answer.status_code == 422, answer.json_body
    assert answer.json_body["field"] == field and needle in answer.json_body["detail"], answer.json_body
