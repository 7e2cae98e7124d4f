"""Adapters: model artifacts in S3 — the "latest" pointer, and the manifest read from inside the tarball."""
from __future__ import annotations

import json
import tarfile
import threading
import zlib
from collections import OrderedDict
from typing import IO, Any

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import AwsCalls, error_code
from chalicelib.domain.artifacts import MANIFEST_NAME, parse_s3_url
from chalicelib.domain.errors import ArtifactRefusedError

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
MAX_POINTER_BYTES = 64 * 1024
# The packager writes manifest.json as the archive's first member; its reference embeddings are
# at most 32 probes x a few thousand floats. Only this much of the archive is ever fetched.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_ARCHIVE_HEAD_BYTES = 8 * 1024 * 1024
_s3 = AwsCalls("S3")


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in _MISSING


def _empty(exc: ClientError) -> bool:
    # A ranged GET of a zero-byte object.
    return error_code(exc) == "InvalidRange"


def _not_modified(exc: ClientError) -> bool:
    # A conditional GET (If-None-Match) of an object whose ETag is still the one given.
    return error_code(exc) in {"304", "NotModified"}


# What a conditional GET answers when the object is the one already read (S3's 304 Not Modified).
_UNCHANGED: dict[str, Any] = {}
# How many manifests one process keeps (each at most MAX_MANIFEST_BYTES; usually a few hundred KB).
KEPT_MANIFESTS = 16


class S3Artifacts:
    def __init__(self, client: Any) -> None:
        self._client = client
        # The manifests read lately, by artifact URL, with their object's ETag: a deploy reads its
        # artifact's manifest at the preflight and again at the smoke test, and the second read is a
        # conditional GET that S3 answers 304 with no body while the object is the same (a changed
        # one is read anew, so the gate still sees an artifact written over since the preflight).
        self._manifests: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def read_pointer(self, url: str) -> Any | None:
        location = parse_s3_url(url)
        answer, empty = self._ranged_get(
            f"read the latest-artifact pointer {url}", location.bucket, location.key, MAX_POINTER_BYTES
        )
        if empty:
            raise ArtifactRefusedError(
                f"the latest-artifact pointer {url} is an empty file (0 bytes): upload the model again "
                "(esdeploy package --upload writes the pointer anew), or name the artifact to deploy"
            )
        if answer is None:
            return None
        try:
            return json.loads(answer["Body"].read())
        except ValueError:
            raise ArtifactRefusedError(f"the latest-artifact pointer {url} is not JSON") from None

    def read_manifest(self, model_data_url: str) -> dict[str, Any] | None:
        location = parse_s3_url(model_data_url)
        with self._lock:
            known = self._manifests.get(model_data_url)
        answer, empty = self._ranged_get(
            f"read the manifest inside {model_data_url}", location.bucket, location.key, MAX_ARCHIVE_HEAD_BYTES,
            unless_etag=known[0] if known is not None else None,
        )
        if answer is _UNCHANGED and known is not None:
            return known[1]
        if empty:
            raise ArtifactRefusedError(f"the artifact {model_data_url} is an empty file")
        if answer is None:
            return None
        body = answer["Body"]
        try:
            manifest = manifest_in_archive(body, model_data_url)
        finally:
            body.close()
        if answer.get("ETag"):
            with self._lock:
                self._manifests[model_data_url] = (str(answer["ETag"]), manifest)
                self._manifests.move_to_end(model_data_url)
                while len(self._manifests) > KEPT_MANIFESTS:
                    self._manifests.popitem(last=False)
        return manifest

    def _ranged_get(
        self, doing: str, bucket: str, key: str, most: int, unless_etag: str | None = None
    ) -> tuple[dict[str, Any] | None, bool]:
        """The object's first `most` bytes: (the answer, False); (None, False) when there is no such
        object; (None, True) when it is empty, which S3 answers to a ranged GET with InvalidRange.
        With `unless_etag`, a conditional GET: (_UNCHANGED, False) when the object still has that ETag."""
        empty = unchanged = False

        def tolerate(exc: ClientError) -> bool:
            nonlocal empty, unchanged
            empty, unchanged = _empty(exc), unless_etag is not None and _not_modified(exc)
            return empty or unchanged or _missing(exc)

        condition = {"IfNoneMatch": unless_etag} if unless_etag is not None else {}
        answer = _s3(
            doing,
            lambda: self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{most - 1}", **condition),
            tolerate=tolerate,
        )
        return (_UNCHANGED if unchanged else answer), empty


def manifest_in_archive(stream: IO[bytes], where: str) -> dict[str, Any]:
    """manifest.json from the head of a model.tar.gz stream, reading no further than that member."""
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as archive:
            member = archive.next()
            if member is None:
                raise ArtifactRefusedError(f"the artifact {where} is an empty archive")
            name = member.name.removeprefix("./")
            if name != MANIFEST_NAME or not member.isfile():
                raise ArtifactRefusedError(
                    f"the artifact {where} has no {MANIFEST_NAME} as its first member (found {member.name!r}); "
                    "package it with esdeploy package, which puts the manifest first"
                )
            if member.size > MAX_MANIFEST_BYTES:
                raise ArtifactRefusedError(
                    f"the {MANIFEST_NAME} inside {where} is {member.size} bytes, over {MAX_MANIFEST_BYTES}"
                )
            handle = archive.extractfile(member)
            assert handle is not None  # a regular file
            raw = handle.read()
    except (tarfile.TarError, zlib.error, EOFError, OSError) as error:
        raise ArtifactRefusedError(
            f"the artifact {where} is not a readable .tar.gz with a {MANIFEST_NAME} first: {error}"
        ) from None
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise ArtifactRefusedError(f"the {MANIFEST_NAME} inside {where} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ArtifactRefusedError(f"the {MANIFEST_NAME} inside {where} is a JSON {type(data).__name__}, not an object")
    return data
