"""The embedded AWS (the local stack and the in-process fixtures) is made from infra/template.yaml itself.

Its tables, queues and bucket are created by moto's CloudFormation from the template's own resource
definitions, so what the app runs on here is what a deployed stage runs on: keys and indexes,
visibility timeouts, retention, redrive to the dead-letter queues, encryption. moto ignores a few
properties (table SSE and point-in-time recovery, bucket versioning, public access block and
lifecycle); cfn-lint, checkov and test_infra_template.py check those on the template.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib.adapters.queue_messages import read_teardown_tasks
from chalicelib.adapters.sqs_queue import SqsQueue
from chalicelib.config import Settings
from chalicelib.domain.messages import TeardownVariant
from esdeploy.local.embedded_aws import TEMPLATE, TemplateError, create_resources, embedded_template, load_cfn

RESOURCES = load_cfn(TEMPLATE)["Resources"]
QUEUES = {logical: r["Properties"] for logical, r in RESOURCES.items() if r.get("Type") == "AWS::SQS::Queue"}
TABLES = {logical: r["Properties"] for logical, r in RESOURCES.items() if r.get("Type") == "AWS::DynamoDB::Table"}


def queue_attributes(sqs: Any, name: str) -> dict[str, str]:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes: dict[str, str] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return attributes


def names(template: dict[str, Any], kind: str) -> dict[str, str]:
    prop = {"AWS::SQS::Queue": "QueueName", "AWS::DynamoDB::Table": "TableName"}[kind]
    return {logical: r["Properties"][prop] for logical, r in template["Resources"].items() if r["Type"] == kind}


def created(aws: dict[str, Any], kind: str) -> dict[str, str]:
    """Logical id -> the name of what moto's CloudFormation made for it (a queue's from its URL)."""
    resources = aws["session"].client("cloudformation").describe_stack_resources(StackName="esdeploy-test")
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"].rsplit("/", 1)[-1]
        for r in resources["StackResources"]
        if r["ResourceType"] == kind
    }


def test_every_queue_has_the_templates_timeouts_retention_redrive_and_encryption(
    aws: dict[str, Any], test_env: dict[str, str]
) -> None:
    sqs = aws["session"].client("sqs")
    queue_names = created(aws, "AWS::SQS::Queue")
    assert set(queue_names) == set(QUEUES)
    for logical, props in QUEUES.items():
        attributes = queue_attributes(sqs, queue_names[logical])
        assert attributes["VisibilityTimeout"] == str(props.get("VisibilityTimeout", 30)), logical
        assert attributes["MessageRetentionPeriod"] == str(props.get("MessageRetentionPeriod", 345600)), logical
        assert attributes["SqsManagedSseEnabled"] == str(props["SqsManagedSseEnabled"]).lower(), logical
        assert attributes["MaximumMessageSize"] == str(props["MaximumMessageSize"]) == "262144", logical
        if "RedrivePolicy" in props:
            redrive = json.loads(attributes["RedrivePolicy"])
            target = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert redrive["maxReceiveCount"] == props["RedrivePolicy"]["maxReceiveCount"], logical
            assert redrive["deadLetterTargetArn"].endswith(":" + queue_names[target]), logical


def test_every_table_has_the_templates_keys_indexes_billing_and_expiry(aws: dict[str, Any]) -> None:
    dynamodb = aws["session"].client("dynamodb")
    table_names = created(aws, "AWS::DynamoDB::Table")
    for logical, props in TABLES.items():
        table = dynamodb.describe_table(TableName=table_names[logical])["Table"]
        assert table["KeySchema"] == props["KeySchema"], logical
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"], logical
        indexes = {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {
            i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in props.get("GlobalSecondaryIndexes", [])
        }, logical
        ttl = dynamodb.describe_time_to_live(TableName=table_names[logical])["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in props:  # moto's CloudFormation skips it; embedded_aws applies it
            assert (ttl["AttributeName"], ttl["TimeToLiveStatus"]) == (
                props["TimeToLiveSpecification"]["AttributeName"], "ENABLED"
            ), logical
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED", logical


def test_the_bucket_is_encrypted_and_tagged_as_the_template_says(aws: dict[str, Any], settings: Settings) -> None:
    s3 = aws["session"].client("s3")
    props = next(r["Properties"] for r in RESOURCES.values() if r.get("Type") == "AWS::S3::Bucket")
    rules = s3.get_bucket_encryption(Bucket=settings.artifact_bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    expected = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert [r["ApplyServerSideEncryptionByDefault"] for r in rules] == [
        r["ServerSideEncryptionByDefault"] for r in expected
    ]
    assert s3.get_bucket_tagging(Bucket=settings.artifact_bucket)["TagSet"] == props["Tags"]


def test_the_stage_names_its_resources_through_the_templates_function_environment(test_env: dict[str, str]) -> None:
    """On AWS the template points the functions at its resources (ESDEPLOY_TASKS_TABLE: !Ref TasksTable);
    the embedded AWS reads that same mapping backwards to name each resource as the stage says."""
    template = embedded_template(test_env)
    assert names(template, "AWS::DynamoDB::Table") == {
        "TasksTable": test_env["ESDEPLOY_TASKS_TABLE"], "ModelsTable": test_env["ESDEPLOY_MODELS_TABLE"]
    }
    queues = {logical: r["Properties"]["QueueName"] for logical, r in template["Resources"].items()
              if r["Type"] == "AWS::SQS::Queue"}
    assert queues["DeployTasksQueue"] == test_env["ESDEPLOY_DEPLOY_QUEUE"]
    # Dead-letter queues keep the template's own names (for the stage's Stage parameter).
    assert queues["DeployTasksDeadLetterQueue"] == {"Fn::Sub": "esdeploy-${Stage}-deploy-tasks-dlq"}
    (bucket,) = (r for r in template["Resources"].values() if r["Type"] == "AWS::S3::Bucket")
    assert bucket["Properties"]["BucketName"] == test_env["ESDEPLOY_ARTIFACT_BUCKET"]
    assert template["Parameters"] == {"Stage": {"Type": "String"}}  # the stage list guards AWS, not us


def test_a_change_to_the_template_reaches_the_embedded_aws(tmp_path: Path, test_env: dict[str, str]) -> None:
    text = TEMPLATE.read_text()
    changed = tmp_path / "template.yaml"
    changed.write_text(text.replace("VisibilityTimeout: 1080", "VisibilityTimeout: 1200"))
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        urls = create_resources(session, test_env, template_path=changed)
        attributes = session.client("sqs").get_queue_attributes(QueueUrl=urls.deploy, AttributeNames=["All"])
    assert attributes["Attributes"]["VisibilityTimeout"] == "1200"


def test_a_resource_that_needs_what_the_embedded_aws_does_not_make_is_named(
    tmp_path: Path, test_env: dict[str, str]
) -> None:
    template = yaml.safe_load(json.dumps(load_cfn(TEMPLATE)))
    template["Resources"]["ModelsTable"]["Properties"]["Tags"].append(
        {"Key": "alarm", "Value": {"Ref": "AlarmTopic"}}
    )
    broken = tmp_path / "template.yaml"
    broken.write_text(json.dumps(template))
    with pytest.raises(TemplateError, match="refer to AlarmTopic, which the embedded AWS does not create"):
        embedded_template(test_env, broken)


def test_with_functions_the_stack_is_one_doctor_can_read(test_env: dict[str, str], settings: Settings) -> None:
    """The local stack's account part: each function of the stage, with the stage's environment and a
    role carrying exactly its policy file as CloudFormation resolves it (what tests/iam evaluates), the
    execution role named as the functions' environment names it, and the outputs doctor reads."""
    from esdeploy.iam.code_calls import functions
    from esdeploy.local.account import policy_document
    from tests.iam.policies import StackValues, policy_file, resolve

    values = StackValues.from_settings(settings, "us-east-1", "123456789012")
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        create_resources(session, test_env, functions=True, outputs={"EndpointURL": "http://127.0.0.1:1/"})
        stack = session.client("cloudformation").describe_stacks(StackName="esdeploy-test")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        lambda_, iam = session.client("lambda"), session.client("iam")
        for function in functions():
            config = lambda_.get_function_configuration(FunctionName=f"esdeploy-test-{function.replace('_', '-')}")
            role = config["Role"].rsplit("/", 1)[-1]
            if function == "endpoint_log_retention":  # the template's own function and role
                assert config["Environment"]["Variables"]["RESOURCE_PREFIX"] == settings.resource_prefix
                continue
            assert config["Environment"]["Variables"]["ESDEPLOY_TASKS_TABLE"] == settings.tasks_table
            (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
            carried = policy_document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
            written = resolve(json.loads(policy_file(function).read_text()), values.variables(), function)
            assert carried == written, function
        execution = iam.get_role(RoleName=settings.sagemaker_role_arn.rsplit("/", 1)[-1])["Role"]
    assert execution["Arn"] == settings.sagemaker_role_arn == outputs["SageMakerExecutionRoleArn"]
    assert outputs["EndpointURL"] == "http://127.0.0.1:1/" and outputs["TasksTableName"] == settings.tasks_table
    assert outputs["SsmPrefix"] == values.ssm_prefix and outputs["Stage"] == "test"


# ---- the embedded SQS refuses what SQS refuses -------------------------------------------------

LIMIT = 262_144  # every queue's MaximumMessageSize (infra/template.yaml)


def refused(sqs: Any, url: str, body: str, **more: Any) -> dict[str, Any] | None:
    """SQS's error for this message, or None when it was taken."""
    try:
        sqs.send_message(QueueUrl=url, MessageBody=body, **more)
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return {"code": error.response["Error"]["Code"], "message": error.response["Error"]["Message"]}
    return None


TOO_LONG = {
    "code": "InvalidParameterValue",
    "message": f"One or more parameters are invalid. Reason: Message must be shorter than {LIMIT} bytes.",
}


def bad_character(code: str) -> dict[str, str]:
    return {
        "code": "InvalidMessageContents",
        "message": f"Invalid binary character '#x{code}' was found in the message body, the set of allowed "
                   "characters is #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].",
    }


@pytest.mark.parametrize(
    ("body", "attributes", "answer"),
    [
        ("x" * LIMIT, {}, None),  # 256 KiB exactly is allowed
        ("x" * 300_000, {}, TOO_LONG),  # the 300 KB
        ("é" * (LIMIT // 2 + 1), {}, TOO_LONG),  # bytes count, not characters: 131,073 of them are 262,146 bytes
        # Attributes count too: name, type and value.
        ("x" * (LIMIT - 10), {"due_at": {"DataType": "String", "StringValue": "2026-01-01"}}, TOO_LONG),
        ("a NUL \x00 in JSON text", {}, bad_character("0")),
        ("a bell \x07", {}, bad_character("7")),
        ("a noncharacter \uffff", {}, bad_character("FFFF")),
        ("tab\t, newline\n, return\r, é, 中文 and 😀 are fine", {}, None),
    ],
    ids=["256-KiB", "300-KB", "multi-byte", "attributes", "NUL", "bell", "U+FFFF", "allowed"],
)
def test_the_embedded_sqs_refuses_what_sqs_refuses_with_its_words(
    aws: dict[str, Any], body: str, attributes: dict[str, Any], answer: dict[str, str] | None
) -> None:
    sqs = aws["session"].client("sqs")
    more = {"MessageAttributes": attributes} if attributes else {}
    assert refused(sqs, aws["queues"].requests, body, **more) == answer


def test_a_batch_with_one_message_sqs_refuses_sends_none(aws: dict[str, Any]) -> None:
    sqs = aws["session"].client("sqs")
    url = aws["queues"].requests
    entries = [{"Id": "ok", "MessageBody": "fine"}, {"Id": "bad", "MessageBody": "nul \x00"}]
    with pytest.raises(ClientError) as caught:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert caught.value.response["Error"]["Code"] == "InvalidMessageContents"
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []


def test_the_local_stacks_server_refuses_too(test_env: dict[str, str]) -> None:
    """The local stack's moto server (in the stack's process) gets the same rules from create_resources."""
    from esdeploy.local.aws_server import EmbeddedAws
    from esdeploy.local.processes import LOOPBACK, free_port

    server = EmbeddedAws(LOOPBACK, free_port())
    server.start()
    try:
        session = boto3.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
        urls = create_resources(_EndpointSession(session, server.url), test_env)
        sqs = session.client("sqs", endpoint_url=server.url)
        assert refused(sqs, urls.deploy, "x" * 300_000) == TOO_LONG
        assert refused(sqs, urls.deploy, "\x00") == bad_character("0")
    finally:
        server.stop()


class _EndpointSession:
    """A boto3 session whose clients all talk to one endpoint (the embedded server)."""

    def __init__(self, session: boto3.Session, url: str) -> None:
        self._session, self._url = session, url

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._url)


def test_our_own_sender_escapes_what_sqs_would_refuse(aws: dict[str, Any], settings: Settings) -> None:
    """SqsQueue writes JSON with every non-ASCII character escaped: a NUL, a noncharacter or an emoji in
    a message's text travels as \\u escapes, which SQS takes, and comes back as it was."""
    sqs = aws["session"].client("sqs")
    reason = "from a log line: NUL \x00, bell \x07, \uffff and 😀"
    SqsQueue(sqs, settings.teardown_queue).send(TeardownVariant("m1", "esd-m1-a-b", reason=reason))
    (message,) = sqs.receive_message(QueueUrl=aws["queues"].teardown, WaitTimeSeconds=0)["Messages"]
    assert message["Body"].isascii()
    assert read_teardown_tasks(message["Body"]) == TeardownVariant("m1", "esd-m1-a-b", reason=reason)
