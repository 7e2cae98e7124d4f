"""Operator tool layer: check an S3 destination, then upload a packaged artifact there, once and for good.

The archive and its manifest go to a content-addressed folder (`<prefix>/<model id>/<content hash>/`)
with conditional writes, so that nothing ever overwrites them; then the model's `latest.json` pointer,
the one object that changes, names the new version. See chalicelib/domain/artifacts.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
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

from chalicelib.domain.artifacts import ArtifactLayout, S3Location, S3UrlError, parse_s3_url, pointer_document
from chalicelib.domain.serving import Serving

# Multipart parts: S3 wants >= 5 MiB (but the last); four in flight keep a link busy.
PART_BYTES = 16 * 1024 * 1024
PARALLEL_PARTS = 4


class UploadError(Exception):
    """The upload did not complete; the message says where and why."""


@dataclass(frozen=True)
class UploadResult:
    """Where the artifact is, and whether this upload wrote it or found it there already."""

    archive_url: str
    manifest_url: str
    pointer_url: str
    content_hash: str
    already_there: bool


def parse_destination(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"), read as strictly as the API reads
    a model_data_url (no '?', '#', '..', control characters; a valid bucket name)."""
    try:
        location = parse_s3_url(url, prefix_only=True)
    except S3UrlError as error:
        raise UploadError(f"{url!r} {error}") from None
    return location.bucket, location.key


# The check must answer in seconds, not after botocore's default 60 s connect timeout and retries.
_CHECK_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 2}}


@dataclass(frozen=True)
class Destination:
    """A checked upload target: the bucket answered, and `where` says whose it is."""

    bucket: str
    prefix: str
    where: str  # "AWS account 123456789012 (arn:...)" or "the endpoint http://127.0.0.1:4566 (AWS_ENDPOINT_URL; ...)"
    session: Any
    # The bucket's region (S3 says so in every answer): SageMaker deploys there, and pulls its image there.
    region: str | None = None

    @property
    def layout(self) -> ArtifactLayout:
        return ArtifactLayout.of(self.bucket, self.prefix)

    def folder(self, model_id: str) -> str:
        """s3://bucket/prefix/<model_id>/, under which each version gets its own content-addressed folder."""
        return f"s3://{self.bucket}/{self.layout.folder(model_id)}"


def check_destination(destination: str, *, session: Any | None = None) -> Destination:
    """Before any packaging time is spent: credentials present, bucket reachable, and which account or
    endpoint the upload goes to (a real bucket of that name, unless AWS_ENDPOINT_URL points elsewhere)."""
    from botocore.config import Config

    bucket, prefix = parse_destination(destination)
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
    if is_aws_endpoint(endpoint):
        with _named_errors("cannot tell which AWS account the credentials belong to"):
            sts = session.client("sts", region_name=session.region_name or "us-east-1", config=config)
            identity = sts.get_caller_identity()
        where = f"AWS account {identity['Account']} ({identity['Arn']})"
    else:
        where = f"the endpoint {endpoint} (AWS_ENDPOINT_URL; not AWS)"
    with _named_errors(f"bucket {bucket!r} at {where} cannot be used"):
        answer = s3.head_bucket(Bucket=bucket)
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = answer.get("BucketRegion") or headers.get("x-amz-bucket-region")
    return Destination(bucket=bucket, prefix=prefix, where=where, session=session, region=region)


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


def is_aws_endpoint(endpoint: str) -> bool:
    """Whether a boto3 client's endpoint is AWS itself (not AWS_ENDPOINT_URL's moto, say)."""
    host = urlsplit(endpoint).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def upload_artifact(
    archive: Path,
    manifest: Path,
    destination: str,
    model_id: str,
    content_hash: str,
    *,
    s3_client: Any | None = None,
    console: Console | None = None,
    metadata: dict[str, str] | None = None,
    serving: Serving = Serving.HANDLER,
) -> UploadResult:
    """Put the tarball, then its manifest, under ``<destination>/<model_id>/<content_hash>/`` unless
    they are there already (never overwriting either), then point ``<model_id>/latest.json`` at them."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_destination(destination)
    layout = ArtifactLayout.of(bucket, prefix)
    archive_at = layout.archive(model_id, content_hash)
    manifest_at = layout.manifest(model_id, content_hash)
    pointer_at = layout.pointer(model_id)
    if s3_client is None:
        import boto3

        # boto3 reads AWS_ENDPOINT_URL itself, which is how tests and the local stack redirect it.
        s3_client = boto3.client("s3")
    extra = {"Metadata": metadata or {}}
    try:
        already_there = _exists(s3_client, archive_at)
        if not already_there:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                # A bar is for a terminal; in a pipe or a file its last frame is a line cut at 80
                # columns. The line after the upload says where it went.
                disable=console is None or not console.is_terminal,
            ) as bar:
                task = bar.add_task(archive_at.url, total=archive.stat().st_size)
                written = _put_once(
                    s3_client, archive_at, archive, {"ContentType": "application/gzip", **extra},
                    lambda sent: bar.advance(task, sent),
                )
            already_there = not written
        # The manifest goes after the tarball: its presence means the tarball beside it is complete.
        if not _exists(s3_client, manifest_at):
            _put_once(s3_client, manifest_at, manifest, {"ContentType": "application/json", **extra}, lambda _: None)
        uploaded_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        s3_client.put_object(
            Bucket=pointer_at.bucket,
            Key=pointer_at.key,
            Body=(
                json.dumps(pointer_document(layout, model_id, content_hash, uploaded_at, serving), indent=2) + "\n"
            ).encode(),
            ContentType="application/json",
            CacheControl="no-cache",
        )
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise UploadError(f"upload to s3://{bucket}/{prefix} failed: {exc}") from None
    return UploadResult(
        archive_url=archive_at.url,
        manifest_url=manifest_at.url,
        pointer_url=pointer_at.url,
        content_hash=content_hash,
        already_there=already_there,
    )


def _exists(s3_client: Any, location: S3Location) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3_client.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def _precondition_failed(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "PreconditionFailed",
        "ConditionalRequestConflict",
    )


def _put_once(
    s3_client: Any, location: S3Location, path: Path, extra: dict[str, Any], sent: Callable[[int], None]
) -> bool:
    """Write `path` to `location` only if no object is there (S3's If-None-Match: *, also on the
    multipart completion); False when another upload got there first."""
    size = path.stat().st_size
    try:
        if size <= PART_BYTES:
            s3_client.put_object(
                Bucket=location.bucket, Key=location.key, Body=path.read_bytes(), IfNoneMatch="*", **extra
            )
            sent(size)
            return True
        _multipart_once(s3_client, location, path, extra, sent)
        return True
    except Exception as exc:
        if _precondition_failed(exc):
            return False
        raise


def _multipart_once(
    s3_client: Any, location: S3Location, path: Path, extra: dict[str, Any], sent: Callable[[int], None]
) -> None:
    bucket, key = location.bucket, location.key
    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    size = path.stat().st_size
    offsets = range(0, size, PART_BYTES)

    def part(number_and_offset: tuple[int, int]) -> dict[str, Any]:
        number, offset = number_and_offset
        with path.open("rb") as handle:
            handle.seek(offset)
            body = handle.read(PART_BYTES)
        answer = s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        sent(len(body))
        return {"PartNumber": number, "ETag": answer["ETag"]}

    try:
        with ThreadPoolExecutor(max_workers=PARALLEL_PARTS) as pool:
            parts = list(pool.map(part, enumerate(offsets, start=1)))
        s3_client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
        )
    except BaseException:
        # An abandoned upload's parts are billed until aborted.
        with suppress(Exception):
            s3_client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
