"""Test support: the calls the Lambda service makes with each function's own role.

No test records these, because Lambda makes them, not our code: the runtime writes the logs
(logs:CreateLogStream, logs:PutLogEvents on the function's log group) and an SQS event source
mapping polls its queue (sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes, as the
Lambda developer guide lists for SQS). infra/template.yaml says which log group and which queue
each function has; this module turns that into authorizations for esdeploy/iam/evaluation.py.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from esdeploy.iam.evaluation import Decision, evaluate
from tests.iam.calls import UNKNOWN, ApiCall, Authorization, Unknown, authorizations
from tests.iam.policies import TEMPLATE, StackValues, function_names, function_policy, logical_id, resolve
from tests.infra.infra_support import load_cfn

ESM_ACTIONS = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")


class _NoFacts:
    def tags(self, service: str, resource_type: str, arn: str) -> Unknown:
        return UNKNOWN

    def exists(self, service: str, resource_type: str, arn: str) -> Unknown:
        return UNKNOWN


def _name(resources: dict[str, Any], logical: str, key: str, values: StackValues) -> str:
    return str(resolve(resources[logical]["Properties"][key], values.variables(), f"{logical}.{key}"))


def service_calls(function: str, values: StackValues) -> Iterator[ApiCall]:
    resources = load_cfn(TEMPLATE)["Resources"]
    patch = resources.get(logical_id(function), {}).get("Properties", {})
    log_group = patch.get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
    if log_group is None:
        raise AssertionError(f"infra/template.yaml gives {logical_id(function)} no LoggingConfig log group")
    group_name = _name(resources, log_group, "LogGroupName", values)
    for operation in ("CreateLogStream", "PutLogEvents"):
        yield ApiCall(function, "logs", operation, {"logGroupName": group_name, "logStreamName": "2026/01/01/x"},
                      values.region, values.account)
    for event in patch.get("Events", {}).values():
        queue = event["Properties"]["Queue"]["Fn::Sub"]  # "${SomeQueue.Arn}"
        queue_name = _name(resources, queue[2:-len(".Arn}")], "QueueName", values)
        url = f"https://sqs.{values.region}.amazonaws.com/{values.account}/{queue_name}"
        for operation in ESM_ACTIONS:
            yield ApiCall(function, "sqs", operation, {"QueueUrl": url}, values.region, values.account)


def runtime_authorizations(values: StackValues, function: str) -> list[tuple[Authorization, Decision]]:
    """Every authorization of the calls the Lambda service makes for `function`, with its decision."""
    statements, sources = function_policy(function, values)
    return [(authorization, evaluate(statements, authorization.request, sources))
            for call in service_calls(function, values) for authorization in authorizations(call, _NoFacts())]


def runtime_decisions(values: StackValues, functions: list[str] | None = None) -> list[tuple[str, Decision]]:
    """(function, decision) for every call the Lambda service makes for each function."""
    return [(function, decision)
            for function in (functions if functions is not None else function_names())
            for _, decision in runtime_authorizations(values, function)]
