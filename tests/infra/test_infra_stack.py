"""The plain-CloudFormation part of the dev package deploys into moto, and the app runs on it.

moto cannot run SAM, so the AWS::Serverless resources (and what refers to them) are cut out;
moto also skips a few types it does not model (alarms, queue and bucket policies) with a
warning, and ignores a table's TimeToLiveSpecification - those are covered by cfn-lint/checkov
and test_infra_template.py instead.
"""
from __future__ import annotations

import importlib
import json
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from infra_support import project_dir, stage_environment, without_serverless

moto = pytest.importorskip("moto")

STACK = "esdeploy-dev"
REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        yield


@pytest.fixture
def stack(packaged: Any, aws: None) -> dict[str, str]:
    """Create the stack in moto and return its outputs."""
    _, template = packaged("dev")
    plain = without_serverless(template)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    with warnings.catch_warnings():
        # moto warns for every type it skips; a project-wide "warnings are errors" must not
        # turn that into a failed stack.
        warnings.simplefilter("ignore", UserWarning)
        cloudformation.create_stack(
            StackName=STACK, TemplateBody=json.dumps(plain), Capabilities=["CAPABILITY_IAM"]
        )
    (created,) = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
    assert created["StackStatus"] == "CREATE_COMPLETE", created
    return {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}


def test_stack_creates_the_resources_with_the_shape_the_app_needs(stack: dict[str, str]) -> None:
    env = stage_environment("dev")
    assert stack["TasksTableName"] == env["ESDEPLOY_TASKS_TABLE"]
    assert stack["DeployTasksQueueName"] == env["ESDEPLOY_DEPLOY_QUEUE"]

    table = boto3.client("dynamodb").describe_table(TableName=stack["TasksTableName"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "task_id", "KeyType": "HASH"}]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["by-model"]

    sqs = boto3.client("sqs")
    for key in ("RequestsQueueUrl", "DeployTasksQueueUrl", "TeardownTasksQueueUrl"):
        attributes = sqs.get_queue_attributes(QueueUrl=stack[key], AttributeNames=["All"])["Attributes"]
        assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 5
        assert attributes["SqsManagedSseEnabled"] == "true"

    events = boto3.client("events")
    rules = {r["Name"]: r for r in events.list_rules()["Rules"]}
    (state_changes,) = [r for r in rules.values() if "aws.sagemaker" in r.get("EventPattern", "")]
    (target,) = events.list_targets_by_rule(Rule=state_changes["Name"])["Targets"]
    assert target["Arn"].endswith(":" + stack["DeployTasksQueueName"])
    (hourly,) = [r for r in rules.values() if r.get("ScheduleExpression") == "rate(1 hour)"]
    (target,) = events.list_targets_by_rule(Rule=hourly["Name"])["Targets"]
    assert target["Arn"].endswith(":function:esdeploy-dev-endpoint-log-retention")

    ssm = boto3.client("ssm")
    bucket = ssm.get_parameter(Name=f"{stack['SsmPrefix']}/stack/artifact-bucket")["Parameter"]["Value"]
    assert bucket == stack["ArtifactBucketName"]
    boto3.client("s3").head_bucket(Bucket=bucket)  # (moto ignores the bucket's settings in CloudFormation)


def _app_modules() -> set[str]:
    return {m for m in sys.modules if m == "app" or m.split(".")[0] == "chalicelib"}


