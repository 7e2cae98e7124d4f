"""The evaluator follows IAM's documented rules (each case is a rule from the IAM user guide)."""
from __future__ import annotations

from typing import Any

import pytest

from esdeploy.iam.evaluation import CannotEvaluateError, Request, Statement, arn_match, evaluate

ENDPOINT = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/esd-m1-1"


def policy(*statements: dict[str, Any]) -> list[Statement]:
    return Statement.from_document("test.json", {"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str = "sagemaker:DeleteEndpoint", resource: str = "*", **condition: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        found["Condition"] = condition
    return found


def request(action: str = "sagemaker:DeleteEndpoint", resource: str = ENDPOINT) -> Request:
    return Request(action, resource, {})


def allowed(statements: list[Statement], req: Request) -> bool:
    return evaluate(statements, req).allowed


def tagged(**tags: str) -> dict[str, tuple[str, ...]]:
    return {f"aws:resourcetag/{k}": (v,) for k, v in tags.items()}


def test_nothing_allows_means_denied_and_the_reason_names_the_policy() -> None:
    decision = evaluate(policy(allow("sqs:SendMessage")), request(), ["test.json"])
    assert not decision.allowed
    assert "no statement in test.json grants sagemaker:DeleteEndpoint" in decision.explain()


def test_an_explicit_deny_wins_over_any_allow() -> None:
    statements = policy(allow(), {"Effect": "Deny", "Action": "sagemaker:Delete*", "Resource": "*", "Sid": "NoDeletes"})
    decision = evaluate(statements, request())
    assert not decision.allowed
    assert "explicitly denied by: test.json#NoDeletes" in decision.explain()


def test_action_matches_without_case_and_with_wildcards() -> None:
    assert allowed(policy(allow("SageMaker:deleteendpoint")), request())
    assert allowed(policy(allow("sagemaker:Delete*")), request())
    assert not allowed(policy(allow("sagemaker:Delete?")), request())
    assert allowed(policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), request())
    assert not allowed(policy({"Effect": "Allow", "NotAction": "sagemaker:*", "Resource": "*"}), request())


def test_resources_match_with_case_and_segment_by_segment() -> None:
    assert allowed(policy(allow(resource="arn:aws:sagemaker:us-east-1:123456789012:endpoint/esd-*")), request())
    assert not allowed(policy(allow(resource="arn:aws:sagemaker:us-east-1:123456789012:endpoint/ESD-*")), request())
    assert arn_match("arn:aws:sagemaker:*:*:endpoint/esd-*", ENDPOINT)
    assert not arn_match("arn:aws:sagemaker:*:*:endpoint-config/esd-*", ENDPOINT)
    # the resource part is one glob: `*` crosses `/` and `:` there
    stream = "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/x-y:log-stream:z"
    assert arn_match("arn:aws:logs:us-east-1:1:log-group:/aws/lambda/x-*:*", stream)


def test_every_condition_must_hold() -> None:
    statements = policy(
        allow(StringEquals={"aws:ResourceTag/managed-by": "esdeploy", "aws:RequestedRegion": "us-east-1"})
    )
    context = {**tagged(**{"managed-by": "esdeploy"}), "aws:requestedregion": ("eu-west-1",)}
    assert not allowed(statements, Request("sagemaker:DeleteEndpoint", ENDPOINT, context))
    context["aws:requestedregion"] = ("us-east-1",)
    assert allowed(statements, Request("sagemaker:DeleteEndpoint", ENDPOINT, context))


def test_values_of_one_key_are_alternatives() -> None:
    statements = policy(allow(StringEquals={"aws:ResourceTag/managed-by": ["esdeploy", "other"]}))
    assert allowed(statements, Request("sagemaker:DeleteEndpoint", ENDPOINT, tagged(**{"managed-by": "other"})))


def test_a_key_absent_from_the_request_matches_no_positive_operator() -> None:
    """The case of defect 3.2: a resource that does not exist has no tags."""
    statements = policy(allow(StringEquals={"aws:ResourceTag/managed-by": "esdeploy"}))
    decision = evaluate(statements, request())
    assert not decision.allowed
    assert "aws:ResourceTag/managed-by ['esdeploy']: absent from the request" in decision.explain()
    assert not allowed(policy(allow(StringLike={"s3:prefix": "models/*"})), request())


def test_negated_operators_and_if_exists_hold_when_the_key_is_absent() -> None:
    assert allowed(policy(allow(StringNotEquals={"aws:ResourceTag/managed-by": "x"})), request())
    assert allowed(policy(allow(StringEqualsIfExists={"aws:ResourceTag/managed-by": "esdeploy"})), request())
    present = Request("sagemaker:DeleteEndpoint", ENDPOINT, tagged(**{"managed-by": "someone-else"}))
    assert not allowed(policy(allow(StringEqualsIfExists={"aws:ResourceTag/managed-by": "esdeploy"})), present)
    assert not allowed(policy(allow(StringNotEquals={"aws:ResourceTag/managed-by": "someone-else"})), present)


def test_null_tests_presence() -> None:
    assert allowed(policy(allow(Null={"aws:ResourceTag/managed-by": "true"})), request())
    assert not allowed(policy(allow(Null={"aws:ResourceTag/managed-by": "false"})), request())


def test_set_operators_on_multivalued_keys() -> None:
    keys = ["managed-by", "task_id"]
    only_ours = policy(allow("sagemaker:AddTags", **{"ForAllValues:StringEquals": {"aws:TagKeys": keys}}))
    any_ours = policy(allow("sagemaker:AddTags", **{"ForAnyValue:StringEquals": {"aws:TagKeys": ["managed-by"]}}))

    def with_keys(*keys: str) -> Request:
        return Request("sagemaker:AddTags", ENDPOINT, {"aws:tagkeys": keys} if keys else {})

    assert allowed(only_ours, with_keys("managed-by"))
    assert not allowed(only_ours, with_keys("managed-by", "owner"))
    assert allowed(only_ours, with_keys())  # ForAllValues: vacuously true without the key
    assert allowed(any_ours, with_keys("owner", "managed-by"))
    assert not allowed(any_ours, with_keys("owner"))
    assert not allowed(any_ours, with_keys())  # ForAnyValue: false without the key


def test_what_cannot_be_decided_is_refused_not_guessed() -> None:
    with pytest.raises(CannotEvaluateError, match="DateGreaterThan"):
        evaluate(policy(allow(DateGreaterThan={"aws:CurrentTime": "2020-01-01T00:00:00Z"})), request())
    with pytest.raises(CannotEvaluateError, match="policy variable"):
        policy(allow(resource="arn:aws:s3:::b/${aws:username}/*"))
    unknowable = Request("sagemaker:DeleteEndpoint", ENDPOINT, {},
                         unknowable=lambda key: key.startswith("aws:resourcetag/"))
    with pytest.raises(CannotEvaluateError, match="cannot determine"):
        evaluate(policy(allow(StringEquals={"aws:ResourceTag/managed-by": "esdeploy"})), unknowable)
    with pytest.raises(CannotEvaluateError, match="ForAllValues"):
        evaluate(policy(allow("sagemaker:AddTags", StringEquals={"aws:TagKeys": "a"})),
                 Request("sagemaker:AddTags", ENDPOINT, {"aws:tagkeys": ("a", "b")}))
