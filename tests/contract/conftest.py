"""Contract fixtures: one Hosting harness per implementation (the fake; SageMakerHosting on moto; LocalHosting, whose
serving processes are stand-ins without a model: tests/contract/stub_endpoint.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import boto3
import pytest
import requests
from moto import mock_aws

from chalicelib.adapters.sagemaker_hosting import SageMakerHosting, make_sagemaker_clients
from chalicelib.adapters.sagemaker_shapes import PRODUCTION_VARIANT, variant_tags
from chalicelib.domain.models import EndpointState
from chalicelib.ports import Hosting, VariantInfo, VariantSpec, VariantStatus
from esdeploy.local import endpoint
from esdeploy.local.hosting import LocalHosting
from tests.contract import stub_endpoint
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


SETTLE_SECONDS = 30


class _ArtifactFiles:
    """An S3 client whose downloads write a placeholder: the stand-in serving process reads no artifact."""

    def download_file(self, bucket: str, key: str, target: str, **_config: Any) -> None:
        Path(target).write_bytes(f"s3://{bucket}/{key}".encode())


def _start_stub(artifact: Path, workdir: Path, python: str, spec: VariantSpec) -> subprocess.Popen[str]:
    """tests/contract/stub_endpoint.py, started as LocalHosting starts the real one (own session, output piped),
    isolated and without site-packages: it needs the standard library only, and starts in tens of milliseconds."""
    command = [python, "-I", "-S", "-u", stub_endpoint.__file__, "--workdir", str(workdir),
               "--parent-pid", str(os.getpid()), "--listening", endpoint.LISTENING, "--ready", endpoint.READY]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


class _Settling:
    """LocalHosting, whose create returns while the endpoint is Creating (as SageMaker's does) and which learns
    its outcome from the serving process: a create here returns once the endpoint settled, so that the cases read
    it as they read the fake's (creation time 0) and moto's (InService at once)."""

    def __init__(self, local: LocalHosting, settled: threading.Condition, states: dict[str, EndpointState]) -> None:
        self._local = local
        self._settled = settled
        self._states = states

    def create_variant(self, spec: VariantSpec) -> None:
        self._local.create_variant(spec)
        with self._settled:
            settled = self._settled.wait_for(
                lambda: self._states.get(spec.name, EndpointState.CREATING) is not EndpointState.CREATING,
                SETTLE_SECONDS,
            )
        assert settled, f"{spec.name} did not settle in {SETTLE_SECONDS} s"

    def describe(self, name: str) -> VariantStatus:
        return self._local.describe(name)

    def invoke(self, name: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        return self._local.invoke(name, payload, timeout_seconds)

    def delete_variant(self, name: str) -> None:
        self._local.delete_variant(name)

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        return self._local.list_variants(name_prefix)


class LocalHarness:
    kind = "local"

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._settled = threading.Condition()
        self._states: dict[str, EndpointState] = {}
        self.local = LocalHosting(
            _ArtifactFiles(), workdir, on_state_change=self._changed, python=sys.executable, creation_seconds=0,
            start_process=_start_stub,
        )
        self.hosting: Hosting = _Settling(self.local, self._settled, self._states)

    def _changed(self, spec: VariantSpec, state: EndpointState, reason: str | None) -> None:
        with self._settled:
            self._states[spec.name] = state
            self._settled.notify_all()

    def plant(self, spec: VariantSpec, parts: Iterable[str]) -> None:
        self.local.endpoints.plant(spec, parts)

    def prime_answer(self, name: str, answer: dict[str, Any] | list[list[float]]) -> None:
        (self._workdir / name / stub_endpoint.PRIMED).write_text(json.dumps(answer), encoding="utf-8")

    def creations(self) -> Counter[str]:
        return Counter(self.local.endpoints.part_creations)

    def close(self) -> None:
        self.local.close()


@pytest.fixture
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture(params=["fake", "sagemaker-moto", "local"])
def harness(
    request: pytest.FixtureRequest, fake_aws_credentials: None, tmp_path: Path
) -> Iterator[HostingHarness]:
    if request.param == "fake":
        yield FakeHarness()
        return
    if request.param == "local":
        local = LocalHarness(tmp_path / "endpoints")
        try:
            yield local
        finally:
            local.close()  # every serving process it started stops with the case
        return
    with mock_aws():
        yield MotoHarness()
