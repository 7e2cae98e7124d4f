"""Adapters: model artifacts in S3 (existence check, and the small manifest beside the tarball)."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import error_code, raise_retryable_or

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
MAX_MANIFEST_BYTES = 1024 * 1024


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
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                return False
            raise_retryable_or(exc, f"checking {url}")
        return True

    def read_manifest(self, model_data_url: str) -> dict[str, Any] | None:
        bucket, key = split_s3_url(manifest_url(model_data_url))
        try:
            answer = self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_MANIFEST_BYTES}")
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                return None
            raise_retryable_or(exc, f"reading the manifest next to {model_data_url}")
        data = json.loads(answer["Body"].read())
        return data if isinstance(data, dict) else None
