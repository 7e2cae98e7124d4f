"""Operator tool layer: load an artifact through its own code/inference.py and compare it with its manifest.

Run as ``python -m esdeploy.artifact_check PATH`` (PATH: model.tar.gz or an extracted directory) in a
fresh process, so that nothing the packager imported or cached can hide a broken artifact. Only the
stdlib and esdeploy.manifest are imported here; torch and transformers come in through the
artifact's handler, which lets the same check run in a venv that mimics the serving container.
With ``--serving tei`` the artifact is read as TEI reads it instead (esdeploy.local.tei_model: its files,
its pooling and token limit, AUTO_TRUNCATE, normalised), on the CPU in float32.
Prints one JSON report on stdout; exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from esdeploy.manifest import MANIFEST_NAME, SERVINGS, Manifest, ManifestError, content_sha256

DEFAULT_MIN_COSINE = 0.9999
REQUIRED_FILES = (MANIFEST_NAME, "config.json", "code/inference.py")
TEI_REQUIRED_FILES = (MANIFEST_NAME, "config.json", "tokenizer.json")
# What the check runs with unless the caller says otherwise: the reference embeddings were computed
# on CPU in float32, and an artifact that reaches for a hub at load time must fail here.
CHECK_ENV = {
    "ESDEPLOY_SERVING_DEVICE": "cpu",
    "ESDEPLOY_SERVING_DTYPE": "float32",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


@dataclass
class CheckReport:
    """The outcome of one artifact check, as printed (JSON) by the check process."""

    ok: bool = False
    model_id: str | None = None
    dimension: int | None = None
    min_cosine: float | None = None
    load_seconds: float | None = None
    handler_file: str | None = None
    python: str = field(default_factory=lambda: sys.version.split()[0])
    torch_version: str | None = None
    transformers_version: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _refuse_absolute(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, except that an absolute name is refused rather than made relative:
    an artifact that names /etc/... was not made by our packager."""
    if member.name.startswith(("/", "\\")):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest)


