"""Operator tool layer: upload a packaged artifact to its conventional S3 location, with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from esdeploy.manifest import s3_keys


class UploadError(Exception):
    """The upload did not complete; the message says where and why."""


@dataclass(frozen=True)
class UploadResult:
    """Where the artifact landed."""

    archive_url: str
    manifest_url: str


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    if not url.startswith("s3://"):
        raise UploadError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise UploadError(f"{url!r} names no bucket")
    return bucket, prefix.strip("/")


def upload_artifact(
    archive: Path,
    manifest: Path,
    destination: str,
    model_id: str,
    *,
    s3_client: Any | None = None,
    console: Console | None = None,
    metadata: dict[str, str] | None = None,
) -> UploadResult:
    """Put the tarball, then the manifest, under ``<destination>/<model_id>/``.

    The manifest goes last: readers treat its presence as "the tarball beside it is complete".
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_s3_url(destination)
    archive_key, manifest_key = s3_keys(prefix, model_id)
    if s3_client is None:
        import boto3

        # boto3 reads AWS_ENDPOINT_URL itself, which is how tests and the local stack redirect it.
        s3_client = boto3.client("s3")
    extra = {"Metadata": metadata or {}}
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(f"s3://{bucket}/{archive_key}", total=archive.stat().st_size)
            s3_client.upload_file(
                str(archive),
                bucket,
                archive_key,
                ExtraArgs={"ContentType": "application/gzip", **extra},
                Callback=lambda sent: bar.advance(task, sent),
            )
        s3_client.upload_file(
            str(manifest), bucket, manifest_key, ExtraArgs={"ContentType": "application/json", **extra}
        )
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise UploadError(f"upload to s3://{bucket}/{prefix} failed: {exc}") from None
    return UploadResult(archive_url=f"s3://{bucket}/{archive_key}", manifest_url=f"s3://{bucket}/{manifest_key}")
