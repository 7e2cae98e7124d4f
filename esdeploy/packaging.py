"""Operator tool layer: build model.tar.gz (weights, tokenizer, serving code, manifest) and prove it loads.

Steps: pick the model files, copy them and serving/*.py (as code/) into a staging directory, let the
handler itself compute reference embeddings for the probe texts, write manifest.json, tar it up
deterministically, then load the archive through its own handler in a fresh process before the
archive is moved into place. A broken artifact therefore fails here, not on a paid GPU endpoint.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from chalicelib.domain.manifest import ManifestFieldError, read_probe_texts
from chalicelib.domain.serving import Serving
from esdeploy.artifact_check import CHECK_ENV
from esdeploy.images import ImageLookupError, serving_image_uri
from esdeploy.manifest import (
    MANIFEST_NAME,
    POOLING_MODES,
    Manifest,
    artifact_files,
    content_sha256,
    serving_settings,
    validate_model_id,
)
from esdeploy.tei_packaging import TeiIncompatibleError, prepare_for_tei

# Varied on purpose: short, long enough to hit truncation on 128-token models, punctuation,
# digits, non-Latin scripts. The deploy worker's smoke test replays exactly these.
PROBE_TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email?",
    "ok",
    "Größere Modelle brauchen mehr Speicher; 東京は日本の首都です. السعر: 42,50 €.",
    " ".join(
        [
            "Embedding models map text to vectors so that texts with similar meanings end up close together,",
            "which makes semantic search, clustering, deduplication and retrieval-augmented generation possible.",
        ]
        * 6
    ),
)

# Model files worth shipping; READMEs, training logs and other formats' weights stay behind.
MODEL_FILES = frozenset(
    {
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "tokenizer.model",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    }
)
CHECK_TIMEOUT_SECONDS = 900
MIN_COSINE = 0.9999
# Weights barely compress (level 6 saves <1% over level 1 on fp32 safetensors) but cost more CPU.
GZIP_LEVEL = 1

Progress = Callable[[str], None]


class PackagingError(Exception):
    """Packaging cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class PackageRequest:
    """Everything `esdeploy package` needs; defaults follow the CLI's."""

    model_dir: Path
    model_id: str
    output: Path
    region: str
    instance_type: str
    pooling: str | None = None
    normalize: bool | None = None
    max_seq_length: int | None = None
    probe_texts: tuple[str, ...] = PROBE_TEXTS
    # The interpreter of the fresh-process check; point it at a venv that mimics the container.
    check_python: str = sys.executable
    # What will serve the artifact: the handler (code/inference.py) or TEI (reads the model folder).
    serving: Serving = Serving.HANDLER


@dataclass(frozen=True)
class PackageResult:
    """A checked archive and the manifest written inside it and next to it."""

    archive: Path
    manifest_path: Path
    manifest: Manifest
    archive_bytes: int
    check: dict[str, Any] = field(default_factory=dict)
    # Lowest cosine against SentenceTransformer.encode on the probe texts; None when not compared.
    st_min_cosine: float | None = None


def _noop(_: str) -> None:
    return None


def select_model_files(model_dir: Path) -> list[str]:
    """Relative paths of the files that go into the artifact, or PackagingError saying what is missing."""
    if not (model_dir / "config.json").is_file():
        raise PackagingError(f"{model_dir} has no config.json; pass a Hugging Face model directory")
    names = {
        path.name
        for path in model_dir.iterdir()
        if path.is_file() and (path.name in MODEL_FILES or _is_weight_shard(path.name))
    }
    if not any(name.endswith(".safetensors") for name in names):
        other = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.pt"))
        hint = f" (found {', '.join(other)}: convert it with save_pretrained(safe_serialization=True))" if other else ""
        raise PackagingError(f"{model_dir} has no .safetensors weights{hint}")
    if not names & {"tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model"}:
        raise PackagingError(f"{model_dir} has no tokenizer files (tokenizer.json, vocab.txt, ...)")
    files = sorted(names)
    for sub in module_folders(model_dir):
        if (model_dir / sub / "config.json").is_file():
            files.append(f"{sub}/config.json")
    return files


def module_folders(model_dir: Path) -> list[str]:
    """The sub-folders modules.json names (e.g. `1_Pooling`), each checked to lie inside `model_dir`:
    a hostile or broken modules.json must not make packaging read or write anywhere else."""
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        return []
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackagingError(f"{modules_path} is not valid JSON: {exc}") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise PackagingError(f"{modules_path} must be a JSON list of objects, as sentence-transformers writes it")
    root = model_dir.resolve()
    folders = []
    for module in modules:
        sub = module.get("path", "")
        if not isinstance(sub, str):
            raise PackagingError(f"{modules_path}: module path {sub!r} is not a string")
        if not sub:
            continue  # the Transformer module lives in the model folder itself
        parts = PurePosixPath(sub).parts
        if PurePosixPath(sub).is_absolute() or "\\" in sub or any(part in ("..", ".") for part in parts):
            raise PackagingError(
                f"{modules_path}: module path {sub!r} leaves the model folder; use a folder inside it, like 1_Pooling"
            )
        if not (model_dir / sub).resolve().is_relative_to(root):
            raise PackagingError(
                f"{modules_path}: module path {sub!r} is a link that leads out of the model folder "
                f"(to {(model_dir / sub).resolve()}); copy that folder into the model folder instead"
            )
        folders.append("/".join(parts))
    return folders


