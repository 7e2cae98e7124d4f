"""Operator tool layer: the artifact manifest (esdeploy-manifest/1) as the packager writes it, and its content hash.

Its rules are the manifest contract's (chalicelib/domain/manifest.py), which the gate reads too; this module adds
the whole record (versions, image, region, times) and the file hashing. Stdlib and the domain only, so that the
packager, the fresh-process artifact check and an old-transformers compatibility venv can all import it without
torch. The Lambdas never import it: they read the manifest's JSON through the Artifacts port.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chalicelib.domain import manifest as contract
from chalicelib.domain.manifest import FORMAT, MANIFEST_NAME, POOLING_MODES
from chalicelib.domain.names import ID_PATTERN
from chalicelib.domain.serving import Serving

__all__ = ["FORMAT", "MANIFEST_NAME", "POOLING_MODES", "SERVINGS", "Manifest", "ManifestError"]

# A manifest without `serving` is the handler's, as every artifact packaged before TEI was.
SERVINGS = tuple(serving.value for serving in Serving)


class ManifestError(ValueError):
    """A manifest that does not follow esdeploy-manifest/1; the message names the field."""


def validate_model_id(model_id: str) -> str:
    """1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    # The id becomes one S3 key segment: the API's id rule (chalicelib.domain.names).
    if not isinstance(model_id, str) or not ID_PATTERN.fullmatch(model_id):
        raise ManifestError(
            f"model id {model_id!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return model_id


@dataclass(frozen=True)
class Manifest:
    """What the deploy worker needs to know about an artifact without opening the tarball."""

    model_id: str
    dimension: int
    pooling: str
    normalize: bool
    max_seq_length: int
    probe_texts: list[str]
    reference_embeddings: list[list[float]]
    torch_version: str
    transformers_version: str
    content_sha256: str
    image_uri: str
    instance_type: str
    region: str
    created_at: str
    format: str = field(default=FORMAT)
    serving: str = "handler"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def serving_settings(self) -> dict[str, object]:
        """The manifest fields the handler serves by: part of the content hash, like the files."""
        return serving_settings(self.pooling, self.normalize, self.max_seq_length, self.serving)

    def validate(self) -> None:
        """The manifest contract's rules (the gate's too), then the model id's."""
        try:
            contract.check_fields(self.to_dict())
        except contract.ManifestFieldError as error:
            raise ManifestError(f"manifest field {error}") from None
        validate_model_id(self.model_id)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # "format" first so that a person reading the file knows what it is.
        return {"format": data.pop("format"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        names = set(cls.__dataclass_fields__)
        defaulted = {"serving"}
        missing = sorted(names - defaulted - set(data))
        if missing:
            raise ManifestError(f"manifest lacks {', '.join(missing)}")
        # Unknown keys are ignored so that a newer packager's manifest still reads here.
        return cls(**{name: data[name] for name in names if name in data})

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestError("manifest must be a JSON object")
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(root: str | Path) -> list[str]:
    """Relative POSIX paths of every file in an artifact tree except the manifest, sorted."""
    base = Path(root)
    return sorted(
        path.relative_to(base).as_posix()
        for path in base.rglob("*")
        if path.is_file() and path.relative_to(base).as_posix() != MANIFEST_NAME and "__pycache__" not in path.parts
    )


def serving_settings(pooling: str, normalize: bool, max_seq_length: int, serving: str = "handler") -> dict[str, object]:
    """What the content hash covers beside the files; the serving only when it is not the handler, so that
    every handler artifact keeps the hash it was packaged with."""
    settings: dict[str, object] = {"pooling": pooling, "normalize": normalize, "max_seq_length": max_seq_length}
    if serving != "handler":
        settings["serving"] = serving
    return settings


def content_sha256(
    root: str | Path, files: Iterable[str] | None = None, settings: dict[str, object] | None = None
) -> str:
    """One digest over (path, file digest) pairs and the serving settings: the same files served
    the same way give the same hash on any machine, and a changed token window is a new version."""
    base = Path(root)
    digest = hashlib.sha256()
    for name in sorted(files if files is not None else artifact_files(base)):
        digest.update(f"{name}\0{_file_sha256(base / name)}\n".encode())
    if settings is not None:
        digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()
