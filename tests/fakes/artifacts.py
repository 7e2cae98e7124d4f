"""Test fakes: artifacts as `esdeploy package` lays them out — a tar.gz with manifest.json first."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from typing import Any


class _NoManifest:
    """Marks an archive with model files only (publish_to_s3's `inside`)."""


NO_MANIFEST = _NoManifest()


def content_hash_for(model_id: str, version: int = 1) -> str:
    """A stable stand-in for a packaged model's content_sha256 (one per model and version)."""
    return hashlib.sha256(f"{model_id}:v{version}".encode()).hexdigest()


def archive_bytes(manifest: dict[str, Any] | bytes | None, files: dict[str, bytes] | None = None) -> bytes:
    """model.tar.gz bytes: manifest.json first (when given; bytes are written as they are), then `files`."""
    members: list[tuple[str, bytes]] = []
    if manifest is not None:
        members.append(("manifest.json", manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()))
    members.extend(sorted((files or {"config.json": b"{}", "model.safetensors": b"weights"}).items()))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def minimal_manifest(
    model_id: str,
    version: int = 1,
    dimension: int = 8,
    probes: Sequence[str] = ("first probe", "second probe"),
    embed: Callable[[str], list[float]] | None = None,
) -> dict[str, Any]:
    """What the gate reads of a packager manifest; `embed` gives each probe's reference embedding."""
    reference = embed or (lambda _text: [1.0] + [0.0] * (dimension - 1))
    return {
        "format": "esdeploy-manifest/1",
        "model_id": model_id,
        "content_sha256": content_hash_for(model_id, version),
        "dimension": dimension,
        "normalize": True,
        "probe_texts": list(probes),
        "reference_embeddings": [reference(text) for text in probes],
    }


def publish_in_memory(artifacts: Any, settings: Any, model_id: str, manifest: dict[str, Any] | None = None) -> str:
    """What `esdeploy package --upload` leaves, in an InMemoryArtifacts: the archive and the pointer."""
    from chalicelib.domain.artifacts import packaged_serving, pointer_document

    manifest = manifest or minimal_manifest(model_id)
    layout = settings.artifact_layout
    content_hash = str(manifest["content_sha256"])
    url = layout.archive(model_id, content_hash).url
    artifacts.archives[url] = manifest
    uploaded_at = "2026-01-01T00:00:00Z"
    artifacts.pointers[layout.pointer(model_id).url] = pointer_document(
        layout, model_id, content_hash, uploaded_at, packaged_serving(manifest)
    )
    return url


def publish_to_s3(s3_client: Any, destination: str, model_id: str, manifest: dict[str, Any] | None = None,
                  inside: dict[str, Any] | bytes | _NoManifest | None = None) -> str:
    """Upload through the packager's own uploader (content-addressed, then the pointer); returns the URL.
    `inside`: what the tarball holds instead of `manifest` (bytes as they are; NO_MANIFEST: nothing)."""
    import shutil
    import tempfile
    from pathlib import Path

    from chalicelib.domain.artifacts import packaged_serving
    from esdeploy.s3upload import upload_artifact

    manifest = manifest or minimal_manifest(model_id)
    folder = Path(tempfile.mkdtemp(prefix="esdeploy-test-artifact-"))
    try:
        archive, beside = folder / "model.tar.gz", folder / "manifest.json"
        content = None if isinstance(inside, _NoManifest) else manifest if inside is None else inside
        archive.write_bytes(archive_bytes(content))
        beside.write_text(json.dumps(manifest))
        uploaded = upload_artifact(
            archive, beside, destination, model_id, str(manifest["content_sha256"]), s3_client=s3_client,
            serving=packaged_serving(manifest),
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return uploaded.archive_url
