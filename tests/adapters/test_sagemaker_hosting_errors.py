"""Adapter tests: SageMakerHosting on stubbed clients, for what moto cannot show (statuses, errors)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody

from chalicelib.adapters.sagemaker_hosting import (
    CONTAINER_ENVIRONMENT,
    SageMakerHosting,
    make_sagemaker_clients,
)
from chalicelib.domain.errors import (
    EndpointRefusedError,
    InvocationError,
    InvocationTimeoutError,
    QuotaExceededError,
    QuotaKind,
    RetryableError,
    TerminalHostingError,
)
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantInfo, VariantSpec
from esdeploy.local.hosting import LocalHosting
from tests.adapters.conftest import ROLE_ARN, StubbedSageMaker
from tests.fakes import FakeHosting
from tests.fakes.memory import ManualClock

NAME = "esd-e5-small-1a2b3c4d-5e6f7a8b"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"
AT = datetime(2025, 1, 1, tzinfo=UTC)
SPEC = VariantSpec(
    name=NAME,
    embedding_model_id="intfloat/e5-small",
    task_id="task-1",
    model_data_url="s3://esdeploy-artifacts/models/intfloat/e5-small/model.tar.gz",
    image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6",
    instance_type="ml.g5.xlarge",
    initial_instance_count=2,
)
TAGS = [
    {"Key": "embedding_model_id", "Value": "intfloat/e5-small"},
    {"Key": "task_id", "Value": "task-1"},
    {"Key": "managed-by", "Value": "esdeploy"},
]
_ARN_KIND = {"model": "model", "endpoint configuration": "endpoint-config", "endpoint": "endpoint"}


def not_found(kind: str, name: str = NAME) -> str:
    """SageMaker's wording for a resource that does not exist."""
    return f'Could not find {kind} "{ARN}:{_ARN_KIND[kind]}/{name}".'


def already_exists(kind: str, name: str = NAME) -> str:
    return f'Cannot create already existing {kind} "{ARN}:{_ARN_KIND[kind]}/{name}".'


def endpoint(status: str, reason: str | None = None, name: str = NAME) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "EndpointName": name,
        "EndpointArn": f"{ARN}:endpoint/{name}",
        "EndpointConfigName": name,
        "EndpointStatus": status,
        "CreationTime": AT,
        "LastModifiedTime": AT,
    }
    if reason:
        answer["FailureReason"] = reason
    return answer


def model(name: str = NAME) -> dict[str, Any]:
    return {"ModelName": name, "ModelArn": f"{ARN}:model/{name}", "CreationTime": AT}


def endpoint_config(name: str = NAME) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"{ARN}:endpoint-config/{name}",
        "ProductionVariants": [{"VariantName": "AllTraffic"}],
        "CreationTime": AT,
    }


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


# -- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("OutOfService", EndpointState.CREATING),
        ("Creating", EndpointState.CREATING),
        ("Updating", EndpointState.CREATING),
        ("SystemUpdating", EndpointState.CREATING),
        ("RollingBack", EndpointState.CREATING),
        ("InService", EndpointState.IN_SERVICE),
        ("Deleting", EndpointState.DELETING),
        ("Failed", EndpointState.FAILED),
        ("UpdateRollbackFailed", EndpointState.FAILED),
    ],
)
def test_every_sagemaker_status_maps_to_a_state(
    stubbed: StubbedSageMaker, status: str, state: EndpointState
) -> None:
    stubbed.control.add_response("describe_endpoint", endpoint(status), {"EndpointName": NAME})

    described = stubbed.hosting.describe(NAME)

    assert (described.name, described.state, described.platform_status) == (NAME, state, status)


