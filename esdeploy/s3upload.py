"""Operator tool layer: check an S3 destination, then upload a packaged artifact there with a progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


# The check must answer in seconds, not after botocore's default 60 s connect timeout and retries.
_CHECK_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 2}}


@dataclass(frozen=True)
class Destination:
    """A checked upload target: the bucket answered, and `where` says whose it is."""

    bucket: str
    prefix: str
    where: str  # "AWS account 123456789012 (arn:...)" or "the endpoint http://127.0.0.1:4566 (AWS_ENDPOINT_URL; ...)"
    session: Any

    def folder(self, model_id: str) -> str:
        """s3://bucket/prefix/<model_id>/, where model.tar.gz and manifest.json go."""
        return f"s3://{self.bucket}/{s3_keys(self.prefix, model_id)[0].rsplit('/', 1)[0]}/"


def check_destination(destination: str, *, session: Any | None = None) -> Destination:
    """Before any packaging time is spent: credentials present, bucket reachable, and which account or
    endpoint the upload goes to (a real bucket of that name, unless AWS_ENDPOINT_URL points elsewhere)."""
    from botocore.config import Config

    bucket, prefix = parse_s3_url(destination)
    config = Config(**_CHECK_TIMEOUTS)  # type: ignore[arg-type]
    with _named_errors(f"cannot use s3://{bucket}"):
        session = session or _default_session()
        if session.get_credentials() is None:
            raise UploadError(
                "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(for the local stack: the `export` line that `esdeploy local` printed)"
            )
        s3 = session.client("s3", config=config)
        endpoint = str(s3.meta.endpoint_url)
    if _is_aws(endpoint):
        with _named_errors("cannot tell which AWS account the credentials belong to"):
            sts = session.client("sts", region_name=session.region_name or "us-east-1", config=config)
            identity = sts.get_caller_identity()
        where = f"AWS account {identity['Account']} ({identity['Arn']})"
    else:
        where = f"the endpoint {endpoint} (AWS_ENDPOINT_URL; not AWS)"
    with _named_errors(f"bucket {bucket!r} at {where} cannot be used"):
        s3.head_bucket(Bucket=bucket)
    return Destination(bucket=bucket, prefix=prefix, where=where, session=session)


def _default_session() -> Any:
    import boto3

    # boto3 reads AWS_PROFILE, AWS_ENDPOINT_URL and the rest itself: the same choice the upload makes.
    return boto3.Session()


@contextmanager
def _named_errors(what: str) -> Iterator[None]:
    """boto3's errors as one line a person can act on (an unknown profile, a missing bucket, no answer)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        denied = "access is denied (the check needs s3:ListBucket on it; is it another account's bucket?)"
        reason = {"404": "it does not exist", "NoSuchBucket": "it does not exist", "403": denied}
        raise UploadError(f"{what}: {reason.get(code, str(exc))}") from None
    except BotoCoreError as exc:
        raise UploadError(f"{what}: {exc}") from None


def _is_aws(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


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
