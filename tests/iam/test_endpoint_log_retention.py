"""The stack's endpoint-log-retention function (inline in infra/template.yaml), run against moto
with its own role's policy evaluated for every call it makes."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from chalicelib import wiring
from tests.iam.needed import entries, stale
from tests.iam.policies import TEMPLATE, StackValues, function_policy, stage_names
from tests.iam.recorder import Recorder, running_function
from tests.iam.runtime import runtime_authorizations, runtime_decisions
from tests.infra.infra_support import load_cfn

FUNCTION = "endpoint_log_retention"
ENDPOINTS = "/aws/sagemaker/Endpoints/"


def handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    code = load_cfn(TEMPLATE)["Resources"]["EndpointLogRetention"]["Properties"]["Code"]["ZipFile"]
    namespace: dict[str, Any] = {}
    exec(compile(code, "infra/template.yaml:EndpointLogRetention", "exec"), namespace)
    return namespace["handler"]


def test_our_endpoint_log_groups_get_a_retention_and_nothing_else_is_touched(
    aws_adapters: wiring.Adapters, iam_checked_calls: Recorder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = aws_adapters.settings.resource_prefix
    monkeypatch.setenv("RESOURCE_PREFIX", prefix)
    monkeypatch.setenv("RETENTION_DAYS", "30")
    logs = boto3.client("logs", region_name="us-east-1")
    groups = {
        f"{ENDPOINTS}{prefix}-m1-aaaaaaaa-bbbbbbbb": None,  # made by SageMaker: no retention
        f"{ENDPOINTS}{prefix}-m2-cccccccc-dddddddd": 7,  # someone chose 7 days: theirs to keep
        f"{ENDPOINTS}{prefix}dev-m1-aaaaaaaa-bbbbbbbb": None,  # another stage's prefix
        f"{ENDPOINTS}someone-else": None,
    }
    for name, days in groups.items():
        logs.create_log_group(logGroupName=name)
        if days:
            logs.put_retention_policy(logGroupName=name, retentionInDays=days)

    token = running_function.set(FUNCTION)
    try:
        result = handler()({}, None)
    finally:
        running_function.reset(token)

    first = f"{ENDPOINTS}{prefix}-m1-aaaaaaaa-bbbbbbbb"
    assert result == {"changed": [first]}
    now = {g["logGroupName"]: g.get("retentionInDays") for g in logs.describe_log_groups()["logGroups"]}
    assert now == {**groups, first: 30}
    evaluated = {d.request.action for c in iam_checked_calls.calls for _, d in c.decisions if d.allowed}
    assert evaluated == {"logs:DescribeLogGroups", "logs:PutRetentionPolicy"}
    assert iam_checked_calls.problems() == []

    # Its part of the list esdeploy doctor simulates (esdeploy/iam/code_calls.json): these calls and the runtime's.
    settings = aws_adapters.settings
    names = stage_names(settings, "us-east-1", "123456789012")
    needed = entries(FUNCTION, [pair for c in iam_checked_calls.calls for pair in c.decisions], names)
    values = StackValues.from_settings(settings, "us-east-1", "123456789012")
    needed |= entries(FUNCTION, runtime_authorizations(values, FUNCTION), names)
    assert stale([FUNCTION], needed) == []


def test_its_role_lets_it_run_and_grants_nothing_more(settings: Any) -> None:
    values = StackValues.from_settings(settings, "us-east-1", "123456789012")
    decisions = runtime_decisions(values, [FUNCTION])
    assert decisions and all(d.allowed for _, d in decisions), [d.explain() for _, d in decisions]
    statements, _ = function_policy(FUNCTION, values)
    assert sorted(a for s in statements for a in s.actions) == [
        "logs:CreateLogStream", "logs:DescribeLogGroups", "logs:PutLogEvents", "logs:PutRetentionPolicy"]
    other_stage = f"arn:aws:logs:us-east-1:123456789012:log-group:{ENDPOINTS}{settings.resource_prefix}dev-x"
    assert not any(s.matches_action("logs:PutRetentionPolicy") and s.matches_resource(other_stage)
                   for s in statements)
