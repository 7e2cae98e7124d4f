"""Unit tests: every queue message has one JSON form and one reader; garbage is unreadable, not poison."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from chalicelib.adapters.queue_messages import (
    read_dead_letter,
    read_deploy_tasks,
    read_teardown_tasks,
    to_body,
)
from chalicelib.adapters.sagemaker_shapes import endpoint_state_change
from chalicelib.domain.errors import UnreadableMessageError
from chalicelib.domain.messages import (
    Advance,
    AlarmChanged,
    DeleteModel,
    EndpointChanged,
    TeardownVariant,
    WorkMessage,
)
from chalicelib.domain.models import AlarmState, EndpointState

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TAGS = {"embedding_model_id": "m1", "task_id": "t1", "managed-by": "esdeploy"}


@pytest.mark.parametrize(
    ("message", "body"),
    [
        (Advance("t1", 3), {"action": "advance", "task_id": "t1", "version": 3}),
        (Advance("t1", 3, attempt=2), {"action": "advance", "task_id": "t1", "version": 3, "attempt": 2}),
        (DeleteModel("t2", "m1"), {"action": "delete_model", "task_id": "t2", "embedding_model_id": "m1"}),
        (
            DeleteModel("t2", "m1", attempt=4),
            {"action": "delete_model", "task_id": "t2", "embedding_model_id": "m1", "attempt": 4},
        ),
        (
            TeardownVariant("m1", "esd-m1-a-b", "orphan sweep"),
            {"action": "teardown_variant", "embedding_model_id": "m1", "variant": "esd-m1-a-b",
             "reason": "orphan sweep"},
        ),
        (
            TeardownVariant("m1", "esd-m1-a-b", "bake over", not_before=AT, task_id="t3", attempt=2),
            {"action": "teardown_variant", "embedding_model_id": "m1", "variant": "esd-m1-a-b", "reason": "bake over",
             "not_before": "2026-01-02T03:04:05.678901Z", "task_id": "t3", "attempt": 2},
        ),
    ],
)
def test_each_message_has_one_json_form_that_reads_back(message: WorkMessage, body: dict[str, Any]) -> None:
    assert to_body(message) == body
    assert read_dead_letter(json.dumps(body)) == message


def test_messages_are_read_only_from_their_own_queue() -> None:
    advance = json.dumps(to_body(Advance("t1", 1)))
    teardown = json.dumps(to_body(TeardownVariant("m1", "v", "r")))
    assert read_deploy_tasks(advance) == Advance("t1", 1)
    assert read_teardown_tasks(teardown) == TeardownVariant("m1", "v", "r")
    with pytest.raises(UnreadableMessageError, match="Advance message does not belong on teardown-tasks"):
        read_teardown_tasks(advance)
    with pytest.raises(UnreadableMessageError, match="TeardownVariant message does not belong on deploy-tasks"):
        read_deploy_tasks(teardown)


def test_an_advance_sent_before_versions_were_always_sent_is_a_first_dispatch() -> None:
    legacy = {"action": "advance", "task_id": "t1", "embedding_model_id": "m1"}
    assert read_deploy_tasks(json.dumps(legacy)) == Advance("t1", 1)


def test_sagemakers_state_change_event_becomes_endpoint_changed() -> None:
    event = endpoint_state_change(
        "esd-m1-a-b", EndpointState.FAILED, TAGS, failure_reason="ping failed", region="us-east-1",
        account="123456789012",
    )
    assert read_deploy_tasks(json.dumps(event)) == EndpointChanged(
        endpoint_name="esd-m1-a-b", state=EndpointState.FAILED, platform_status="FAILED",
        task_id="t1", embedding_model_id="m1", failure_reason="ping failed",
    )
    untagged = endpoint_state_change("someone-elses", EndpointState.IN_SERVICE, {}, region="us-east-1", account="1")
    changed = read_deploy_tasks(json.dumps(untagged))
    assert isinstance(changed, EndpointChanged) and changed.task_id is None
    assert changed.state is EndpointState.IN_SERVICE


def test_cloudwatchs_alarm_state_change_event_becomes_alarm_changed() -> None:
    event = alarm_state_change("esd-m1-a-b-invocation-5xx", AlarmState.ALARM, "Threshold Crossed: 1 datapoint",
                               AT, account="123456789012", region="us-east-1")
    assert event["detail"]["state"]["timestamp"] == "2026-01-02T03:04:05.678+0000"  # CloudWatch's own form
    assert read_deploy_tasks(json.dumps(event)) == AlarmChanged(
        "esd-m1-a-b-invocation-5xx", AlarmState.ALARM, "Threshold Crossed: 1 datapoint", AT.replace(microsecond=678000)
    )
    # The documented example, as AWS prints it: a hint is read even without a usable timestamp.
    documented = {**event, "detail": {**event["detail"], "state": {"value": "ALARM", "reason": "r", "timestamp": "?"}}}
    assert read_deploy_tasks(json.dumps(documented)) == AlarmChanged("esd-m1-a-b-invocation-5xx", AlarmState.ALARM, "r")
    with pytest.raises(UnreadableMessageError, match="does not belong on teardown-tasks"):
        read_teardown_tasks(json.dumps(event))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not JSON"),
        ('{"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "detail": {}}',
         "no detail.alarmName"),
        ('{"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", '
         '"detail": {"alarmName": "a", "state": {"value": "PANIC"}}}', "OK, ALARM or INSUFFICIENT_DATA"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"action": "promote", "task_id": "t1"}', "no such action"),
        ('{"task_id": "t1"}', "no such action"),
        ('{"action": "advance"}', "task_id"),
        ('{"action": "advance", "task_id": "t1", "version": "2"}', "`version` must be a whole number"),
        ('{"action": "advance", "task_id": "", "version": 2}', "`task_id` must be a non-empty string"),
        ('{"action": "teardown_variant", "variant": "v", "not_before": "tomorrow"}', "teardown_variant"),
        ('{"detail-type": "SageMaker Endpoint State Change", "detail": {"EndpointName": "x"}}', "no endpoint name"),
    ],
)
def test_a_body_no_reader_understands_is_unreadable(text: str, why: str) -> None:
    with pytest.raises(UnreadableMessageError, match=why):
        read_dead_letter(text)


@pytest.mark.parametrize(
    "body",
    [
        {"action": "deploy", "embedding_model_id": "m1", "id": "run-1", "config": {"bake_seconds": 5}},
        {"action": "delete", "embedding_model_id": "m1", "reason": "retired",
         "deadline": "2026-01-02T03:04:05.678901Z", "attempt": 3},
        {"action": "deploy", "embedding_model_id": "m1", "config": {
            "promotion": "manual", "promotion_timeout_seconds": 600,
            "autoscaling": {"min_instances": 1, "max_instances": 3, "target_invocations_per_instance": 50}}},
        {"action": "promote", "task_id": "run-1"},
    ],
)
def test_a_waiting_intake_request_is_sent_back_in_the_automations_own_format(body: dict[str, Any]) -> None:
    from chalicelib.api.intake import read_intake

    request = read_intake(json.dumps(body))
    assert to_body(request) == body
    assert read_intake(json.dumps(to_body(request))) == request


@pytest.mark.parametrize("deadline", ["tomorrow", "2026-01-02T03:04:05", 12])
def test_an_intake_deadline_must_be_a_time_with_a_zone(deadline: object) -> None:
    from chalicelib.api.intake import read_intake
    from chalicelib.domain.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError) as caught:
        read_intake(json.dumps({"action": "delete", "embedding_model_id": "m1", "deadline": deadline}))
    assert caught.value.field == "deadline"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "promote"}, "task_id"),
        ({"action": "promote", "task_id": "run-1", "model_id": "m1"}, "model_id"),
        ({"action": "promote", "task_id": "a b"}, "task_id"),
    ],
)
def test_a_promote_message_needs_exactly_a_valid_task_id(body: dict[str, Any], field: str) -> None:
    from chalicelib.api.intake import read_intake
    from chalicelib.domain.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError) as refused:
        read_intake(json.dumps(body))
    assert refused.value.field == field
