"""The local stack's alarm stand-in moves alarms in (moto's) CloudWatch from the local endpoints' invocations."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.cloudwatch_shapes import variant_alarm_requests
from chalicelib.domain.models import AlarmThresholds
from chalicelib.ports import VariantAlarms
from esdeploy.local.alarm_standin import AlarmStandIn
from esdeploy.local.invocation_metrics import InvocationRecords

VARIANT = "esdlocal-m1-abcd1234-green001"
START = datetime(2026, 12, 2, 3, 10, 20, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def put_contract_alarms(cloudwatch: Any, variant: str, max_5xx: int = 5, max_latency_ms: int = 2000) -> None:
    """The two alarms the core creates at the swap (its own PutMetricAlarm requests)."""
    alarms = VariantAlarms(variant, "m1", "task-1", AlarmThresholds(max_5xx, max_latency_ms))
    for request in variant_alarm_requests(alarms):
        cloudwatch.put_metric_alarm(**request)


@pytest.fixture
def cloudwatch(test_env: dict[str, str]) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def state(cloudwatch: Any, name: str) -> tuple[str, str]:
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarm["StateValue"], alarm["StateReason"]


@dataclass
class World:
    """A stand-in over moto's CloudWatch and one local endpoint's records, on a clock the test moves."""

    clock: Clock
    records: InvocationRecords
    standin: AlarmStandIn
    published: list[dict[str, Any]]


@pytest.fixture
def world(cloudwatch: Any) -> World:
    clock = Clock(START)
    records = InvocationRecords(clock)
    records.register(VARIANT)
    published: list[dict[str, Any]] = []
    standin = AlarmStandIn(cloudwatch, records, published.append, threading.Event(), region="us-east-1",
                           account="123456789012", clock=clock)
    return World(clock, records, standin, published)


def test_5xx_over_the_threshold_moves_the_alarm_to_alarm_and_sends_the_event(cloudwatch: Any, world: World) -> None:
    put_contract_alarms(cloudwatch, VARIANT)
    for _ in range(7):
        world.records.record(VARIANT, 500, 3_000)
    for _ in range(30):
        world.records.record(VARIANT, 200, 3_000)

    moves = world.standin.evaluate_once()

    errors = f"{VARIANT}-invocation-5xx"
    assert [(m.alarm_name, m.previous, m.state) for m in moves] == [(errors, "OK", "ALARM")]
    assert state(cloudwatch, errors) == (
        "ALARM", "Threshold Crossed: 1 datapoint [7.0 (02/12/26 03:10:00)] was greater than the threshold (5.0).")
    assert state(cloudwatch, f"{VARIANT}-model-latency")[0] == "OK"  # 3 ms on average
    (event,) = world.published
    assert event["detail-type"] == "CloudWatch Alarm State Change" and event["source"] == "aws.cloudwatch"
    assert event["resources"] == [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{errors}"]
    assert event["detail"]["alarmName"] == errors
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["state"]["reason"].startswith("Threshold Crossed: 1 datapoint [7.0 ")
    assert event["detail"]["state"]["timestamp"] == "2026-12-02T03:10:20.000+0000"
    assert event["detail"]["previousState"]["value"] == "OK"

    assert world.standin.evaluate_once() == []  # no change, no second event
    assert len(world.published) == 1


def test_the_alarm_goes_back_to_ok_when_a_quiet_minute_follows(cloudwatch: Any, world: World) -> None:
    put_contract_alarms(cloudwatch, VARIANT, max_5xx=0)
    world.records.record(VARIANT, None, None)  # no answer at all: a 5xx
    assert [m.state for m in world.standin.evaluate_once()] == ["ALARM"]
    world.clock.now += 60
    (move,) = world.standin.evaluate_once()
    assert (move.previous, move.state) == ("ALARM", "OK")
    assert move.reason.startswith("Threshold Crossed: no datapoints were received for 1 period")
    assert [e["detail"]["state"]["value"] for e in world.published] == ["ALARM", "OK"]
    assert world.published[1]["detail"]["previousState"]["value"] == "ALARM"


def test_slow_answers_move_the_latency_alarm(cloudwatch: Any, world: World) -> None:
    put_contract_alarms(cloudwatch, VARIANT, max_latency_ms=200)
    world.records.record(VARIANT, 200, 450_000)
    assert [(m.alarm_name, m.state) for m in world.standin.evaluate_once()] == [(f"{VARIANT}-model-latency", "ALARM")]
    assert state(cloudwatch, f"{VARIANT}-model-latency")[1] == (
        "Threshold Crossed: 1 datapoint [450000.0 (02/12/26 03:10:00)] was greater than the threshold (200000.0).")


def test_alarms_on_other_endpoints_and_other_metrics_are_left_as_they_are(cloudwatch: Any, world: World) -> None:
    put_contract_alarms(cloudwatch, "an-endpoint-on-real-aws", max_5xx=0)  # not a local endpoint
    cloudwatch.put_metric_alarm(
        AlarmName="lambda-errors", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum",
        Dimensions=[{"Name": "FunctionName", "Value": "f"}], Period=60, EvaluationPeriods=1, Threshold=0.0,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="breaching",
    )
    cloudwatch.set_alarm_state(AlarmName="lambda-errors", StateValue="ALARM", StateReason="set by a person")
    world.records.record(VARIANT, 500, 1_000)
    assert world.standin.evaluate_once() == []
    assert world.published == []
    assert state(cloudwatch, "lambda-errors") == ("ALARM", "set by a person")
    assert state(cloudwatch, "an-endpoint-on-real-aws-invocation-5xx")[0] == "OK"


def test_the_loop_runs_by_itself_and_stops(cloudwatch: Any) -> None:
    records = InvocationRecords()
    records.register(VARIANT)
    put_contract_alarms(cloudwatch, VARIANT, max_5xx=0)
    stop = threading.Event()
    published: list[dict[str, Any]] = []
    arrived = threading.Event()

    def publish(event: dict[str, Any]) -> None:
        published.append(event)
        arrived.set()

    loop = AlarmStandIn(cloudwatch, records, publish, stop, region="us-east-1", account="123456789012", every=0.1)
    loop.start()
    try:
        records.record(VARIANT, 503, 2_000)
        assert arrived.wait(10), "the stand-in did not move the alarm"
    finally:
        stop.set()
        loop.join(timeout=5)
    assert not loop.is_alive()
    assert published[0]["detail"]["alarmName"] == f"{VARIANT}-invocation-5xx"
    assert state(cloudwatch, f"{VARIANT}-invocation-5xx")[0] == "ALARM"
