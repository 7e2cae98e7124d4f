"""Contract suite: InMemoryAlarms and CloudWatchAlarms (on moto) keep the same Alarms promises: the two
alarms of the contract's table, upserts, reading by name (what is missing is left out), moving to
ALARM the way CloudWatch's SetAlarmState does, and deleting (gone already is fine)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.cloudwatch_alarms import CloudWatchAlarms
from chalicelib.domain.models import AlarmState, AlarmThresholds
from chalicelib.domain.names import variant_alarm_names
from chalicelib.ports import Alarms, VariantAlarms
from tests.fakes.memory import InMemoryAlarms

REGION = "us-east-1"
VARIANT = "esd-m1-0123abcd-4567ef01"
OWN = VariantAlarms(VARIANT, "m1", "task-1", AlarmThresholds(max_5xx_errors_per_minute=5, max_model_latency_ms=2000))


class AlarmsHarness(Protocol):
    alarms: Alarms

    def fire(self, name: str, reason: str) -> None:
        """Move an alarm to ALARM, as CloudWatch does from its metric (SetAlarmState)."""
        ...

    def define(self, name: str) -> None:
        """An alarm of the caller's own, made outside esdeploy."""
        ...

    def request_of(self, name: str) -> dict[str, Any]:
        """What the alarm watches, as DescribeAlarms shows it."""
        ...

    def tags_of(self, name: str) -> dict[str, str]: ...


class MemoryHarness:
    def __init__(self) -> None:
        self.memory = InMemoryAlarms()
        self.alarms: Alarms = self.memory

    def fire(self, name: str, reason: str) -> None:
        self.memory.set_state(name, AlarmState.ALARM, reason)

    def define(self, name: str) -> None:
        self.memory.define(name)

    def request_of(self, name: str) -> dict[str, Any]:
        request = self.memory.alarms[name].request
        assert request is not None
        return request

    def tags_of(self, name: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.request_of(name)["Tags"]}


class CloudWatchHarness:
    def __init__(self) -> None:
        self.client = boto3.client("cloudwatch", region_name=REGION)
        self.alarms: Alarms = CloudWatchAlarms(boto3.client("cloudwatch", region_name=REGION))

    def fire(self, name: str, reason: str) -> None:
        self.client.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)

    def define(self, name: str) -> None:
        self.client.put_metric_alarm(
            AlarmName=name, Namespace="Shop", MetricName="CheckoutErrors", Statistic="Sum", Period=60,
            EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
        )
        self.client.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="defined by the test")

    def request_of(self, name: str) -> dict[str, Any]:
        [alarm] = self.client.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        return dict(alarm)

    def tags_of(self, name: str) -> dict[str, str]:
        arn = self.request_of(name)["AlarmArn"]
        return {t["Key"]: t["Value"] for t in self.client.list_tags_for_resource(ResourceARN=arn)["Tags"]}


@pytest.fixture(params=["memory", "cloudwatch-moto"])
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[AlarmsHarness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield CloudWatchHarness()


def test_a_variant_gets_the_two_alarms_of_the_contract(harness: AlarmsHarness) -> None:
    names = harness.alarms.put_variant_alarms(OWN)
    five_xx, latency = names
    assert names == variant_alarm_names(VARIANT) == (f"{VARIANT}-invocation-5xx", f"{VARIANT}-model-latency")
    errors = harness.request_of(five_xx)
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == (
        "AWS/SageMaker", "Invocation5XXErrors", "Sum"
    )
    assert (errors["ComparisonOperator"], errors["Threshold"]) == ("GreaterThanThreshold", 5.0)
    slow = harness.request_of(latency)
    assert (slow["MetricName"], slow["Statistic"], slow["Threshold"]) == ("ModelLatency", "Average", 2_000_000.0)
    for alarm in (errors, slow):
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
            "EndpointName": VARIANT, "VariantName": "AllTraffic"
        }
        assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (60, 1, 1)
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["ActionsEnabled"] is False and not alarm.get("AlarmActions")
        assert f"deletes it with {VARIANT}" in alarm["AlarmDescription"]
    assert harness.tags_of(five_xx) == {"managed-by": "esdeploy", "embedding_model_id": "m1", "task_id": "task-1"}


