"""Contract fixtures: one Hosting harness per implementation (the fake; SageMakerHosting on moto)."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol

import boto3
import pytest
import requests
from moto import mock_aws

from chalicelib.adapters.sagemaker_hosting import SageMakerHosting, make_sagemaker_clients
from chalicelib.adapters.sagemaker_shapes import PRODUCTION_VARIANT, variant_tags
from chalicelib.ports import Hosting, VariantSpec
from tests.fakes import FakeHosting

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.type_defs import TagTypeDef

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/esdeploy-contract-sagemaker"
# moto validates instance types against an old list without ml.g5.*; the contract does not
# depend on the type, so the cases use one both sides accept.
INSTANCE_TYPE: Final = "ml.m5.large"
MOTO_RESULTS_API = "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results"
_CREATE_OPERATIONS = {
    "CreateModel": "model",
    "CreateEndpointConfig": "endpoint_config",
    "CreateEndpoint": "endpoint",
}


class HostingHarness(Protocol):
    """A Hosting implementation plus the back doors the contract cases need."""

    kind: str
    hosting: Hosting

    def plant(self, spec: VariantSpec, parts: Iterable[str]) -> None:
        """Make some parts directly on the platform, bypassing the port (a crashed create)."""
        ...

    def prime_answer(self, name: str, answer: dict[str, Any] | list[list[float]]) -> None:
        """Make the next invocation of `name` answer `answer` (no-op where it already does)."""
        ...

    def creations(self) -> Counter[str]:
        """Create requests the port sent to the platform, per part."""
        ...


class FakeHarness:
    kind = "fake"

    def __init__(self) -> None:
        self.fake = FakeHosting(dimension=8)
        self.hosting: Hosting = self.fake

    def plant(self, spec: VariantSpec, parts: Iterable[str]) -> None:
        self.fake.seed(spec, parts=parts)

    def prime_answer(self, name: str, answer: dict[str, Any] | list[list[float]]) -> None:
        return None  # the fake computes its good answer itself

    def creations(self) -> Counter[str]:
        return Counter(self.fake.part_creations)


class MotoHarness:
    kind = "sagemaker-moto"

    def __init__(self) -> None:
        clients = make_sagemaker_clients(REGION)
        self._created: Counter[str] = Counter()
        for operation, part in _CREATE_OPERATIONS.items():
            clients.control.meta.events.register(
                f"before-call.sagemaker.{operation}", self._counter(part)
            )
        self.hosting: Hosting = SageMakerHosting(clients.control, clients.runtime, role_arn=ROLE_ARN)
        # A separate client, so that planting is not counted as the port's work.
        self._direct = boto3.session.Session(region_name=REGION).client("sagemaker")

    def _counter(self, part: str) -> Any:
        def count(**_: Any) -> None:
            self._created[part] += 1

        return count

    def plant(self, spec: VariantSpec, parts: Iterable[str]) -> None:
        tags: list[TagTypeDef] = [{"Key": key, "Value": value} for key, value in variant_tags(spec).items()]
        chosen = set(parts)
        if "model" in chosen:
            self._direct.create_model(
                ModelName=spec.name,
                PrimaryContainer={"Image": spec.image_uri, "ModelDataUrl": spec.model_data_url},
                ExecutionRoleArn=ROLE_ARN,
                Tags=tags,
            )
        if "endpoint_config" in chosen:
            self._direct.create_endpoint_config(
                EndpointConfigName=spec.name,
                ProductionVariants=[
                    {
                        "VariantName": PRODUCTION_VARIANT,
                        "ModelName": spec.name,
                        "InstanceType": INSTANCE_TYPE,
                        "InitialInstanceCount": 1,
                    }
                ],
                Tags=tags,
            )

    def prime_answer(self, name: str, answer: dict[str, Any] | list[list[float]]) -> None:
        # moto's runtime answers canned bodies; its documented back door queues real ones.
        result = {"Body": json.dumps(answer), "ContentType": "application/json"}
        response = requests.post(MOTO_RESULTS_API, json={"region": REGION, "results": [result]}, timeout=5)
        response.raise_for_status()

    def creations(self) -> Counter[str]:
        return Counter(self._created)


@pytest.fixture
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture(params=["fake", "sagemaker-moto"])
def harness(request: pytest.FixtureRequest, fake_aws_credentials: None) -> Iterator[HostingHarness]:
    if request.param == "fake":
        yield FakeHarness()
        return
    with mock_aws():
        yield MotoHarness()
