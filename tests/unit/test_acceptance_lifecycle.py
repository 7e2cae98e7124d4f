"""`esdeploy acceptance`'s lifecycle where it reads AWS directly (what the local stack cannot exercise), and how
it reads the events AWS sent: botocore's Stubber for the calls, SageMaker's and CloudWatch's documented events."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.adapters.aws_errors import in_progress_error
from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from chalicelib.adapters.sagemaker_shapes import endpoint_arn, endpoint_state_change
from chalicelib.domain.models import EndpointState
from esdeploy.acceptance.facts import LIFECYCLE_FACTS, Findings
from esdeploy.acceptance.lifecycle import FORCE_EVERY_SECONDS, Lifecycle, Options, alarm_latency, endpoint_event_tags
from esdeploy.acceptance.observer import ObservedEvent
from esdeploy.acceptance.target import Target

GREEN, BLUE = "esddev-esdeploy-acceptance-5cc27fea-22222222", "esddev-esdeploy-acceptance-5cc27fea-11111111"
ALARM = f"{GREEN}-invocation-5xx"


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeApi:
    """The esdeploy client's `model()`: the alias on green for `green_looks` looks, then on blue."""

    def __init__(self, clients: dict[str, Any], green_looks: int) -> None:
        self.clients = clients
        self.looks = 0
        self.green_looks = green_looks

    def aws_client(self, service: str) -> Any:
        return self.clients[service]

    def model(self, model_id: str) -> dict[str, Any]:
        self.looks += 1
        return {"embedding_model_id": model_id, "endpoint_name": GREEN if self.looks <= self.green_looks else BLUE}


