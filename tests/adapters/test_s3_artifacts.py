"""S3Artifacts on moto: reading a manifest again asks S3 whether the object changed, and reads a changed one anew."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.s3_artifacts import S3Artifacts
from tests.fakes.artifacts import archive_bytes, minimal_manifest

BUCKET, KEY = "esdeploy-test-artifacts", "models/m/abc/model.tar.gz"
URL = f"s3://{BUCKET}/{KEY}"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        client.create_bucket(Bucket=BUCKET)
        yield client


def statuses(client: Any) -> list[int]:
    """The HTTP status of each GetObject the client makes from now on (304: a conditional GET, no body)."""
    seen: list[int] = []
    client.meta.events.register("after-call.s3.GetObject", lambda http_response, **_: seen.append(
        http_response.status_code))
    client.meta.events.register("after-call-error.s3.GetObject", lambda exception, **_: seen.append(
        exception.response["ResponseMetadata"]["HTTPStatusCode"]))
    return seen


def test_a_manifest_read_again_is_a_conditional_get_that_s3_answers_not_modified(s3: Any) -> None:
    """Issue 22: the smoke test read the whole head of the artifact again after the preflight had."""
    manifest = minimal_manifest("m")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive_bytes(manifest))
    answered = statuses(s3)
    artifacts = S3Artifacts(s3)
    assert artifacts.read_manifest(URL) == manifest
    assert artifacts.read_manifest(URL) == manifest
    assert answered == [206, 304]


def test_an_artifact_written_over_since_is_read_anew(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive_bytes(minimal_manifest("m", version=1)))
    artifacts = S3Artifacts(s3)
    artifacts.read_manifest(URL)
    changed = minimal_manifest("m", version=2)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=archive_bytes(changed))
    assert artifacts.read_manifest(URL) == changed
    s3.delete_object(Bucket=BUCKET, Key=KEY)
    assert artifacts.read_manifest(URL) is None
