"""Domain layer: where artifacts live (content-addressed keys, each model's "latest" pointer) and the
one strict reading of s3:// URLs that the API and the packager share.

An artifact is written once under `<prefix><model id>/<content hash>/model.tar.gz`, its manifest
beside it, and never overwritten; `<prefix><model id>/latest.json` is the only object that changes:
it names the newest upload. A deploy resolves it once, at submit, and pins the key and the hash.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.serving import Serving

ARCHIVE_NAME = "model.tar.gz"
MANIFEST_NAME = "manifest.json"
POINTER_NAME = "latest.json"
POINTER_FORMAT = "esdeploy-latest/1"
CONTENT_HASH = re.compile(r"[0-9a-f]{64}")
# S3's own list of characters that are safe in a key ("Creating object key names"); anything
# else (%, +, spaces, non-ASCII, ...) may be encoded differently by the next tool that reads it.
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()-]+")
KEY_CHARACTERS = "letters, digits and ! - _ . * ' ( ), segments separated by /"
MAX_KEY_BYTES = 1024
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


class S3UrlError(ValueError):
    """An s3:// URL we will not use; the message says what is wrong with it."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str, *, prefix_only: bool = False) -> S3Location:
    """`s3://bucket/key` read the way S3 and SageMaker read it, or S3UrlError.

    No fragment, no query string, no control character, no empty, `.` or `..` segment, only S3's
    safe key characters, a valid bucket name: what we check is then exactly the object SageMaker
    downloads. `prefix_only`: a destination folder (`s3://bucket` or `s3://bucket/some/prefix/`),
    whose key may be empty or end with one `/` (returned without it).
    """
    if not isinstance(url, str):
        raise S3UrlError("is not a string")
    control = next((c for c in url if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if control is not None:
        raise S3UrlError(f"contains the control character U+{ord(control):04X}")
    if not url.startswith("s3://"):
        raise S3UrlError("is not an s3:// URL")
    rest = url[len("s3://"):]
    # Tools disagree on whether these end the key (a URL parser) or belong to it (SageMaker, the
    # AWS CLI): what the preflight checks and what SageMaker downloads could be two objects.
    if "#" in rest:
        raise S3UrlError("has a fragment ('#'): some tools cut the key there and others do not")
    if "?" in rest:
        raise S3UrlError("has a query string ('?'): some tools cut the key there and others do not")
    bucket, _, key = rest.partition("/")
    _check_bucket(bucket)
    if prefix_only and key.endswith("/"):
        key = key[:-1]
    if not key:
        if prefix_only:
            return S3Location(bucket, "")
        raise S3UrlError("names no object key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise S3UrlError(f"has a key longer than S3's {MAX_KEY_BYTES} bytes")
    for segment in key.split("/"):
        if not segment:
            raise S3UrlError("has an empty path segment ('//')")
        if segment in (".", ".."):
            raise S3UrlError(f"has a {segment!r} path segment")
        if not _KEY_SEGMENT.fullmatch(segment):
            bad = next(c for c in segment if not _KEY_SEGMENT.fullmatch(c))
            raise S3UrlError(f"has the character {bad!r} in its key; use {KEY_CHARACTERS}")
    return S3Location(bucket, key)


def _check_bucket(bucket: str) -> None:
    if not bucket:
        raise S3UrlError("names no bucket")
    if (
        not _BUCKET.fullmatch(bucket)
        or ".." in bucket
        or _IP_ADDRESS.fullmatch(bucket)
        or bucket.startswith("xn--")
        or bucket.endswith(("-s3alias", "--ol-s3"))
    ):
        raise S3UrlError(
            f"names the bucket {bucket!r}, which is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
        )


@dataclass(frozen=True)
class ArtifactLayout:
    """Where one stage keeps its artifacts: a bucket and a key prefix ("" or ending with "/")."""

    bucket: str
    prefix: str

    @classmethod
    def of(cls, bucket: str, prefix: str) -> ArtifactLayout:
        prefix = prefix.strip("/")
        return cls(bucket, f"{prefix}/" if prefix else "")

    @property
    def root_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def folder(self, model_id: str) -> str:
        return f"{self.prefix}{model_id}/"

    def archive(self, model_id: str, content_hash: str) -> S3Location:
        return S3Location(self.bucket, f"{self.folder(model_id)}{content_hash}/{ARCHIVE_NAME}")

    def manifest(self, model_id: str, content_hash: str) -> S3Location:
        return S3Location(self.bucket, f"{self.folder(model_id)}{content_hash}/{MANIFEST_NAME}")

    def pointer(self, model_id: str) -> S3Location:
        return S3Location(self.bucket, f"{self.folder(model_id)}{POINTER_NAME}")

    def holds(self, location: S3Location) -> bool:
        return location.bucket == self.bucket and location.key.startswith(self.prefix)


@dataclass(frozen=True)
class PinnedArtifact:
    """The exact artifact a deploy uses, fixed at submit: every later step reads this key."""

    model_data_url: str
    content_hash: str
    # The serving it was packaged for (manifest `serving`); an artifact that says none is the handler's.
    serving: Serving = Serving.HANDLER


def pointer_document(
    layout: ArtifactLayout, model_id: str, content_hash: str, uploaded_at: str, serving: Serving = Serving.HANDLER
) -> dict[str, Any]:
    """The JSON of `latest.json` as the packager writes it."""
    return {
        "format": POINTER_FORMAT,
        "model_id": model_id,
        "content_sha256": content_hash,
        "model_data_url": layout.archive(model_id, content_hash).url,
        "serving": serving.value,
        "uploaded_at": uploaded_at,
    }


def packaged_serving(document: dict[str, Any]) -> Serving:
    """The serving a manifest or pointer says its artifact was packaged for (none said: the handler, as
    every artifact before TEI); ValueError when it names one esdeploy does not know."""
    named = document.get("serving", Serving.HANDLER.value)
    try:
        return Serving(named)
    except ValueError:
        raise ValueError(f"names the serving {named!r}, which is not one of {', '.join(Serving)}") from None


def read_pointer(data: Any, layout: ArtifactLayout, model_id: str) -> PinnedArtifact:
    """The artifact a `latest.json` names; ValueError naming what is wrong with the pointer."""
    if not isinstance(data, dict) or data.get("format") != POINTER_FORMAT:
        raise ValueError(f"is not an {POINTER_FORMAT} pointer")
    if data.get("model_id") != model_id:
        raise ValueError(f"names the model {data.get('model_id')!r}, not {model_id!r}")
    content_hash = data.get("content_sha256")
    if not isinstance(content_hash, str) or not CONTENT_HASH.fullmatch(content_hash):
        raise ValueError("has no content_sha256 of 64 lowercase hex digits")
    expected = layout.archive(model_id, content_hash).url
    if data.get("model_data_url") != expected:
        raise ValueError(f"names {data.get('model_data_url')!r}, but its content hash is stored at {expected}")
    return PinnedArtifact(expected, content_hash, packaged_serving(data))