def extract_archive(archive: str | Path, dest: str | Path) -> Path:
    """Unpack model.tar.gz the safe way: no absolute paths, nothing outside `dest` (no `..`), no links
    out of the tree, no devices (tarfile.TarError otherwise)."""
    target = Path(dest)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter=_refuse_absolute)
    return target


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def load_handler(root: Path) -> ModuleType:
    """Import code/inference.py as the top-level module ``inference``, as the container does."""
    code_dir = root / "code"
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location("inference", code_dir / "inference.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {code_dir / 'inference.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    return module


def _read_manifest(root: Path, required: Sequence[str], report: CheckReport) -> Manifest | None:
    """The manifest, with the files and the content hash checked; None (problems reported) when unusable."""
    missing = [name for name in required if not (root / name).is_file()]
    if not any(root.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        report.problems.append(f"artifact lacks {', '.join(missing)}")
        return None
    try:
        manifest = Manifest.read(root / MANIFEST_NAME)
    except (ManifestError, TypeError) as exc:
        report.problems.append(f"manifest.json: {exc}")
        return None
    report.model_id = manifest.model_id
    actual_hash = content_sha256(root, settings=manifest.serving_settings)
    if actual_hash != manifest.content_sha256:
        report.problems.append(f"content_sha256 is {actual_hash}, manifest says {manifest.content_sha256}")
    return manifest


def check_directory(root: Path, min_cosine: float = DEFAULT_MIN_COSINE) -> CheckReport:
    """Every check on an extracted artifact; problems are collected, not raised."""
    report = CheckReport()
    manifest = _read_manifest(root, REQUIRED_FILES, report)
    if manifest is None:
        return report
    if manifest.serving != "handler":
        report.problems.append(f"the manifest says serving {manifest.serving!r}: check it with --serving")
        return report

    started = time.perf_counter()
    try:
        handler = load_handler(root)
        report.handler_file = str(handler.__file__)
        model = handler.model_fn(str(root))
    except Exception as exc:  # whatever breaks the load would break the endpoint too
        report.problems.append(f"model_fn failed: {type(exc).__name__}: {exc}")
        return report
    report.load_seconds = round(time.perf_counter() - started, 3)
    report.torch_version = _version_of("torch")
    report.transformers_version = _version_of("transformers")

    try:
        body = json.dumps({"inputs": manifest.probe_texts})
        request = handler.input_fn(body, "application/json")
        response = json.loads(handler.output_fn(handler.predict_fn(request, model), "application/json"))
    except Exception as exc:
        report.problems.append(f"invocation failed: {type(exc).__name__}: {exc}")
        return report
    _compare(response, manifest, min_cosine, report)
    _check_client_error(handler, report)
    report.ok = not report.problems
    return report


def check_tei_directory(root: Path, min_cosine: float = DEFAULT_MIN_COSINE) -> CheckReport:
    """The artifact as TEI would serve it: TEI's reading of the folder must give the manifest's pooling and
    token limit, and its vectors (truncating as AUTO_TRUNCATE does) the references."""
    from esdeploy.local.tei_model import EmbedInput, TeiLoadError, TeiModel, TeiRequestError, read_folder

    report = CheckReport()
    manifest = _read_manifest(root, TEI_REQUIRED_FILES, report)
    if manifest is None:
        return report
    if manifest.serving != "tei":
        report.problems.append(f"the manifest says serving {manifest.serving!r}, not 'tei'")
    started = time.perf_counter()
    try:
        folder = read_folder(root)
        if (folder.pooling, folder.max_input_length) != (manifest.pooling, manifest.max_seq_length):
            report.problems.append(
                f"TEI reads {folder.pooling} pooling and {folder.max_input_length} tokens, the manifest says "
                f"{manifest.pooling} and {manifest.max_seq_length}"
            )
        model = TeiModel(folder, "float32")
    except (TeiLoadError, OSError) as exc:
        report.problems.append(f"TEI would not start: {exc}")
        return report
    report.load_seconds = round(time.perf_counter() - started, 3)
    report.torch_version = _version_of("torch")
    report.transformers_version = _version_of("transformers")
    try:
        vectors = model.embed([EmbedInput(text=t) for t in manifest.probe_texts], truncate=True)
    except TeiRequestError as exc:
        report.problems.append(f"TEI would refuse the probe texts: {exc}")
        return report
    response = {"embeddings": vectors, "model": manifest.model_id, "dimension": model.dimension}
    _compare(response, manifest, min_cosine, report)
    report.ok = not report.problems
    return report


def _compare(response: dict[str, Any], manifest: Manifest, min_cosine: float, report: CheckReport) -> None:
    report.dimension = response.get("dimension")
    if response.get("model") != manifest.model_id:
        report.problems.append(f"response names model {response.get('model')!r}, manifest {manifest.model_id!r}")
    if response.get("dimension") != manifest.dimension:
        report.problems.append(f"response dimension {response.get('dimension')}, manifest {manifest.dimension}")
    vectors = response.get("embeddings") or []
    if len(vectors) != len(manifest.reference_embeddings):
        report.problems.append(f"{len(vectors)} embeddings for {len(manifest.probe_texts)} probe texts")
        return
    cosines = [_cosine(got, want) for got, want in zip(vectors, manifest.reference_embeddings, strict=True)]
    report.min_cosine = min(cosines)
    for index, value in enumerate(cosines):
        if value < min_cosine:
            report.problems.append(f"probe {index}: cosine {value:.6f} with the reference, below {min_cosine}")


def _check_client_error(handler: ModuleType, report: CheckReport) -> None:
    """A bad request must be a named client error, not a crash inside the model."""
    try:
        handler.input_fn('{"inputs": []}', "application/json")
    except Exception as exc:
        if type(exc).__name__ != "BadRequestError":
            report.problems.append(f"an empty request raised {type(exc).__name__}, not BadRequestError")
        return
    report.problems.append("an empty request was accepted")


def _version_of(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    return str(getattr(module, "__version__", None)) if module is not None else None


def check_artifact(path: str | Path, min_cosine: float = DEFAULT_MIN_COSINE, serving: str = "handler") -> CheckReport:
    """Check a model.tar.gz (extracted to a temporary directory) or an artifact directory."""
    source = Path(path)
    check = check_tei_directory if serving == "tei" else check_directory
    if source.is_dir():
        return check(source, min_cosine)
    workdir = Path(tempfile.mkdtemp(prefix="esdeploy-check-"))
    try:
        try:
            extract_archive(source, workdir)
        except (OSError, tarfile.TarError) as exc:
            return CheckReport(problems=[f"cannot extract {source}: {exc}"])
        return check(workdir, min_cosine)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esdeploy.artifact_check", description=__doc__)
    parser.add_argument("artifact", help="model.tar.gz or an extracted artifact directory")
    parser.add_argument("--min-cosine", type=float, default=DEFAULT_MIN_COSINE)
    parser.add_argument("--serving", choices=SERVINGS, default="handler", help="what will serve it (default handler)")
    args = parser.parse_args(argv)
    for name, value in CHECK_ENV.items():
        os.environ.setdefault(name, value)
    report = check_artifact(args.artifact, args.min_cosine, args.serving)
    sys.stdout.write(report.to_json() + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
