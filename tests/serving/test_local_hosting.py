"""The local stack's Hosting port: endpoints that take their creation time and refuse deletes meanwhile."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.domain.errors import RetryableError
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantSpec
from esdeploy.local.hosting import LocalHosting
from esdeploy.local.processes import processes_mentioning
from esdeploy.packaging import PackageResult

pytestmark = pytest.mark.slow
BUCKET = "local-hosting-artifacts"
CREATION_SECONDS = 6


@pytest.fixture
def s3(test_env: dict[str, str], tiny_package: PackageResult) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(tiny_package.archive), BUCKET, "models/tiny-st/model.tar.gz")
        client.put_object(Bucket=BUCKET, Key="models/broken/model.tar.gz", Body=b"not a tarball")
        yield client


class Events:
    """What the hosting reported, in order (the stack turns each into an EventBridge event)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, EndpointState]] = []
        self._changed = threading.Condition()

    def __call__(self, spec: VariantSpec, state: EndpointState, reason: str | None) -> None:
        with self._changed:
            self.seen.append((spec.name, state))
            self._changed.notify_all()

    def wait_for(self, name: str, state: EndpointState, timeout: float = 90) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: (name, state) in self.seen, timeout), self.seen


def spec(model: str, name: str) -> VariantSpec:
    return VariantSpec(name, model, f"task-{name}", f"s3://{BUCKET}/models/{model}/model.tar.gz", "image",
                       "ml.g5.xlarge", 1)


def test_an_endpoint_is_creating_for_its_creation_time_and_refuses_deletes_meanwhile(
    s3: Any, tmp_path: Path
) -> None:
    events = Events()
    hosting = LocalHosting(s3, tmp_path / "endpoints", on_state_change=events, creation_seconds=CREATION_SECONDS)
    green = spec("tiny-st", "esdlocal-tiny-st-00000000-11111111")
    try:
        started = time.monotonic()
        hosting.create_variant(green)
        assert hosting.describe(green.name).state is EndpointState.CREATING
        with pytest.raises(RetryableError, match=r"still Creating or Updating .*Cannot update in-progress endpoint"):
            hosting.delete_variant(green.name)
        assert hosting.describe(green.name).state is EndpointState.CREATING  # the refusal changed nothing

        events.wait_for(green.name, EndpointState.IN_SERVICE)
        assert time.monotonic() - started >= CREATION_SECONDS
        assert hosting.describe(green.name).state is EndpointState.IN_SERVICE
        assert hosting.invoke(green.name, {"inputs": ["hello"]})["dimension"] == 32

        hosting.delete_variant(green.name)
        assert hosting.describe(green.name).state is EndpointState.MISSING
        assert processes_mentioning(green.name) == []
        assert [state for name, state in events.seen if name == green.name] == [
            EndpointState.CREATING, EndpointState.IN_SERVICE, EndpointState.DELETING
        ]
    finally:
        hosting.close()


def test_a_failure_is_reported_once_the_creation_time_is_up_and_close_stops_creating_ones(
    s3: Any, tmp_path: Path
) -> None:
    events = Events()
    hosting = LocalHosting(s3, tmp_path / "endpoints", on_state_change=events, creation_seconds=CREATION_SECONDS)
    broken = spec("broken", "esdlocal-broken-00000000-22222222")
    creating = spec("tiny-st", "esdlocal-tiny-st-00000000-33333333")
    try:
        started = time.monotonic()
        hosting.create_variant(broken)
        hosting.create_variant(creating)
        events.wait_for(broken.name, EndpointState.FAILED)
        assert time.monotonic() - started >= CREATION_SECONDS
        failed = hosting.describe(broken.name)
        assert failed.state is EndpointState.FAILED and failed.failure_reason
        hosting.delete_variant(broken.name)  # a failed endpoint can be deleted
    finally:
        hosting.close()  # Ctrl-C of the stack: a Creating endpoint is stopped too
    assert processes_mentioning(creating.name) == []
    assert not (tmp_path / "endpoints" / creating.name).exists()
