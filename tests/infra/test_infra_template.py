"""The packaged template (`make package`) has the properties issue #6 asks for."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from infra_support import (
    STAGES,
    function_settings,
    parameter_defaults,
    stage_environment,
    substitute,
)

from chalicelib.adapters.cloudwatch_shapes import alarm_state_change
from chalicelib.adapters.dynamodb_tasks import EXPIRES_AT
from chalicelib.adapters.sagemaker_shapes import endpoint_state_change
from chalicelib.domain.models import EndpointState
from chalicelib.domain.names import variant_alarm_names, variant_name
from esdeploy.local.event_rules import EventRules

# Chalice function name -> (logical id in the template, env var naming the queue it consumes)
SQS_FUNCTIONS = {
    "requests_worker": ("RequestsWorker", "ESDEPLOY_REQUESTS_QUEUE"),
    "deploy_worker": ("DeployWorker", "ESDEPLOY_DEPLOY_QUEUE"),
    "teardown_worker": ("TeardownWorker", "ESDEPLOY_TEARDOWN_QUEUE"),
    "deploy_dead_letters": ("DeployDeadLetters", None),
    "teardown_dead_letters": ("TeardownDeadLetters", None),
}
WORK_QUEUES = {"RequestsQueue": "requests", "DeployTasksQueue": "deploy-tasks", "TeardownTasksQueue": "teardown-tasks"}


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def sqs_event(function: dict[str, Any]) -> dict[str, Any]:
    events = [e for e in function["Properties"].get("Events", {}).values() if e["Type"] == "SQS"]
    assert len(events) == 1, events
    return events[0]["Properties"]


def queue_of(event: dict[str, Any]) -> str:
    """The logical id of the queue an event source reads; it must be a reference, not a name."""
    queue = event["Queue"]
    assert isinstance(queue, dict) and set(queue) == {"Fn::Sub"}, queue
    assert queue["Fn::Sub"].startswith("${") and queue["Fn::Sub"].endswith(".Arn}"), queue
    return queue["Fn::Sub"][2:-5]


@pytest.mark.parametrize("stage", STAGES)
def test_parameters_are_pinned_to_the_packaged_stage(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    env = stage_environment(stage)
    params = parameter_defaults(template)
    assert params["Stage"] == stage
    assert params["ResourcePrefix"] == env["ESDEPLOY_RESOURCE_PREFIX"]
    assert params["SsmPrefix"] == env["ESDEPLOY_SSM_PREFIX"]
    assert params["ArtifactPrefix"] + "/" == env["ESDEPLOY_ARTIFACT_PREFIX"]
    assertion = template["Rules"]["PackagedStage"]["Assertions"][0]["Assert"]
    assert assertion == {"Fn::Equals": [{"Ref": "Stage"}, stage]}


@pytest.mark.parametrize("stage", STAGES)
def test_resource_names_match_chalice_config(packaged: Any, stage: str) -> None:
    """Local runs and tests use the names in .chalice/config.json; the stack must create those."""
    _, template = packaged(stage)
    env = stage_environment(stage)
    params = parameter_defaults(template)
    res = template["Resources"]

    def name(logical: str, key: str) -> str:
        return str(substitute(res[logical]["Properties"][key], params))

    assert name("TasksTable", "TableName") == env["ESDEPLOY_TASKS_TABLE"]
    assert name("ModelsTable", "TableName") == env["ESDEPLOY_MODELS_TABLE"]
    assert name("RequestsQueue", "QueueName") == env["ESDEPLOY_REQUESTS_QUEUE"]
    assert name("DeployTasksQueue", "QueueName") == env["ESDEPLOY_DEPLOY_QUEUE"]
    assert name("TeardownTasksQueue", "QueueName") == env["ESDEPLOY_TEARDOWN_QUEUE"]
    assert name("DeployTasksDeadLetterQueue", "QueueName") == f"esdeploy-{stage}-deploy-tasks-dlq"
    assert name("TeardownTasksDeadLetterQueue", "QueueName") == f"esdeploy-{stage}-teardown-tasks-dlq"
    assert name("RequestsDeadLetterQueue", "QueueName") == f"esdeploy-{stage}-requests-dlq"


@pytest.mark.parametrize("stage", STAGES)
def test_functions_get_stack_resources_through_their_environment(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    for logical, function in resources_of(template, "AWS::Serverless::Function").items():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["ESDEPLOY_ARTIFACT_BUCKET"] == {"Ref": "ArtifactBucket"}, logical
        assert env["ESDEPLOY_SAGEMAKER_ROLE_ARN"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}, logical
        assert env["ESDEPLOY_TASKS_TABLE"] == {"Ref": "TasksTable"}, logical
        log_group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert template["Resources"][log_group]["Type"] == "AWS::Logs::LogGroup", logical


@pytest.mark.parametrize("stage", STAGES)
def test_sqs_event_sources_report_partial_failures_from_our_queues(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    functions = resources_of(template, "AWS::Serverless::Function")
    consumed = set()
    for chalice_name, (logical, _) in SQS_FUNCTIONS.items():
        props = functions[logical]["Properties"]
        event = sqs_event(functions[logical])
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical
        queue = queue_of(event)
        assert template["Resources"][queue]["Type"] == "AWS::SQS::Queue", logical
        consumed.add(queue)
        # Throttled SQS invocations count as receives; capping the mapping's concurrency at the
        # reserved concurrency keeps a burst from pushing healthy messages into the DLQ.
        reserved = props.get("ReservedConcurrentExecutions")
        assert reserved == function_settings(chalice_name).get("reserved_concurrency"), logical
        assert reserved is not None and event["ScalingConfig"]["MaximumConcurrency"] <= reserved, logical
    # The requests DLQ is the only queue nobody consumes: it only alarms.
    queues = set(resources_of(template, "AWS::SQS::Queue"))
    assert queues - consumed == {"RequestsDeadLetterQueue"}


@pytest.mark.parametrize("stage", STAGES)
def test_visibility_timeout_is_six_times_the_consumer_timeout(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    functions = resources_of(template, "AWS::Serverless::Function")
    for logical, _ in SQS_FUNCTIONS.values():
        timeout = functions[logical]["Properties"]["Timeout"]
        queue = template["Resources"][queue_of(sqs_event(functions[logical]))]
        assert queue["Properties"]["VisibilityTimeout"] >= 6 * timeout, logical


@pytest.mark.parametrize("stage", STAGES)
def test_queues_are_encrypted_and_work_queues_redrive(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    queues = resources_of(template, "AWS::SQS::Queue")
    for logical, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, logical
    for logical in WORK_QUEUES:
        redrive = queues[logical]["Properties"]["RedrivePolicy"]
        dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert queues[dlq]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert 3 <= redrive["maxReceiveCount"] <= 10, logical


@pytest.mark.parametrize("stage", STAGES)
def test_tables_have_recovery_encryption_and_prod_protection(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    for logical in ("TasksTable", "ModelsTable"):
        props = template["Resources"][logical]["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}
    tasks = template["Resources"]["TasksTable"]["Properties"]
    assert tasks["KeySchema"] == [{"AttributeName": "task_id", "KeyType": "HASH"}]
    (index,) = tasks["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-model"
    assert index["KeySchema"] == [
        {"AttributeName": "model_kind", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    # the attribute the task store writes (epoch seconds) when a task ends (issue 11, 3.9)
    assert tasks["TimeToLiveSpecification"] == {"AttributeName": EXPIRES_AT, "Enabled": True}


@pytest.mark.parametrize("stage", STAGES)
def test_artifact_bucket_is_private_encrypted_versioned_and_tls_only(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    bucket = template["Resources"]["ArtifactBucket"]
    # kept on destroy, so its name must not be fixed or the next deploy finds it taken (3.9)
    assert bucket["DeletionPolicy"] == "Retain"
    assert "BucketName" not in bucket["Properties"]
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (statement,) = template["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("stage", STAGES)
def test_endpoint_state_changes_reach_the_deploy_queue(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    rule = template["Resources"]["EndpointStateChangeRule"]["Properties"]
    assert rule["EventPattern"]["detail-type"] == ["SageMaker Endpoint State Change"]
    assert rule["EventPattern"]["detail"]["EndpointName"] == [{"prefix": {"Fn::Sub": "${ResourcePrefix}-"}}]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["DeployTasksQueue", "Arn"]}
    statements = template["Resources"]["DeployTasksQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert allow and allow[0]["Principal"] == {"Service": "events.amazonaws.com"}


@pytest.mark.parametrize("stage", STAGES)
def test_only_alarms_of_our_name_going_to_alarm_reach_the_deploy_worker(packaged: Any, stage: str) -> None:
    """Every ALARM transition of the account used to take a deploy-worker slot (Application Auto
    Scaling's TargetTracking-* alarms among them). The packaged rules, with the stage's parameters,
    decide as EventBridge does (moto's pattern matcher)."""
    _, template = packaged(stage)
    parameters = parameter_defaults(template)
    prefix = parameters["ResourcePrefix"]
    rules = EventRules.targeting(template, "DeployTasksQueue", parameters)
    variant = variant_name(prefix, "m1", "t1")
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def routed(name: str, state: str = "ALARM") -> list[str]:
        return rules.matching(alarm_state_change(name, state, "Threshold Crossed", at, "123456789012", "us-east-1"))

    for own in variant_alarm_names(variant):
        assert routed(own) == ["AlarmStateChangeRule"]
    assert routed(f"{prefix}-checkout-errors") == ["AlarmStateChangeRule"]  # a caller's alarm named so
    assert routed(variant_alarm_names(variant)[0], state="OK") == []
    assert routed(f"TargetTracking-endpoint/{variant}/variant/AllTraffic-AlarmHigh-0c1d2e3f") == []
    assert routed("checkout-errors") == []  # read at each look of the bake instead
    changed = endpoint_state_change(variant, EndpointState.IN_SERVICE, {}, None, region="us-east-1",
                                    account="123456789012")
    assert rules.matching(changed) == ["EndpointStateChangeRule"]
    elsewhere = endpoint_state_change("someone-elses", EndpointState.IN_SERVICE, {}, None, region="us-east-1",
                                      account="123456789012")
    assert rules.matching(elsewhere) == []


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_requires_sigv4_on_every_route(packaged: Any, stage: str) -> None:
    """Only the local stack serves without auth: a dev API is on the internet like prod's."""
    _, template = packaged(stage)
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert body["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    operations = [(path, op) for path, ops in body["paths"].items() for method, op in ops.items()
                  if method in ("get", "post", "put", "delete", "patch")]
    assert operations
    for path, operation in operations:
        assert {"sigv4": []} in operation.get("security", []), path


@pytest.mark.parametrize("stage", STAGES)
def test_api_is_regional(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    assert template["Resources"]["RestAPI"]["Properties"]["EndpointConfiguration"] == "REGIONAL"


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_has_its_own_settings(packaged: Any, stage: str) -> None:
    """A new handler must not slip out with Chalice's defaults (60 s, 128 MB, no log group)."""
    _, template = packaged(stage)
    for logical, function in resources_of(template, "AWS::Serverless::Function").items():
        handler = function["Properties"]["Handler"].split(".", 1)[1]
        name = "api_handler" if handler == "app" else handler
        settings = function_settings(name)
        assert {"lambda_timeout", "lambda_memory_size"} <= set(settings), f"{logical}: add {name} to lambda_functions"
        assert function["Properties"]["Timeout"] == settings["lambda_timeout"], logical


@pytest.mark.parametrize("stage", STAGES)
def test_the_api_stage_is_throttled(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    (settings,) = template["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    assert settings == {
        "ResourcePath": "/*",
        "HttpMethod": "*",
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    params = parameter_defaults(template)
    rate, burst = float(params["ApiThrottlingRateLimit"]), float(params["ApiThrottlingBurstLimit"])
    # a control plane plus the invoke route: tens of requests a second, bursts of a few times that
    assert 1 <= rate <= 100 and rate <= burst <= 4 * rate


@pytest.mark.parametrize("stage", STAGES)
def test_endpoint_log_groups_get_a_retention_every_hour(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    res = template["Resources"]
    function = res["EndpointLogRetention"]["Properties"]
    assert function["Environment"]["Variables"] == {
        "RESOURCE_PREFIX": {"Ref": "ResourcePrefix"}, "RETENTION_DAYS": {"Ref": "LogRetentionDays"}}
    schedule = res["EndpointLogRetentionSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == "rate(1 hour)"
    assert schedule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["EndpointLogRetention", "Arn"]}
    permission = res["EndpointLogRetentionPermission"]["Properties"]
    assert permission["SourceArn"] == {"Fn::GetAtt": ["EndpointLogRetentionSchedule", "Arn"]}
    assert permission["Principal"] == "events.amazonaws.com"


GATEWAY_ANSWERS = ("DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN", "THROTTLED", "INTEGRATION_TIMEOUT")


@pytest.mark.parametrize("stage", STAGES)
def test_api_gateways_own_answers_are_in_our_detail_shape(packaged: Any, stage: str) -> None:
    """An unknown path, an unsigned or denied request, throttling, a timeout: API Gateway answers
    these itself, by default as {"message": ...}. Each must read {"detail": "..."} like the app's,
    with the gateway's message in it (rendered here as API Gateway renders the template)."""
    import json

    _, template = packaged(stage)
    api = template["Resources"]["RestAPI"]
    responses = api["Properties"]["GatewayResponses"]
    assert set(GATEWAY_ANSWERS) <= set(responses)
    # The DEFAULT_* ones cover every other type (ACCESS_DENIED, INVALID_SIGNATURE, EXPIRED_TOKEN, ...).
    message = 'User: arn:aws:sts::123456789012:assumed-role/x is not authorized to perform: "execute-api:Invoke"'
    for kind in GATEWAY_ANSWERS:
        rendered = responses[kind]["ResponseTemplates"]["application/json"].replace(
            "$context.error.messageString", json.dumps(message)
        )
        body = json.loads(rendered)
        assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"], (kind, rendered)
    assert "Missing Authentication Token" in json.loads(
        responses["MISSING_AUTHENTICATION_TOKEN"]["ResponseTemplates"]["application/json"]
    )["detail"], "the CLI's hint to add --iam keys on this text"
    # In the API's definition: standalone GatewayResponse resources are dropped when SAM redeploys.
    assert not resources_of(template, "AWS::ApiGateway::GatewayResponse")
