"""Adapter tests: every AWS adapter goes through one classifier (stubbed clients, no network)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from chalicelib.adapters.application_autoscaling import ApplicationAutoScaling
from chalicelib.adapters.dynamodb_table import DocumentTable, speak_python_types
from chalicelib.adapters.dynamodb_tasks import DynamoTaskStore
from chalicelib.adapters.s3_artifacts import S3Artifacts
from chalicelib.adapters.ssm_mirror import SsmAliasMirror
from chalicelib.domain.errors import ConcurrentUpdateError, RetryableError, TerminalHostingError
from chalicelib.domain.models import ScalingPolicy, Task, TaskKind

SESSION = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
URL = "s3://bucket/models/m/model.tar.gz"


@pytest.fixture
def dynamodb() -> Iterator[tuple[DynamoTaskStore, Stubber]]:
    client = SESSION.client("dynamodb")
    table = DocumentTable(speak_python_types(client), "tasks")
    with Stubber(client) as stub:
        yield DynamoTaskStore(table), stub
        stub.assert_no_pending_responses()


@pytest.fixture
def s3() -> Iterator[tuple[S3Artifacts, Stubber]]:
    client = SESSION.client("s3")
    with Stubber(client) as stub:
        yield S3Artifacts(client), stub
        stub.assert_no_pending_responses()


@pytest.fixture
def ssm() -> Iterator[tuple[SsmAliasMirror, Stubber]]:
    client = SESSION.client("ssm")
    with Stubber(client) as stub:
        yield SsmAliasMirror(client, "/esdeploy/test"), stub
        stub.assert_no_pending_responses()


def a_task() -> Task:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    task = Task.new(task_id="t1", kind=TaskKind.DEPLOY, embedding_model_id="m", request_hash="h", at=at)
    task.version = 1
    return task


@pytest.mark.parametrize(
    ("code", "status"),
    [("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400), ("InternalServerError", 500)],
)
def test_dynamodb_throttled_or_5xx_is_retryable_and_says_what_it_was_doing(
    dynamodb: tuple[DynamoTaskStore, Stubber], code: str, status: int
) -> None:
    store, stub = dynamodb
    stub.add_client_error("get_item", code, "slow down", http_status_code=status)
    with pytest.raises(RetryableError, match=f"DynamoDB is busy \\({code}\\) while trying to read the task: slow down"):
        store.get("t1")


def test_a_lost_condition_is_a_concurrent_update_and_a_validation_error_stays_what_it_is(
    dynamodb: tuple[DynamoTaskStore, Stubber],
) -> None:
    store, stub = dynamodb
    stub.add_client_error("put_item", "ConditionalCheckFailedException", "condition failed")
    with pytest.raises(ConcurrentUpdateError, match="task t1 changed since version 1"):
        store.update(a_task())
    # Our own bug (a malformed request) is not retried: it surfaces as the ClientError it is.
    stub.add_client_error("put_item", "ValidationException", "One or more parameter values were invalid")
    with pytest.raises(ClientError, match="parameter values were invalid"):
        store.update(a_task())


def test_an_aws_endpoint_that_does_not_answer_is_retryable() -> None:
    class Unreachable:
        def get_item(self, **_: Any) -> dict[str, Any]:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    with pytest.raises(RetryableError, match="DynamoDB did not answer while trying to read the task"):
        DynamoTaskStore(Unreachable()).get("t1")


def test_s3_missing_is_an_answer_and_503_is_retryable(s3: tuple[S3Artifacts, Stubber]) -> None:
    artifacts, stub = s3
    stub.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", http_status_code=404)
    assert artifacts.read_manifest(URL) is None
    stub.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", http_status_code=404)
    assert artifacts.read_pointer(URL) is None
    stub.add_client_error("get_object", "SlowDown", "Please reduce your request rate.", http_status_code=503)
    busy = f"S3 is busy \\(SlowDown\\) while trying to read the manifest inside {URL}"
    with pytest.raises(RetryableError, match=busy):
        artifacts.read_manifest(URL)


def test_ssm_parameter_already_gone_is_fine_and_denied_is_not_retried(ssm: tuple[SsmAliasMirror, Stubber]) -> None:
    mirror, stub = ssm
    stub.add_client_error("delete_parameter", "ParameterNotFound", "not found")
    mirror.remove("m")
    stub.add_client_error("delete_parameter", "AccessDeniedException", "not authorized", http_status_code=400)
    with pytest.raises(ClientError, match="not authorized"):
        mirror.remove("m")


@pytest.fixture
def autoscaling() -> Iterator[tuple[ApplicationAutoScaling, Stubber]]:
    client = SESSION.client("application-autoscaling")
    with Stubber(client) as stub:
        yield ApplicationAutoScaling(client), stub
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        # Two deliveries of one swap step registering green at the same moment.
        ("ConcurrentUpdateException", "You already have a pending update to an Application Auto Scaling resource."),
        ("InternalServiceException", "The service encountered an internal error."),
    ],
)
def test_application_auto_scaling_busy_is_retryable_not_the_end_of_the_deploy(
    autoscaling: tuple[ApplicationAutoScaling, Stubber], code: str, message: str
) -> None:
    """Both come with a 400 and no throttling code: read as refusals they would end the deploy at its
    swap; a redelivery of the step (safe to run twice) gets through."""
    scaling, stub = autoscaling
    policy = ScalingPolicy(min_instances=1, max_instances=4, target_invocations_per_instance=100)
    stub.add_client_error("register_scalable_target", code, message, http_status_code=400)
    with pytest.raises(RetryableError, match=f"Application Auto Scaling is busy \\({code}\\) while trying to register"):
        scaling.apply("esd-m-a-b", policy)
    stub.add_response("register_scalable_target", {})
    stub.add_client_error("put_scaling_policy", code, message, http_status_code=400)
    with pytest.raises(RetryableError, match="put the target-tracking policy"):
        scaling.apply("esd-m-a-b", policy)
    stub.add_client_error("delete_scaling_policy", code, message, http_status_code=400)
    with pytest.raises(RetryableError, match="delete the scaling policy"):
        scaling.remove("esd-m-a-b")


def test_application_auto_scaling_refusal_stays_terminal(autoscaling: tuple[ApplicationAutoScaling, Stubber]) -> None:
    scaling, stub = autoscaling
    stub.add_client_error(
        "register_scalable_target", "ValidationException", "MaxCapacity must be >= MinCapacity", http_status_code=400
    )
    with pytest.raises(TerminalHostingError, match=r"refused to register .*MaxCapacity"):
        scaling.apply("esd-m-a-b", ScalingPolicy(min_instances=1, max_instances=4, target_invocations_per_instance=100))
