"""The local stack's embedded AWS answers SageMaker Runtime's InvokeEndpoint as AWS does, for its local endpoints."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from esdeploy.local.aws_server import EmbeddedAws
from esdeploy.local.hosting import EndpointGoneError
from esdeploy.local.processes import LOOPBACK, free_port


class Endpoints:
    """Local endpoints by name: each answers (status, body); `sent` records what reached them."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.sent: list[tuple[str, bytes, str, str]] = []

    def forward(self, name: str, body: bytes, content_type: str, accept: str) -> tuple[int, bytes, str]:
        if name not in self.answers:
            raise EndpointGoneError(name, "not found")
        self.sent.append((name, body, content_type, accept))
        status, payload = self.answers[name]
        return status, payload, "application/json"


@pytest.fixture
def aws() -> Iterator[tuple[EmbeddedAws, Endpoints]]:
    server = EmbeddedAws(LOOPBACK, free_port())
    server.start()
    endpoints = Endpoints()
    server.hosting = endpoints
    yield server, endpoints
    server.stop()


def client(server: EmbeddedAws, service: str) -> Any:
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def test_invoke_endpoint_reaches_the_local_endpoint_and_returns_its_body(aws: tuple[EmbeddedAws, Endpoints]) -> None:
    server, endpoints = aws
    endpoints.answers["esdlocal-m1-blue"] = (200, b'{"embeddings": [[0.5, 0.5]]}')
    answer = client(server, "sagemaker-runtime").invoke_endpoint(
        EndpointName="esdlocal-m1-blue", ContentType="application/json", Accept="application/json",
        Body=json.dumps({"inputs": ["hi"]}).encode(),
    )
    assert json.loads(answer["Body"].read()) == {"embeddings": [[0.5, 0.5]]}
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert endpoints.sent == [("esdlocal-m1-blue", b'{"inputs": ["hi"]}', "application/json", "application/json")]


def test_an_endpoint_that_is_not_there_is_a_validation_error_as_on_aws(aws: tuple[EmbeddedAws, Endpoints]) -> None:
    server, _ = aws
    with pytest.raises(ClientError) as raised:
        client(server, "sagemaker-runtime").invoke_endpoint(EndpointName="gone", Body=b"{}",
                                                            ContentType="application/json")
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["Error"]["Message"] == "Endpoint gone of account 123456789012 not found."


def test_an_error_of_the_container_is_a_model_error_with_its_status(aws: tuple[EmbeddedAws, Endpoints]) -> None:
    server, endpoints = aws
    endpoints.answers["esdlocal-m1-blue"] = (400, b'{"detail": "inputs must be a list"}')
    with pytest.raises(ClientError) as raised:
        client(server, "sagemaker-runtime").invoke_endpoint(EndpointName="esdlocal-m1-blue", Body=b"{}",
                                                            ContentType="application/json")
    assert raised.value.response["Error"]["Code"] == "ModelError"
    assert raised.value.response["OriginalStatusCode"] == 400
    assert "inputs must be a list" in raised.value.response["Error"]["Message"]


def test_every_other_request_is_motos(aws: tuple[EmbeddedAws, Endpoints]) -> None:
    server, _ = aws
    ssm = client(server, "ssm")
    ssm.put_parameter(Name="/esdeploy/local/models/m1/endpoint", Value="esdlocal-m1-blue", Type="String")
    assert ssm.get_parameter(Name="/esdeploy/local/models/m1/endpoint")["Parameter"]["Value"] == "esdlocal-m1-blue"
