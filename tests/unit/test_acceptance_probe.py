"""`esdeploy acceptance --probe inference-components`: its call sequence on SageMaker, checked by botocore's Stubber
(moto has no inference components, so this is where the probe's code runs outside an account)."""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from chalicelib.adapters.sagemaker_hosting import CONTAINER_ENVIRONMENT
from esdeploy.acceptance.facts import PROBE_FACTS, Findings, Outcome
from esdeploy.acceptance.observer import EventObserver, ObservedEvent
from esdeploy.acceptance.probe import InferenceComponentsProbe, ProbeNames, ProbeResources

NAMES = ProbeNames("20261207000000-ab12")
ENDPOINT = NAMES.endpoint
FIRST, SECOND = NAMES.components
ROLE = "arn:aws:iam::123456789012:role/esdeploy-dev-sagemaker-execution"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0-transformers4.49.0-cpu"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
ARTIFACT = "s3://bucket/models/esdeploy-acceptance/" + "a" * 64 + "/model.tar.gz"
NOW = datetime(2026, 12, 7, tzinfo=UTC)
NOT_FOUND = f'Could not find inference component "{ARN}inference-component/{FIRST}".'


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber, Any, Stubber]]:
    sagemaker, runtime = client("sagemaker"), client("sagemaker-runtime")
    with Stubber(sagemaker) as sm, Stubber(runtime) as rt:
        yield sagemaker, sm, runtime, rt
        sm.assert_no_pending_responses()
        rt.assert_no_pending_responses()


def endpoint(status: str) -> dict[str, Any]:
    return {"EndpointName": ENDPOINT, "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
            "EndpointStatus": status, "CreationTime": NOW, "LastModifiedTime": NOW}


def component(name: str, status: str) -> dict[str, Any]:
    return {"InferenceComponentName": name, "EndpointName": ENDPOINT, "VariantName": "AllTraffic",
            "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
            "InferenceComponentArn": f"arn:aws:sagemaker:us-east-1:123456789012:inference-component/{name}",
            "InferenceComponentStatus": status, "CreationTime": NOW, "LastModifiedTime": NOW}


def embeddings() -> dict[str, Any]:
    raw = json.dumps({"embeddings": [[0.1, 0.2]], "dimension": 2}).encode()
    return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"}