def _is_weight_shard(name: str) -> bool:
    return name.startswith("model-") and name.endswith(".safetensors")


def serving_code_files() -> list[Path]:
    """serving/*.py except the package marker: in the container they are top-level modules."""
    import serving

    root = Path(serving.__file__).resolve().parent
    files = sorted(path for path in root.glob("*.py") if path.name != "__init__.py")
    if not any(path.name == "inference.py" for path in files):
        raise PackagingError(f"{root} has no inference.py")
    return files


def stage_artifact(request: PackageRequest, stage: Path) -> list[str]:
    """Copy model files and (for the handler) serving code into ``stage``; returns the model files copied."""
    files = select_model_files(request.model_dir)
    for name in files:
        target = stage / name
        if not target.resolve().is_relative_to(stage.resolve()):  # select_model_files made sure; keep it so
            raise PackagingError(f"{name} would be written outside the staging folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.model_dir / name, target)
    if request.serving is Serving.TEI:
        return files  # TEI runs its own server; code/ would only be shipped, never run
    code_dir = stage / "code"
    code_dir.mkdir()
    for source in serving_code_files():
        shutil.copyfile(source, code_dir / source.name)
    return files


def resolve_settings(request: PackageRequest, stage: Path) -> dict[str, Any]:
    """The model's own pooling/normalisation/length settings with the request's overrides applied."""
    from serving.inference import ModelConfigError, derive_encoder_config

    try:
        derived = derive_encoder_config(stage)
    except ModelConfigError as exc:
        raise PackagingError(f"unsupported model: {exc}") from None
    pooling = request.pooling or derived.pooling
    if pooling not in POOLING_MODES:
        raise PackagingError(f"pooling {pooling!r} is not one of {', '.join(POOLING_MODES)}")
    max_seq_length = request.max_seq_length or derived.max_seq_length
    limit = json.loads((stage / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    if max_seq_length <= 0 or (isinstance(limit, int) and max_seq_length > limit):
        raise PackagingError(f"max sequence length {max_seq_length} is outside 1..{limit} (max_position_embeddings)")
    return {
        "model_id": request.model_id,
        "pooling": pooling,
        "normalize": derived.normalize if request.normalize is None else request.normalize,
        "max_seq_length": max_seq_length,
    }


def compute_references(stage: Path, probe_texts: Sequence[str]) -> tuple[int, list[list[float]]]:
    """Run the probe texts through the handler's own request path on CPU in float32."""
    from transformers.utils import logging as hf_logging

    import serving.inference as handler

    hf_logging.disable_progress_bar()  # it would tear through the CLI's status line
    try:
        encoder = handler.Encoder(stage, device="cpu", dtype="float32")
    except Exception as exc:  # a model that does not load must stop packaging, whatever the cause
        raise PackagingError(f"the handler cannot load the model: {type(exc).__name__}: {exc}") from exc
    request = handler.input_fn(json.dumps({"inputs": list(probe_texts)}), "application/json")
    response = json.loads(handler.output_fn(handler.predict_fn(request, encoder), "application/json"))
    return int(response["dimension"]), response["embeddings"]


def sentence_transformers_parity(
    stage: Path, probe_texts: Sequence[str], references: list[list[float]]
) -> float | None:
    """Lowest cosine between the handler's references and SentenceTransformer.encode on the staged model.

    None when it does not apply: no modules.json (not a sentence-transformers model) or no
    sentence-transformers installed. This catches a model whose intent the handler misreads.
    """
    if not (stage / "modules.json").is_file():
        return None
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    import torch

    model = SentenceTransformer(str(stage), device="cpu", local_files_only=True)
    theirs = torch.as_tensor(model.encode(list(probe_texts), convert_to_numpy=True))
    ours = torch.tensor(references, dtype=theirs.dtype)
    return float(torch.nn.functional.cosine_similarity(ours, theirs, dim=1).min().item())


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owner, time and mode carry no meaning in the endpoint; fixing them makes archives reproducible.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def write_archive(stage: Path, archive: Path) -> None:
    """manifest.json first (cheap to read from a stream), then every other file in sorted order."""
    # The same file list as the content hash, so the hash covers exactly what ships.
    names = [MANIFEST_NAME, *artifact_files(stage)]
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in names:
            tar.add(stage / name, arcname=name, recursive=False, filter=_tar_filter)


def run_artifact_check(
    archive: Path, python: str = sys.executable, serving: Serving = Serving.HANDLER
) -> dict[str, Any]:
    """``python -m esdeploy.artifact_check`` in a fresh process; returns its report (ok or not)."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, **CHECK_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run(
            [python, "-m", "esdeploy.artifact_check", "--serving", serving.value, str(archive)],
            env=env,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackagingError(f"the artifact check could not run with {python}: {exc}") from None
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise PackagingError(f"the artifact check crashed (exit {proc.returncode}):\n{tail}") from None
    return report


def earlier_build(output: Path) -> str | None:
    """What a build to `output` would replace: None if nothing is there, else the content hash its
    manifest.json (beside it) names, "" when that cannot be read."""
    if not output.exists():
        return None
    try:
        return str(json.loads((output.parent / MANIFEST_NAME).read_text(encoding="utf-8"))["content_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def package(request: PackageRequest, progress: Progress = _noop) -> PackageResult:
    """Build, check and place the archive; raises PackagingError with an actionable message."""
    try:
        validate_model_id(request.model_id)
    except ValueError as exc:
        raise PackagingError(str(exc)) from None
    if not request.model_dir.is_dir():
        raise PackagingError(f"{request.model_dir} is not a directory")
    try:
        # The gate's rule, at packaging: an artifact whose probe texts it would refuse is never built.
        probes = read_probe_texts(tuple(request.probe_texts))
    except ManifestFieldError as error:
        raise PackagingError(f"probe texts: the manifest field {error} (--probe)") from None
    try:
        image_uri = serving_image_uri(request.region, request.instance_type, request.serving)
    except ImageLookupError as exc:
        raise PackagingError(str(exc)) from None

    request.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="esdeploy-package-") as tmp:
        stage = Path(tmp) / "artifact"
        stage.mkdir()
        progress(f"staging model files from {request.model_dir}")
        stage_artifact(request, stage)
        settings = resolve_settings(request, stage)
        if request.serving is Serving.TEI:
            progress("writing what TEI reads (1_Pooling/config.json, sentence_bert_config.json)")
            try:
                prepare_for_tei(stage, settings["pooling"], settings["normalize"], settings["max_seq_length"])
            except TeiIncompatibleError as error:
                raise PackagingError(f"TEI cannot serve this model as packaged: {error}") from None
        # The handler reads its settings from the manifest, so it needs the overrides first.
        (stage / MANIFEST_NAME).write_text(json.dumps(settings), encoding="utf-8")
        progress("computing reference embeddings with the handler (CPU, float32)")
        dimension, references = compute_references(stage, probes)
        st_min_cosine = None
        if request.pooling is None and request.normalize is None and request.max_seq_length is None:
            # With overrides the handler is meant to differ from sentence-transformers.
            progress("comparing with sentence-transformers")
            st_min_cosine = sentence_transformers_parity(stage, probes, references)
            if st_min_cosine is not None and st_min_cosine < MIN_COSINE:
                raise PackagingError(
                    f"the handler and sentence-transformers disagree on this model (lowest cosine "
                    f"{st_min_cosine:.6f} < {MIN_COSINE}); pass --pooling/--normalize/--max-seq-length if intended"
                )
        manifest = _build_manifest(request, stage, settings, dimension, probes, references, image_uri)
        (stage / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")

        partial = request.output.with_name(request.output.name + ".partial")
        progress(f"writing {request.output.name}")
        write_archive(stage, partial)
        progress(
            "loading the archive through its handler in a fresh process"
            if request.serving is Serving.HANDLER
            else "reading the archive as TEI does, in a fresh process"
        )
        report = run_artifact_check(partial, request.check_python, request.serving)
        if not report.get("ok"):
            partial.unlink(missing_ok=True)
            problems = "; ".join(report.get("problems") or ["no details"])
            raise PackagingError(f"the packaged artifact failed its check: {problems}")
        os.replace(partial, request.output)

    manifest_path = request.output.parent / MANIFEST_NAME
    manifest_path.write_text(manifest.to_json(), encoding="utf-8")
    return PackageResult(
        archive=request.output,
        manifest_path=manifest_path,
        manifest=manifest,
        archive_bytes=request.output.stat().st_size,
        check=report,
        st_min_cosine=st_min_cosine,
    )


def _build_manifest(
    request: PackageRequest,
    stage: Path,
    settings: dict[str, Any],
    dimension: int,
    probes: Sequence[str],
    references: list[list[float]],
    image_uri: str,
) -> Manifest:
    import torch
    import transformers

    return Manifest(
        model_id=request.model_id,
        dimension=dimension,
        pooling=settings["pooling"],
        normalize=settings["normalize"],
        max_seq_length=settings["max_seq_length"],
        probe_texts=list(probes),
        reference_embeddings=references,
        torch_version=str(torch.__version__),
        transformers_version=str(transformers.__version__),
        content_sha256=content_sha256(
            stage,
            settings=serving_settings(
                settings["pooling"], settings["normalize"], settings["max_seq_length"], request.serving.value
            ),
        ),
        image_uri=image_uri,
        instance_type=request.instance_type,
        region=request.region,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        serving=request.serving.value,
    )