def test_putting_the_alarms_again_keeps_their_state(harness: AlarmsHarness, request: pytest.FixtureRequest) -> None:
    if isinstance(harness, CloudWatchHarness):
        # PutMetricAlarm (CloudWatch API reference): "When you update an existing alarm, its state is left
        # unchanged". moto 5.2 builds a new alarm in state OK instead; strict, so a fixed moto is noticed.
        request.applymarker(pytest.mark.xfail(strict=True, reason="moto resets an updated alarm's state"))
    five_xx, _ = harness.alarms.put_variant_alarms(OWN)
    harness.fire(five_xx, "Threshold Crossed: 1 datapoint [9.0] > 5.0")
    harness.alarms.put_variant_alarms(OWN)  # a redelivered swap
    assert harness.alarms.read((five_xx,))[five_xx].state is AlarmState.ALARM


def test_reading_names_the_state_its_time_and_reason_and_leaves_out_what_does_not_exist(
    harness: AlarmsHarness,
) -> None:
    five_xx, latency = harness.alarms.put_variant_alarms(OWN)
    harness.define("checkout-errors")
    harness.fire(five_xx, "Threshold Crossed: 1 datapoint [9.0] > 5.0")
    read = harness.alarms.read((five_xx, latency, "checkout-errors", "never-made"))
    assert set(read) == {five_xx, latency, "checkout-errors"}
    fired = read[five_xx]
    assert fired.state is AlarmState.ALARM and fired.reason == "Threshold Crossed: 1 datapoint [9.0] > 5.0"
    assert fired.since is not None and fired.since.tzinfo is not None
    assert read["checkout-errors"].state is AlarmState.OK
    assert read[latency].state is not AlarmState.ALARM


def test_deleting_removes_both_and_deleting_again_is_fine(harness: AlarmsHarness) -> None:
    names = harness.alarms.put_variant_alarms(OWN)
    harness.define("checkout-errors")
    harness.alarms.delete_variant_alarms(VARIANT)
    harness.alarms.delete_variant_alarms(VARIANT)
    assert harness.alarms.read((*names, "checkout-errors")).keys() == {"checkout-errors"}  # not the caller's


def test_a_composite_rollback_alarm_is_read_like_a_metric_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    """`config.rollback_alarms` may name composite alarms. CloudWatch returns them only when AlarmTypes
    asks for them (moto returns them whatever it says, so the request is checked too), and only to a
    caller whose cloudwatch:DescribeAlarms is scoped to "*" (esdeploy/iam/aws_checks.py: the deploy
    worker's is, tests/iam proves it)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        harness = CloudWatchHarness()
        harness.define("checkout-errors")
        # moto keeps composite alarms but has no PutCompositeAlarm: made in its backend, as the API would.
        from moto.cloudwatch.models import cloudwatch_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        cloudwatch_backends[DEFAULT_ACCOUNT_ID][REGION].put_metric_alarm(
            name="checkout-health", namespace="", metric_name="", comparison_operator="", evaluation_periods=0,
            period=0, threshold=0.0, statistic="", description="", dimensions=[], alarm_actions=[],
            rule='ALARM("checkout-errors")')
        harness.client.set_alarm_state(AlarmName="checkout-health", StateValue="ALARM", StateReason="a child fired")
        client = boto3.client("cloudwatch", region_name=REGION)
        asked: list[Any] = []
        client.meta.events.register("provide-client-params.monitoring.DescribeAlarms",
                                    lambda params, **_: asked.append(params.get("AlarmTypes")))
        read = CloudWatchAlarms(client).read(("checkout-health", "checkout-errors"))
    assert read["checkout-health"].state is AlarmState.ALARM and read["checkout-health"].reason == "a child fired"
    assert read["checkout-errors"].state is AlarmState.OK
    assert asked and all("CompositeAlarm" in (types or []) for types in asked)