def test_a_status_sagemaker_adds_later_is_waited_on(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_response("describe_endpoint", endpoint("Hibernating"))

    described = stubbed.hosting.describe(NAME)

    assert (described.state, described.platform_status) == (EndpointState.CREATING, "Hibernating")


def test_failed_carries_sagemakers_failure_reason(stubbed: StubbedSageMaker) -> None:
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    stubbed.control.add_response("describe_endpoint", endpoint("Failed", reason))

    assert stubbed.hosting.describe(NAME).failure_reason == reason


def test_failed_without_a_reason_says_where_to_look(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_response("describe_endpoint", endpoint("Failed"))

    reason = stubbed.hosting.describe(NAME).failure_reason

    assert reason is not None and f"/aws/sagemaker/Endpoints/{NAME}" in reason


def test_describe_of_a_missing_endpoint_is_missing(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))

    assert stubbed.hosting.describe(NAME).state is EndpointState.MISSING


@pytest.mark.parametrize(
    ("code", "message", "http_status"),
    [
        ("ThrottlingException", "Rate exceeded", 400),
        ("ValidationException", "Rate exceeded", 400),
        ("InternalFailure", "An internal error occurred", 500),
        ("ServiceUnavailable", "Service unavailable", 503),
        ("SomethingNew", "Bad gateway", 502),
    ],
)
def test_describe_throttled_or_5xx_is_retryable(
    stubbed: StubbedSageMaker, code: str, message: str, http_status: int
) -> None:
    stubbed.control.add_client_error("describe_endpoint", code, message, http_status_code=http_status)

    with pytest.raises(RetryableError, match=f"describe endpoint `{NAME}`.*{message}"):
        stubbed.hosting.describe(NAME)


def test_describe_other_validation_error_is_terminal(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", "1 validation error")

    with pytest.raises(TerminalHostingError, match="1 validation error"):
        stubbed.hosting.describe(NAME)


# -- create ---------------------------------------------------------------------------------


def expect_fresh_create(stubbed: StubbedSageMaker, **variant: Any) -> None:
    """The six calls of a first create, with the exact request of each create (`variant`: more
    production-variant fields than the instance type and count)."""
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_client_error("describe_model", "ValidationException", not_found("model"))
    stubbed.control.add_response(
        "create_model",
        {"ModelArn": f"{ARN}:model/{NAME}"},
        {
            "ModelName": NAME,
            "PrimaryContainer": {
                "Image": SPEC.image_uri,
                "ModelDataUrl": SPEC.model_data_url,
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    "HF_HUB_OFFLINE": "1",
                },
            },
            "ExecutionRoleArn": ROLE_ARN,
            "Tags": TAGS,
        },
    )
    stubbed.control.add_client_error(
        "describe_endpoint_config", "ValidationException", not_found("endpoint configuration")
    )
    stubbed.control.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"{ARN}:endpoint-config/{NAME}"},
        {
            "EndpointConfigName": NAME,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": NAME,
                    "InstanceType": "ml.g5.xlarge",
                    "InitialInstanceCount": 2,
                    **variant,
                }
            ],
            "Tags": TAGS,
        },
    )


def test_first_create_makes_model_config_and_endpoint_with_one_name_and_tags(
    stubbed: StubbedSageMaker,
) -> None:
    expect_fresh_create(stubbed)
    stubbed.control.add_response(
        "create_endpoint",
        {"EndpointArn": f"{ARN}:endpoint/{NAME}"},
        {"EndpointName": NAME, "EndpointConfigName": NAME, "Tags": TAGS},
    )

    stubbed.hosting.create_variant(SPEC)

    assert dict(CONTAINER_ENVIRONMENT)["HF_HUB_OFFLINE"] == "1"


def test_a_variant_bounds_its_containers_download_and_start_up(stubbed: StubbedSageMaker) -> None:
    """A container that crashes at start-up must fail the endpoint within these bounds, not bill
    until SageMaker's own defaults or our deploy deadline give up."""
    bounded = replace(SPEC, startup_timeout_seconds=600, download_timeout_seconds=900)
    expect_fresh_create(
        stubbed, ContainerStartupHealthCheckTimeoutInSeconds=600, ModelDataDownloadTimeoutInSeconds=900
    )
    stubbed.control.add_response("create_endpoint", {"EndpointArn": f"{ARN}:endpoint/{NAME}"})

    stubbed.hosting.create_variant(bounded)


