"""The local stack's EventBridge part: an event reaches deploy-tasks only when a rule of
infra/template.yaml routes it, as on AWS (the same patterns, read from the template)."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from chalicelib.config import load_settings
from chalicelib.domain.models import EndpointState
from chalicelib.domain.names import variant_alarm_names, variant_name
from chalicelib.ports import VariantSpec
from esdeploy.local.embedded_aws import TEMPLATE, load_cfn
from esdeploy.local.environment import local_environment
from esdeploy.local.stack import ALARM_EVENTS, LocalStack, deploy_queue_rules


class RecordingSqs:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def send_message(self, *, QueueUrl: str, MessageBody: str) -> dict[str, str]:
        self.bodies.append(json.loads(MessageBody))
        return {"MessageId": str(len(self.bodies))}


def test_the_local_stack_delivers_only_what_the_templates_rules_route(tmp_path: Path) -> None:
    settings = load_settings(local_environment("http://127.0.0.1:1"))
    stack = LocalStack(state_dir=tmp_path)  # not started: only its event delivery is used here
    sqs = RecordingSqs()
    stack._sqs, stack._deploy_url = sqs, "deploy-tasks"  # type: ignore[attr-defined]
    stack._rules = deploy_queue_rules(load_cfn(TEMPLATE), settings)
    variant = variant_name(settings.resource_prefix, "m1", "t1")
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def alarm(name: str) -> dict[str, Any]:
        return alarm_state_change(name, "ALARM", "Threshold Crossed", at, "123456789012", "us-east-1")

    stack._alarm_changed(alarm(f"TargetTracking-endpoint/{variant}/variant/AllTraffic-AlarmHigh-0c1d"))
    stack._alarm_changed(alarm("checkout-errors"))
    assert sqs.bodies == []  # neither is routed by the template's alarm rule
    five_xx = variant_alarm_names(variant)[0]
    stack._alarm_changed(alarm(five_xx))
    stack._endpoint_changed(
        VariantSpec(variant, "m1", "t1", "s3://b/m1/model.tar.gz", "image", "ml.m5.large", 1), EndpointState.CREATING,
        None,
    )
    assert [body["detail"].get("alarmName") or body["detail"]["EndpointName"] for body in sqs.bodies] == [
        five_xx, variant,
    ]
    # Every move the stand-in made is still written down for a person, routed or not.
    logged = [json.loads(line)["alarm"] for line in (tmp_path / ALARM_EVENTS).read_text().splitlines()]
    assert len(logged) == 3 and logged[-1] == five_xx
