"""Adapters: model artifacts in S3 (existence check, and the small manifest beside the tarball)."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import AwsCalls, error_code

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
MAX_MANIFEST_BYTES = 1024 * 1024
_s3 = AwsCalls("S3")


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in _MISSING


def split_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3:// URL")
    return parsed.netloc, parsed.path.lstrip("/")


def manifest_url(model_data_url: str) -> str:
    """`.../<model_id>/model.tar.gz` -> `.../<model_id>/manifest.json` (written by the packager)."""
    return model_data_url.rsplit("/", 1)[0] + "/manifest.json"


class S3Artifacts:
    def __init__(self, client: Any) -> None:
        self._client = client

    def exists(self, url: str) -> bool:
        bucket, key = split_s3_url(url)
        found = _s3(f"check {url}", lambda: self._client.head_object(Bucket=bucket, Key=key), tolerate=_missing)
        return found is not None

    def read_manifest(self, model_data_url: str) -> dict[str, Any] | None:
        bucket, key = split_s3_url(manifest_url(model_data_url))
        answer = _s3(
            f"read the manifest next to {model_data_url}",
            lambda: self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_MANIFEST_BYTES}"),
            tolerate=_missing,
        )
        if answer is None:
            return None
        data = json.loads(answer["Body"].read())
        return data if isinstance(data, dict) else None