def test_create_when_the_endpoint_exists_creates_nothing(stubbed: StubbedSageMaker) -> None:
    # Even a Failed one: it is reported by describe and torn down, never created twice.
    stubbed.control.add_response("describe_endpoint", endpoint("Failed", "boom"))

    stubbed.hosting.create_variant(SPEC)


def test_create_skips_the_parts_that_exist(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_response("describe_model", model())
    stubbed.control.add_response("describe_endpoint_config", endpoint_config())
    stubbed.control.add_response("create_endpoint", {"EndpointArn": f"{ARN}:endpoint/{NAME}"})

    stubbed.hosting.create_variant(SPEC)


@pytest.mark.parametrize("racing", ["model", "endpoint configuration", "endpoint"])
def test_create_that_loses_a_race_to_already_exists_is_fine(stubbed: StubbedSageMaker, racing: str) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_client_error("describe_model", "ValidationException", not_found("model"))
    if racing == "model":
        stubbed.control.add_client_error("create_model", "ValidationException", already_exists("model"))
    else:
        stubbed.control.add_response("create_model", {"ModelArn": f"{ARN}:model/{NAME}"})
    stubbed.control.add_client_error(
        "describe_endpoint_config", "ValidationException", not_found("endpoint configuration")
    )
    if racing == "endpoint configuration":
        stubbed.control.add_client_error(
            "create_endpoint_config", "ValidationException", already_exists("endpoint configuration")
        )
    else:
        stubbed.control.add_response("create_endpoint_config", {"EndpointConfigArn": "x" * 20})
    if racing == "endpoint":
        stubbed.control.add_client_error("create_endpoint", "ValidationException", already_exists("endpoint"))
    else:
        stubbed.control.add_response("create_endpoint", {"EndpointArn": f"{ARN}:endpoint/{NAME}"})

    stubbed.hosting.create_variant(SPEC)


# SageMaker's own texts (CreateEndpoint answers as users report them, e.g.
# github.com/aws-samples/sagemaker-custom-project-templates/issues/51). The count quotas of models,
# endpoint configurations and endpoints are said the same way; their names are read from the
# message, never assumed, so the two below stand for any such name.
SERVICE_QUOTAS_TAIL = (
    " Please use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not "
    "available, contact AWS support to request an increase for this quota."
)


@pytest.mark.parametrize(
    ("operation", "message", "quota", "kind", "advice"),
    [
        (
            "create_endpoint",
            "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0 Instances, with current "
            "utilization of 0 Instances and a request delta of 2 Instances." + SERVICE_QUOTAS_TAIL,
            "ml.g5.xlarge for endpoint usage", QuotaKind.INSTANCE_TYPE, "another instance type",
        ),
        (
            "create_endpoint",
            "The account-level service limit 'Number of instances across active endpoints' is 3 Instances, with "
            "current utilization of 3 Instances and a request delta of 1 Instances. Please contact AWS support "
            "to request an increase for this limit.",
            "Number of instances across active endpoints", QuotaKind.INSTANCES, "this quota counts every type",
        ),
        (
            "create_model",
            "The account-level service limit 'Number of models' is 1000 Models, with current utilization of "
            "1000 Models and a request delta of 1 Models." + SERVICE_QUOTAS_TAIL,
            "Number of models", QuotaKind.RESOURCES, "no longer uses",
        ),
        (
            "create_endpoint_config",
            "The account-level service limit 'Number of endpoint configurations' is 1000 EndpointConfigs, with "
            "current utilization of 1000 EndpointConfigs and a request delta of 1 EndpointConfigs."
            + SERVICE_QUOTAS_TAIL,
            "Number of endpoint configurations", QuotaKind.RESOURCES, "no longer uses",
        ),
        ("create_endpoint", "Limit exceeded.", None, None, "SageMaker's words name the quota"),
    ],
)
def test_create_over_quota_is_terminal_and_names_the_quota_sagemaker_named(
    stubbed: StubbedSageMaker, operation: str, message: str, quota: str | None, kind: QuotaKind | None, advice: str
) -> None:
    calls: list[tuple[str, Any]] = [
        ("describe_endpoint", not_found("endpoint")),
        ("describe_model", not_found("model")),
        ("create_model", {"ModelArn": f"{ARN}:model/{NAME}"}),
        ("describe_endpoint_config", not_found("endpoint configuration")),
        ("create_endpoint_config", {"EndpointConfigArn": f"{ARN}:endpoint-config/{NAME}"}),
        ("create_endpoint", None),
    ]
    for call, answer in calls:  # every call up to the refused one, as a first create makes them
        if call == operation:
            stubbed.control.add_client_error(call, "ResourceLimitExceeded", message)
            break
        if isinstance(answer, str):
            stubbed.control.add_client_error(call, "ValidationException", answer)
        else:
            stubbed.control.add_response(call, answer)

    with pytest.raises(QuotaExceededError) as caught:  # a TerminalHostingError the worker ends `refused`
        stubbed.hosting.create_variant(SPEC)

    error = caught.value
    assert (error.quota, error.kind, error.said) == (quota, kind, message)
    said = str(error)
    assert "quota" in said and message in said and advice in said
    assert "<instance type>" not in said
    if quota is not None:
        assert f"search '{quota}'" in said
    if kind is QuotaKind.RESOURCES:
        assert "for endpoint usage" not in said and "another instance type do not help" in said


def test_create_throttled_is_retryable(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_client_error("describe_model", "ValidationException", not_found("model"))
    stubbed.control.add_client_error("create_model", "ThrottlingException", "Rate exceeded")

    with pytest.raises(RetryableError, match=f"ThrottlingException.*create model `{NAME}`.*Rate exceeded"):
        stubbed.hosting.create_variant(SPEC)


def test_create_with_a_missing_artifact_is_terminal_not_already_gone(stubbed: StubbedSageMaker) -> None:
    # "Could not find model data" is a bad artifact, not the "Could not find model" of a lookup.
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_client_error("describe_model", "ValidationException", not_found("model"))
    stubbed.control.add_client_error(
        "create_model", "ValidationException", f"Could not find model data at {SPEC.model_data_url}."
    )

    with pytest.raises(TerminalHostingError, match="Could not find model data at s3://esdeploy-artifacts"):
        stubbed.hosting.create_variant(SPEC)


def test_create_whose_model_vanished_meanwhile_is_retryable(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_response("describe_model", model())
    stubbed.control.add_client_error(
        "describe_endpoint_config", "ValidationException", not_found("endpoint configuration")
    )
    stubbed.control.add_client_error("create_endpoint_config", "ValidationException", not_found("model"))

    with pytest.raises(RetryableError, match="the model it needs is gone"):
        stubbed.hosting.create_variant(SPEC)


def test_create_denied_is_terminal_and_names_pass_role(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_client_error("describe_model", "ValidationException", not_found("model"))
    stubbed.control.add_client_error(
        "create_model", "AccessDeniedException", "not authorized to perform: iam:PassRole", http_status_code=403
    )

    with pytest.raises(TerminalHostingError, match=r"denied.*iam:PassRole"):
        stubbed.hosting.create_variant(SPEC)


def test_create_with_a_rejected_config_is_terminal(stubbed: StubbedSageMaker) -> None:
    expect_fresh_create(stubbed)
    stubbed.control.add_client_error(
        "create_endpoint", "ValidationException", "The image is not compatible with ml.g5.xlarge"
    )

    with pytest.raises(TerminalHostingError, match=r"rejected.*not compatible.*Check the deploy config"):
        stubbed.hosting.create_variant(SPEC)


def test_lookup_before_create_throttled_is_retryable(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("describe_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_client_error(
        "describe_model", "ThrottlingException", "Rate exceeded", http_status_code=400
    )

    with pytest.raises(RetryableError, match="look up model"):
        stubbed.hosting.create_variant(SPEC)


# -- delete ---------------------------------------------------------------------------------


def test_delete_goes_endpoint_then_config_then_model(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_response("delete_endpoint", {}, {"EndpointName": NAME})
    stubbed.control.add_response("delete_endpoint_config", {}, {"EndpointConfigName": NAME})
    stubbed.control.add_response("delete_model", {}, {"ModelName": NAME})

    stubbed.hosting.delete_variant(NAME)


def test_delete_of_parts_already_gone_is_fine(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("delete_endpoint", "ValidationException", not_found("endpoint"))
    stubbed.control.add_client_error(
        "delete_endpoint_config", "ValidationException", not_found("endpoint configuration")
    )
    stubbed.control.add_client_error("delete_model", "ValidationException", not_found("model"))

    stubbed.hosting.delete_variant(NAME)


def test_delete_of_an_endpoint_still_creating_is_retryable_and_keeps_the_rest(
    stubbed: StubbedSageMaker,
) -> None:
    stubbed.control.add_client_error(
        "delete_endpoint", "ValidationException", f'Cannot update in-progress endpoint "{ARN}:endpoint/{NAME}".'
    )

    with pytest.raises(RetryableError, match="still Creating or Updating"):
        stubbed.hosting.delete_variant(NAME)


class _SlowDownload:
    """An S3 client whose download never ends while the test runs: the local endpoint stays Creating."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def download_file(self, *_: Any, **_config: Any) -> None:
        self.release.wait(30)
        raise RuntimeError("the test is over")


def test_the_stand_ins_refuse_to_delete_a_creating_endpoint_exactly_as_sagemaker_hosting_does(
    stubbed: StubbedSageMaker, tmp_path: Path
) -> None:
    stubbed.control.add_client_error(
        "delete_endpoint", "ValidationException", f'Cannot update in-progress endpoint "{ARN}:endpoint/{NAME}".'
    )
    with pytest.raises(RetryableError) as sagemaker:
        stubbed.hosting.delete_variant(NAME)

    fake = FakeHosting(clock=ManualClock(), creation_seconds=600)
    fake.create_variant(SPEC)
    with pytest.raises(RetryableError) as faked:
        fake.delete_variant(NAME)

    s3 = _SlowDownload()
    local = LocalHosting(s3, tmp_path, creation_seconds=600)
    local.create_variant(SPEC)
    try:
        with pytest.raises(RetryableError) as stood_in:
            local.delete_variant(NAME)
    finally:
        s3.release.set()
        local.close()

    assert str(faked.value) == str(sagemaker.value) == str(stood_in.value)


def test_delete_throttled_is_retryable(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_response("delete_endpoint", {})
    stubbed.control.add_response("delete_endpoint_config", {})
    stubbed.control.add_client_error("delete_model", "ThrottlingException", "Rate exceeded")

    with pytest.raises(RetryableError, match=f"delete model `{NAME}`"):
        stubbed.hosting.delete_variant(NAME)


# -- invoke ---------------------------------------------------------------------------------


def test_invoke_sends_json_and_parses_the_answer(stubbed: StubbedSageMaker) -> None:
    answer = {"embeddings": [[0.6, 0.8]], "model": "intfloat/e5-small", "dimension": 2}
    stubbed.runtime.add_response(
        "invoke_endpoint",
        {"Body": body(json.dumps(answer).encode()), "ContentType": "application/json"},
        {
            "EndpointName": NAME,
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": json.dumps({"inputs": ["hello"]}).encode(),
        },
    )

    assert stubbed.hosting.invoke(NAME, {"inputs": ["hello"]}) == {**answer, "serving": "handler"}


def test_invoke_reads_teis_bare_list_of_vectors(stubbed: StubbedSageMaker) -> None:
    """TEI answers /invocations with a JSON list, one vector per input, and names no model."""
    stubbed.runtime.add_response("invoke_endpoint", {"Body": body(b"[[0.6,0.8],[1.0,0.0]]")})

    answer = stubbed.hosting.invoke(NAME, {"inputs": ["hello", "again"]})

    assert answer == {"embeddings": [[0.6, 0.8], [1.0, 0.0]], "dimension": 2, "serving": "tei"}


def test_invoke_model_error_400_is_the_callers_refusal_with_the_log_stream(stubbed: StubbedSageMaker) -> None:
    stubbed.runtime.add_client_error(
        "invoke_endpoint",
        "ModelError",
        'Received client error (400) from primary with message "inputs[0] is not a string"',
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": 400,
            "LogStreamArn": f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{NAME}",
        },
    )

    with pytest.raises(EndpointRefusedError) as caught:
        stubbed.hosting.invoke(NAME, {"inputs": [1]})

    message = str(caught.value)
    assert caught.value.status == 400 and isinstance(caught.value, InvocationError)
    assert f"endpoint {NAME} refused the request (400)" in message
    assert "inputs[0] is not a string" in message and "log-group:/aws/sagemaker/Endpoints" in message


def test_invoke_model_error_500_is_the_models_failure(stubbed: StubbedSageMaker) -> None:
    stubbed.runtime.add_client_error(
        "invoke_endpoint",
        "ModelError",
        'Received server error (500) from primary with message "CUDA out of memory"',
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 500},
    )

    with pytest.raises(InvocationError) as caught:
        stubbed.hosting.invoke(NAME, {"inputs": ["hello"]})

    assert not isinstance(caught.value, EndpointRefusedError)
    assert f"endpoint `{NAME}` failed the request (status 500)" in str(caught.value)
    assert f"/aws/sagemaker/Endpoints/{NAME}" in str(caught.value)


def test_invoke_of_a_missing_endpoint_is_an_invocation_error(stubbed: StubbedSageMaker) -> None:
    stubbed.runtime.add_client_error(
        "invoke_endpoint", "ValidationError", f"Endpoint {NAME} of account 123456789012 not found."
    )

    with pytest.raises(InvocationError, match=f"refused the request \\(ValidationError\\).*{NAME}.*not found"):
        stubbed.hosting.invoke(NAME, {"inputs": ["hello"]})


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        ("ThrottlingException", 400),
        ("ServiceUnavailable", 503),
        ("InternalFailure", 500),
        ("InternalDependencyException", 530),
        ("ModelNotReadyException", 429),
    ],
)
def test_invoke_throttled_or_5xx_is_retryable(stubbed: StubbedSageMaker, code: str, http_status: int) -> None:
    stubbed.runtime.add_client_error("invoke_endpoint", code, "try again", http_status_code=http_status)

    busy = f"SageMaker Runtime is busy \\({code}\\) while trying to invoke endpoint `{NAME}`"
    with pytest.raises(RetryableError, match=busy):
        stubbed.hosting.invoke(NAME, {"inputs": ["hello"]})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON: '<html>502"),
        (b'{"error": "x"}', "neither serving answers like this"),
        (b'[["a", 0.2]]', r"the answer\[0\] holds a value that is not a finite number"),
        (b'{"embeddings": [[0.1], [0.1, 0.2]]}', r"embeddings\[1\] has 2 values"),
        (b"", "not JSON"),
    ],
)
def test_invoke_with_an_unusable_body_is_an_invocation_error(
    stubbed: StubbedSageMaker, raw: bytes, message: str
) -> None:
    stubbed.runtime.add_response("invoke_endpoint", {"Body": body(raw)})

    with pytest.raises(InvocationError, match=message):
        stubbed.hosting.invoke(NAME, {"inputs": ["hello"]})


def test_invoke_timeout_is_retryable() -> None:
    class TimingOut:
        def invoke_endpoint(self, **_: Any) -> dict[str, Any]:
            raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")

    hosting = SageMakerHosting(object(), TimingOut(), role_arn=ROLE_ARN)  # type: ignore[arg-type]

    with pytest.raises(RetryableError, match=f"did not answer while trying to invoke endpoint `{NAME}`: Read timeout"):
        hosting.invoke(NAME, {"inputs": ["hello"]})


def test_invoke_with_a_deadline_gives_up_at_the_deadline(
    silent_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The smoke test's bound holds for the whole call: one attempt, not the client's retries of 25 s."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    runtime = boto3.session.Session().client("sagemaker-runtime", endpoint_url=silent_endpoint)
    hosting = SageMakerHosting(object(), runtime, role_arn=ROLE_ARN)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError, match=f"endpoint {NAME} did not answer in 0.5 s"):
        hosting.invoke(NAME, {"inputs": ["hello"]}, timeout_seconds=0.5)
    assert time.monotonic() - started < 5


# -- list -----------------------------------------------------------------------------------


def test_list_paginates_filters_by_prefix_and_reads_tags_once_per_variant(stubbed: StubbedSageMaker) -> None:
    prefix = "esd-e5-small-1a2b3c4d-"
    other = "esd-e5-small-1a2b3c4d-99999999"
    lookalike = "x" + NAME
    stubbed.control.add_response(
        "list_endpoints",
        {
            "Endpoints": [
                {k: v for k, v in endpoint("InService").items() if k != "EndpointConfigName"},
                {k: v for k, v in endpoint("InService", name=lookalike).items() if k != "EndpointConfigName"},
            ],
            "NextToken": "page-2",
        },
        {"NameContains": prefix},
    )
    stubbed.control.add_response(
        "list_endpoints", {"Endpoints": []}, {"NameContains": prefix, "NextToken": "page-2"}
    )
    stubbed.control.add_response(
        "list_endpoint_configs",
        {"EndpointConfigs": [{k: v for k, v in endpoint_config().items() if k != "ProductionVariants"}]},
        {"NameContains": prefix},
    )
    stubbed.control.add_response("list_models", {"Models": [model(), model(other)]}, {"NameContains": prefix})
    stubbed.control.add_response("list_tags", {"Tags": TAGS}, {"ResourceArn": f"{ARN}:endpoint/{NAME}"})
    # The leftover model was deleted between the listing and its tags: no owner to report.
    stubbed.control.add_client_error(
        "list_tags",
        "ValidationException",
        not_found("model", other),
        expected_params={"ResourceArn": f"{ARN}:model/{other}"},
    )

    found = stubbed.hosting.list_variants(prefix)

    assert found == [
        VariantInfo(NAME, "intfloat/e5-small", "task-1", True, True, True),
        VariantInfo(other, None, None, False, False, True),
    ]


def test_list_throttled_is_retryable(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_client_error("list_endpoints", "ThrottlingException", "Rate exceeded")

    with pytest.raises(RetryableError, match="list variants named `esd-\\*`"):
        stubbed.hosting.list_variants("esd-")


def test_list_tags_throttled_is_retryable_not_ownerless(stubbed: StubbedSageMaker) -> None:
    stubbed.control.add_response("list_endpoints", {"Endpoints": []})
    stubbed.control.add_response("list_endpoint_configs", {"EndpointConfigs": []})
    stubbed.control.add_response("list_models", {"Models": [model()]})
    stubbed.control.add_client_error("list_tags", "ValidationException", "Rate exceeded")

    with pytest.raises(RetryableError, match="Rate exceeded"):
        stubbed.hosting.list_variants("esd-")


# -- clients and import weight ----------------------------------------------------------------


def test_clients_retry_and_time_out_as_configured() -> None:
    clients = make_sagemaker_clients("eu-west-1")

    control_config: Any = clients.control.meta.config
    runtime_config: Any = clients.runtime.meta.config

    assert clients.control.meta.region_name == clients.runtime.meta.region_name == "eu-west-1"
    assert control_config.retries == {"mode": "adaptive", "total_max_attempts": 5}
    assert runtime_config.retries == {"mode": "standard", "total_max_attempts": 2}
    # Every attempt of the smoke test's InvokeEndpoint fits in the deploy worker's Lambda timeout.
    worst = (runtime_config.connect_timeout + runtime_config.read_timeout) * 2
    deploy_worker_timeout = json.loads(
        (Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text()
    )["lambda_functions"]["deploy_worker"]["lambda_timeout"]
    assert worst < deploy_worker_timeout
    control, runtime = clients
    assert control is clients.control and runtime is clients.runtime


def test_importing_the_adapter_does_not_import_the_sagemaker_sdk() -> None:
    probe = (
        "import sys, chalicelib.adapters.sagemaker_hosting\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sagemaker', 'sagemaker_core', 'torch', 'pandas', 'numpy'))\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )

    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