@pytest.fixture
def app_on_stack(stack: dict[str, str], packaged: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh import of app.py configured from the stack outputs, as the Lambdas would be."""
    if not (project_dir() / "app.py").exists():
        pytest.skip("app.py does not exist yet")
    _, template = packaged("dev")
    packaged_env = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    env = {
        **stage_environment("dev"),
        # infra/finalize.py resolved it for the package's region; .chalice/config.json names none.
        "ESDEPLOY_DEFAULT_IMAGE_URI": packaged_env["ESDEPLOY_DEFAULT_IMAGE_URI"],
        "ESDEPLOY_TASKS_TABLE": stack["TasksTableName"],
        "ESDEPLOY_MODELS_TABLE": stack["ModelsTableName"],
        "ESDEPLOY_REQUESTS_QUEUE": stack["RequestsQueueName"],
        "ESDEPLOY_DEPLOY_QUEUE": stack["DeployTasksQueueName"],
        "ESDEPLOY_TEARDOWN_QUEUE": stack["TeardownTasksQueueName"],
        "ESDEPLOY_ARTIFACT_BUCKET": stack["ArtifactBucketName"],
        "ESDEPLOY_SAGEMAKER_ROLE_ARN": stack["SageMakerExecutionRoleArn"],
        # The stack is moto's, in this process: it answers botocore only.
        "ESDEPLOY_DYNAMODB_CLIENT": "boto3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Settings and adapters are cached per import: import app and chalicelib afresh. Afterwards
    # drop every fresh module and let monkeypatch put the other tests' modules back, so no test
    # mixes classes from two imports.
    before = _app_modules()
    for name in before:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(project_dir()))
    yield importlib.import_module("app").app
    for name in _app_modules():
        del sys.modules[name]


def _upload_model(bucket: str, embedding_model_id: str) -> None:
    """As `esdeploy package --upload s3://<bucket>/models` would."""
    from tests.fakes.artifacts import publish_to_s3

    publish_to_s3(boto3.client("s3"), f"s3://{bucket}/models", embedding_model_id)


def test_app_submits_a_deploy_task_into_the_stack_resources(
    app_on_stack: Any, stack: dict[str, str], tmp_path: Any
) -> None:
    from chalice.test import Client

    model = "infra-smoke-model"
    _upload_model(stack["ArtifactBucketName"], model)
    # project_dir without .chalice/: the functions run with the stack's environment (the template
    # patches in the real bucket name), not with config.json's stage values.
    with Client(app_on_stack, stage_name="dev", project_dir=str(tmp_path)) as client:
        created = client.http.post(
            "/deploy",
            headers={"Content-Type": "application/json"},
            body=json.dumps({"embedding_model_id": model}),
        )
        assert created.status_code == 200, created.body
        task = json.loads(created.body)
        assert task["embedding_model_id"] == model
        assert f"/models/{model}/" in task["config"]["model_data_url"] and task["config"]["content_hash"]
        assert ".us-east-1." in task["config"]["image_uri"]  # the package's region

        fetched = client.http.get(f"/deploy/{task['task_id']}")
        assert fetched.status_code == 200, fetched.body
        # the newest task per model comes from the by-model index the stack created
        newest = client.http.get(f"/deploy-status/{model}")
        assert newest.status_code == 200, newest.body
        assert json.loads(newest.body)["task_id"] == task["task_id"]

    stored = boto3.client("dynamodb").get_item(
        TableName=stack["TasksTableName"], Key={"task_id": {"S": task["task_id"]}}
    )
    assert "Item" in stored
    messages = boto3.client("sqs").receive_message(QueueUrl=stack["DeployTasksQueueUrl"], MaxNumberOfMessages=10)
    assert messages.get("Messages"), "POST /deploy enqueued nothing on the stack's deploy-tasks queue"


def test_deploy_after_destroy_creates_the_stack_again_and_keeps_the_old_artifacts(
    packaged: Any, aws: None
) -> None:
    """Defect 3.9: the artifact bucket outlives the stack (DeletionPolicy Retain), so a fixed
    bucket name made the second deploy fail with BucketAlreadyExists."""
    _, template = packaged("dev")
    body = json.dumps(without_serverless(template))
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    buckets = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(2):
            cloudformation.create_stack(StackName=STACK, TemplateBody=body, Capabilities=["CAPABILITY_IAM"])
            (created,) = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
            assert created["StackStatus"] == "CREATE_COMPLETE", created
            outputs = {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}
            buckets.append(outputs["ArtifactBucketName"])
            s3.put_object(Bucket=buckets[-1], Key="models/m1/model.tar.gz", Body=b"weights")
            cloudformation.delete_stack(StackName=STACK)
    assert buckets[0] != buckets[1]
    left = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(buckets) <= left, "the artifact buckets are kept when the stack goes"
    assert s3.get_object(Bucket=buckets[0], Key="models/m1/model.tar.gz")["Body"].read() == b"weights"