def aws(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def lifecycle(clients: dict[str, Any], time: FakeTime, green_looks: int = 0) -> Lifecycle:
    target = Target(
        client=FakeApi(clients, green_looks),  # type: ignore[arg-type]
        stage="dev", where="AWS account 123456789012", region="us-east-1", upload_url="s3://b/models",
        ssm_prefix="/esdeploy/dev", local=False,
    )
    options = Options(model_id="esdeploy-acceptance", instance_type="ml.m5.large", image_uri="i", artifact_url="s3://a",
                      bake_seconds=60, rollback_window_seconds=900)
    return Lifecycle(target, options, Findings(LIFECYCLE_FACTS, local=False), lambda _: None,
                     clock=time.clock, sleep=time.sleep)


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = aws("sagemaker")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def described(status: str) -> dict[str, Any]:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    return {"EndpointName": GREEN, "EndpointArn": endpoint_arn(GREEN, region="us-east-1", account="123456789012"),
            "EndpointStatus": status, "CreationTime": now, "LastModifiedTime": now}


def test_delete_while_creating_records_sagemakers_refusal_word_for_word(sagemaker: tuple[Any, Stubber]) -> None:
    client, stub = sagemaker
    refusal = in_progress_error("DeleteEndpoint", endpoint_arn(GREEN, region="us-east-1", account="123456789012"))
    stub.add_response("describe_endpoint", described("Creating"), {"EndpointName": GREEN})
    stub.add_client_error("delete_endpoint", "ValidationException", refusal.response["Error"]["Message"], 400,
                          expected_params={"EndpointName": GREEN})

    found = lifecycle({"sagemaker": client}, FakeTime())._delete_endpoint_now(GREEN)

    assert found == {"endpoint_status": "Creating", "refused": True, "code": "ValidationException",
                     "message": refusal.response["Error"]["Message"], "http_status": 400}


def test_a_delete_that_sagemaker_accepts_while_creating_is_recorded_as_accepted(sagemaker: tuple[Any, Stubber]) -> None:
    client, stub = sagemaker
    stub.add_response("describe_endpoint", described("Creating"), {"EndpointName": GREEN})
    stub.add_response("delete_endpoint", {}, {"EndpointName": GREEN})

    assert lifecycle({"sagemaker": client}, FakeTime())._delete_endpoint_now(GREEN) == {
        "endpoint_status": "Creating", "refused": False}


def test_the_alarm_is_forced_again_until_the_alias_is_back_on_blue() -> None:
    """CloudWatch may set a forced alarm back at its next evaluation: the run forces it again every
    FORCE_EVERY_SECONDS until the worker has rolled back, and says how many it took."""
    cloudwatch = aws("cloudwatch")
    time = FakeTime()
    updated = datetime.fromtimestamp(time.now + 0.4, UTC)
    with Stubber(cloudwatch) as stub:
        for _ in range(2):
            stub.add_response("set_alarm_state", {}, {
                "AlarmName": ALARM, "StateValue": "ALARM",
                "StateReason": "esdeploy acceptance: forced to test the rollback during the bake"})
            if _ == 0:
                stub.add_response("describe_alarms", {"MetricAlarms": [
                    {"AlarmName": ALARM, "StateValue": "ALARM", "StateUpdatedTimestamp": updated}]},
                    {"AlarmNames": [ALARM]})
        # Blue after FORCE_EVERY_SECONDS + 5 one-second looks: two SetAlarmState calls.
        run = lifecycle({"cloudwatch": cloudwatch}, time, green_looks=FORCE_EVERY_SECONDS + 5)
        forced_at, back_at = run._force(ALARM, GREEN, BLUE, window_ends=time.now + 900)
        stub.assert_no_pending_responses()

    assert back_at is not None and back_at - forced_at == pytest.approx(FORCE_EVERY_SECONDS + 5)
    assert run._forced["forcings"] == 2
    assert run._forced["state_updated_at"] == pytest.approx(updated.timestamp())


def test_no_rollback_within_the_window_is_said_so() -> None:
    cloudwatch = aws("cloudwatch")
    time = FakeTime()
    with Stubber(cloudwatch) as stub:
        stub.add_response("set_alarm_state", {}, None)
        stub.add_response("describe_alarms", {"MetricAlarms": [
            {"AlarmName": ALARM, "StateUpdatedTimestamp": datetime.fromtimestamp(time.now, UTC)}]}, None)
        stub.add_response("set_alarm_state", {}, None)
        run = lifecycle({"cloudwatch": cloudwatch}, time, green_looks=10_000)
        _, back_at = run._force(ALARM, GREEN, BLUE, window_ends=time.now + FORCE_EVERY_SECONDS + 1)

    assert back_at is None
    assert run._forced["forcings"] == 2


def test_endpoint_events_are_read_for_our_tags_in_either_documented_form() -> None:
    as_map = endpoint_state_change(GREEN, EndpointState.IN_SERVICE, {"embedding_model_id": "esdeploy-acceptance",
                                   "task_id": "t2", "managed-by": "esdeploy"}, None, region="us-east-1",
                                   account="123456789012")
    as_list = endpoint_state_change(BLUE, EndpointState.CREATING, {}, None, region="us-east-1", account="123456789012")
    as_list["detail"]["Tags"] = [{"key": "embedding_model_id", "value": "esdeploy-acceptance"},
                                 {"key": "task_id", "value": "t1"}, {"key": "managed-by", "value": "esdeploy"}]
    untagged = endpoint_state_change(BLUE, EndpointState.IN_SERVICE, {}, None, region="us-east-1",
                                     account="123456789012")
    del untagged["detail"]["Tags"]
    someone_else = endpoint_state_change("other-endpoint", EndpointState.IN_SERVICE, {}, None, region="us-east-1",
                                         account="123456789012")
    events = [ObservedEvent(body, 1.0) for body in (as_map, as_list, untagged, someone_else)]

    read = endpoint_event_tags(events, [GREEN, BLUE], {})

    assert read["events"] == 3
    assert read["with_our_tags"] == 2
    assert read["tag_forms"] == ["absent", "list", "map"]
    assert read["statuses"] == ["CREATING", "IN_SERVICE"]


def test_alarm_latency_uses_awss_clocks_for_the_event_and_this_machines_for_the_alias() -> None:
    event = alarm_state_change(ALARM, "ALARM", "forced", datetime(2026, 12, 7, tzinfo=UTC), "123456789012",
                               "us-east-1")
    ok_again = alarm_state_change(ALARM, "OK", "back", datetime(2026, 12, 7, tzinfo=UTC), "123456789012", "us-east-1")
    events = [ObservedEvent(event, 5_003.5), ObservedEvent(ok_again, 5_070.0)]
    forced = {"alarm": ALARM, "forced_at": 4_999.0, "state_updated_at": 5_000.0, "alias_back_at": 5_020.0,
              "forcings": 1}

    assert alarm_latency(events, forced) == {
        "alarm": ALARM, "set_alarm_state_calls": 1, "alarm_to_event_delivered_seconds": 3.5, "alarm_events_seen": 1,
        "set_alarm_state_to_alias_back_seconds": 21.0}
    assert alarm_latency([], forced)["alarm_to_event_delivered_seconds"] is None