class Ticks:
    """A clock that moves 30 s on each look, and a sleep that does not wait."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        self.now += 30
        return self.now


def test_the_probe_places_two_components_invokes_each_and_records_what_a_deleted_one_answers(
    stubbed: tuple[Any, Stubber, Any, Stubber],
) -> None:
    sagemaker, sm, runtime, rt = stubbed
    tags = [{"Key": "esdeploy-acceptance-run", "Value": NAMES.run_id}]
    sm.add_response("create_model", {"ModelArn": ARN + "model/x"}, {
        "ModelName": ENDPOINT, "ExecutionRoleArn": ROLE, "Tags": tags,
        "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": ARTIFACT, "Environment": dict(CONTAINER_ENVIRONMENT)}})
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/x"}, {
        "EndpointConfigName": ENDPOINT, "ExecutionRoleArn": ROLE, "Tags": tags,
        "ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
                                "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}}]})
    sm.add_response("create_endpoint", {"EndpointArn": ARN + "endpoint/x"},
                    {"EndpointName": ENDPOINT, "EndpointConfigName": ENDPOINT, "Tags": tags})
    sm.add_response("describe_endpoint", endpoint("Creating"), {"EndpointName": ENDPOINT})
    sm.add_response("describe_endpoint", endpoint("InService"), {"EndpointName": ENDPOINT})
    for name, looks in ((FIRST, ("Creating", "Creating", "InService")), (SECOND, ("Creating", "InService"))):
        sm.add_response("create_inference_component", {"InferenceComponentArn": ARN + "inference-component/x"}, {
            "InferenceComponentName": name, "EndpointName": ENDPOINT, "VariantName": "AllTraffic", "Tags": tags,
            "Specification": {"ModelName": ENDPOINT, "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": 0.5, "MinMemoryRequiredInMb": 1024}},
            "RuntimeConfig": {"CopyCount": 1}})
        for status in looks:
            sm.add_response("describe_inference_component", component(name, status), {"InferenceComponentName": name})
    for name in (FIRST, SECOND):
        rt.add_response("invoke_endpoint", embeddings(), {
            "EndpointName": ENDPOINT, "InferenceComponentName": name, "ContentType": "application/json",
            "Accept": "application/json", "Body": ANY})
    sm.add_response("delete_inference_component", {}, {"InferenceComponentName": FIRST})
    sm.add_response("describe_inference_component", component(FIRST, "Deleting"), {"InferenceComponentName": FIRST})
    sm.add_client_error("describe_inference_component", "ValidationException", NOT_FOUND, 400,
                        expected_params={"InferenceComponentName": FIRST})
    rt.add_client_error("invoke_endpoint", "ValidationError", f"Inference Component {FIRST} not found.", 400,
                        expected_params={"EndpointName": ENDPOINT, "InferenceComponentName": FIRST,
                                         "ContentType": "application/json", "Accept": "application/json",
                                         "Body": ANY})
    observer = EventObserver(None, None, "esdeploy-acceptance-x", {})
    observer.seen = [
        ObservedEvent({"source": "aws.sagemaker", "detail-type": "SageMaker Inference Component State Change",
                       "detail": {"InferenceComponentName": SECOND, "Status": "InService"}}, 1.0),
        ObservedEvent({"source": "aws.sagemaker", "detail-type": "SageMaker Endpoint State Change",
                       "detail": {"EndpointName": "someone-else"}}, 2.0),
    ]
    ticks = Ticks()
    findings = Findings(PROBE_FACTS, local=False)

    InferenceComponentsProbe(
        sagemaker, runtime, NAMES, "ml.m5.large", IMAGE, ARTIFACT, ROLE, {"esdeploy-acceptance-run": NAMES.run_id},
        say=lambda _: None, observer=observer, clock=ticks.clock, sleep=lambda _: None,
    ).run(findings)

    found = {key: finding.value for key, finding in findings.found.items()}
    assert all(finding.outcome == Outcome.MEASURED for finding in findings.found.values())
    seconds = found["component_in_service_seconds"]
    cold, warm = f"{FIRST} (first (instance just provisioned))", f"{SECOND} (second (instance already warm))"
    assert list(seconds) == [cold, warm]
    assert all(isinstance(value, float) and value > 0 for value in seconds.values())
    assert seconds[cold] > seconds[warm]  # three looks at the first, two at the second
    answered = {"ok": True, "dimension": 2}
    assert found["component_invocations"] == {FIRST: answered, SECOND: answered}
    assert found["deleted_component_error"] == {
        "ok": False, "code": "ValidationError", "message": f"Inference Component {FIRST} not found.",
        "http_status": 400}
    assert found["component_events"]["detail_types"] == ["SageMaker Inference Component State Change"]
    assert found["component_events"]["events"] == 1


def test_the_teardown_removes_components_before_their_endpoint_and_waits_out_a_refusal(
    stubbed: tuple[Any, Stubber, Any, Stubber],
) -> None:
    sagemaker, sm, _, _ = stubbed
    prefix = "esdeploy-acc-ic-"
    sm.add_response("list_inference_components", {"InferenceComponents": [component(SECOND, "InService")]},
                    {"NameContains": prefix})
    sm.add_response("list_endpoints", {"Endpoints": [endpoint("InService")]}, {"NameContains": prefix})
    sm.add_response("list_endpoint_configs", {"EndpointConfigs": [
        {"EndpointConfigName": ENDPOINT, "EndpointConfigArn": ARN + "endpoint-config/x", "CreationTime": NOW}]},
        {"NameContains": prefix})
    sm.add_response("list_models", {"Models": [
        {"ModelName": ENDPOINT, "ModelArn": ARN + "model/x", "CreationTime": NOW}]}, {"NameContains": prefix})
    sm.add_response("delete_inference_component", {}, {"InferenceComponentName": SECOND})
    # The component is still being deleted: SageMaker refuses the endpoint's delete for now.
    sm.add_client_error("delete_endpoint", "ValidationException",
                        "Cannot delete an endpoint with inference components", 400,
                        expected_params={"EndpointName": ENDPOINT})
    sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": ENDPOINT})
    sm.add_client_error("delete_model", "ValidationException", f"Could not find model {ENDPOINT}.", 400,
                        expected_params={"ModelName": ENDPOINT})
    said: list[str] = []
    slept: list[float] = []

    found = ProbeResources.in_scope(sagemaker, prefix)
    found.delete(said.append, sleep=slept.append)

    assert (found.components, found.endpoints) == ([SECOND], [ENDPOINT])
    assert slept == [10]
    assert said == [f"teardown: deleting inference component {SECOND}", f"teardown: deleting endpoint {ENDPOINT}"]
