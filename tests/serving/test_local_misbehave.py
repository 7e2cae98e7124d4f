"""A running local endpoint made to misbehave (local only), and its invocations recorded once each way they come."""
from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from chalicelib.domain.errors import InvocationError
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantSpec
from esdeploy.local import misbehave
from esdeploy.local.aws_server import EmbeddedAws
from esdeploy.local.hosting import LocalHosting
from esdeploy.local.misbehave import Misbehaviour, MisbehaviourError, set_misbehaviour
from esdeploy.local.processes import LOOPBACK, free_port
from esdeploy.packaging import PackageResult

pytestmark = pytest.mark.slow
NAME = "esdlocal-tiny-st-00000000-44444444"


class ArtifactStore:
    """S3's download_file for the one artifact (the hosting only downloads)."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive

    def download_file(self, bucket: str, key: str, target: str, **_config: Any) -> None:
        shutil.copy(self.archive, target)


@pytest.fixture
def running(tiny_package: PackageResult, tmp_path: Path) -> Iterator[tuple[LocalHosting, EmbeddedAws]]:
    in_service = threading.Event()

    def changed(spec: VariantSpec, state: EndpointState, reason: str | None) -> None:
        if state is EndpointState.IN_SERVICE:
            in_service.set()

    hosting = LocalHosting(ArtifactStore(tiny_package.archive), tmp_path / "endpoints", on_state_change=changed)
    server = EmbeddedAws(LOOPBACK, free_port())
    server.start()
    server.hosting = hosting
    try:
        hosting.create_variant(VariantSpec(NAME, "tiny-st", "task-1", "s3://b/models/tiny-st/model.tar.gz", "image",
                                           "ml.g5.xlarge", 1))
        assert in_service.wait(90), hosting.describe(NAME)
        yield hosting, server
    finally:
        server.stop()
        hosting.close()


def invoke_endpoint(server: EmbeddedAws) -> dict[str, Any]:
    runtime = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local")
    answer = runtime.invoke_endpoint(EndpointName=NAME, ContentType="application/json",
                                     Body=json.dumps({"inputs": ["hello"]}).encode())
    return dict(json.loads(answer["Body"].read()))


def test_misbehave_makes_a_serving_endpoint_answer_500_slowly_and_every_invocation_is_recorded_once(
    running: tuple[LocalHosting, EmbeddedAws],
) -> None:
    hosting, server = running
    before = len(hosting.invocations.since(NAME, 0))
    for _ in range(3):
        assert invoke_endpoint(server)["dimension"] == 32  # InvokeEndpoint: what embedder() takes
    for _ in range(2):
        assert hosting.invoke(NAME, {"inputs": ["hello"]})["dimension"] == 32  # the product's invoke and smoke test
    healthy = hosting.invocations.since(NAME, 0)[before:]
    assert [r.status_class for r in healthy] == ["2XX"] * 5
    assert all(r.model_latency_us is not None and r.model_latency_us > 0 for r in healthy)

    assert set_misbehaviour(server.url, NAME, Misbehaviour(errors=1.0, latency_ms=60)) == {
        "endpoint": NAME, "errors": 1.0, "latency_ms": 60}
    with pytest.raises(ClientError) as raised:
        invoke_endpoint(server)
    assert raised.value.response["Error"]["Code"] == "ModelError"  # SageMaker's word for a container 5xx
    assert raised.value.response["OriginalStatusCode"] == 500
    assert "misbehave switch is on" in raised.value.response["Error"]["Message"]
    with pytest.raises(InvocationError, match="answered 500"):
        hosting.invoke(NAME, {"inputs": ["hello"]})
    failing = hosting.invocations.since(NAME, 0)[before + 5:]
    assert [r.status_class for r in failing] == ["5XX", "5XX"]
    assert all(r.model_latency_us is not None and r.model_latency_us >= 60_000 for r in failing)

    # Half: over 40 tries both answers come (the chance of all one kind is 2 * 2^-40).
    assert misbehave.main([NAME, "--errors", "0.5", "--aws-endpoint", server.url]) == 0
    outcomes = set()
    for _ in range(40):
        try:
            hosting.invoke(NAME, {"inputs": ["hello"]})
            outcomes.add("ok")
        except InvocationError:
            outcomes.add("500")
    assert outcomes == {"ok", "500"}

    set_misbehaviour(server.url, NAME, Misbehaviour())  # healed
    assert invoke_endpoint(server)["dimension"] == 32


def test_misbehave_refuses_what_it_cannot_do_in_words_a_person_can_act_on(
    running: tuple[LocalHosting, EmbeddedAws], capsys: pytest.CaptureFixture[str],
) -> None:
    _, server = running
    with pytest.raises(MisbehaviourError, match=r"404: Endpoint nope of account 123456789012 not found"):
        set_misbehaviour(server.url, "nope", Misbehaviour(errors=1.0))
    for body, problem in (({"errors": 2}, "errors must be a number from 0 to 1"),
                          ({"latency_ms": -1}, "latency_ms must be a whole number"),
                          ({"error": 1}, "unknown field(s) error")):
        answer = requests.post(server.url + misbehave.route(NAME), json=body, timeout=10)
        assert answer.status_code == 400
        assert problem in answer.json()["detail"]
    assert misbehave.main([NAME, "--errors", "1.5", "--aws-endpoint", server.url]) == 1
    assert "errors must be a number from 0 to 1" in capsys.readouterr().err
