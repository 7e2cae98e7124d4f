"""Services: the health gate — does a green endpoint answer real embedding requests correctly?"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chalicelib.domain import manifest as contract
from chalicelib.domain.errors import ArtifactRefusedError
from chalicelib.domain.models import ParityCheck
from chalicelib.domain.serving import Serving

UNIT_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SmokePlan:
    """What to send and what to expect, from the manifest inside the pinned artifact."""

    texts: tuple[str, ...]
    dimension: int
    normalize: bool
    # None only when the deploy's config says parity_check: skip.
    references: tuple[tuple[float, ...], ...] | None
    # The serving the deploy runs (and the artifact was packaged for): the one that must answer.
    serving: Serving = Serving.HANDLER


def smoke_plan(
    manifest: dict[str, Any],
    *,
    embedding_model_id: str,
    content_hash: str | None,
    parity: ParityCheck,
    serving: Serving = Serving.HANDLER,
) -> SmokePlan:
    """The gate's reading of a manifest, field by field through the manifest contract (chalicelib/domain/
    manifest.py). It fails closed: anything missing, of the wrong type, or inconsistent is
    ArtifactRefusedError naming the field, never a shape-only check by default."""
    try:
        return _plan(manifest, embedding_model_id, content_hash, parity, serving)
    except contract.ManifestFieldError as error:
        raise ArtifactRefusedError(f"the artifact's manifest field {error}") from None


def _plan(
    manifest: dict[str, Any], embedding_model_id: str, content_hash: str | None, parity: ParityCheck, serving: Serving
) -> SmokePlan:
    contract.read_format(manifest.get("format"))
    packaged_for = contract.read_serving(manifest)
    if packaged_for is not serving:
        raise ArtifactRefusedError(
            f"the artifact was packaged for the {packaged_for.value} serving (manifest serving), but the deploy runs "
            f"{serving.value} (config.serving): package it with --serving {serving.value}, or deploy it with "
            f"config.serving {packaged_for.value!r}"
        )
    model_id = manifest.get("model_id")
    if model_id != embedding_model_id:
        raise ArtifactRefusedError(
            f"the artifact was packaged for model {model_id!r} (manifest model_id), not {embedding_model_id!r}: "
            f"package it with --model-id {embedding_model_id}, or deploy it under its own id"
        )
    found_hash = contract.read_content_hash(manifest.get("content_sha256"))
    if content_hash is not None and found_hash != content_hash:
        raise ArtifactRefusedError(
            f"the artifact changed since the deploy was submitted: its manifest says content {found_hash}, "
            f"the task pinned {content_hash}. Artifacts are immutable; upload a new version instead"
        )
    dimension = contract.read_dimension(manifest.get("dimension"))
    normalize = contract.read_normalize(manifest.get("normalize"))
    texts = contract.read_probe_texts(manifest.get("probe_texts"))
    # The gate reads no other field of the handler's settings: a manifest that names no pooling passes.
    pooling = manifest.get("pooling")
    problem = contract.serving_problem(serving, None if pooling is None else contract.read_pooling(pooling), normalize)
    if problem is not None:
        raise problem
    if parity is ParityCheck.SKIP:
        return SmokePlan(texts, dimension, normalize, references=None, serving=serving)
    return SmokePlan(texts, dimension, normalize, _references(manifest, len(texts), dimension), serving=serving)


def _references(manifest: dict[str, Any], count: int, dimension: int) -> tuple[tuple[float, ...], ...]:
    rows = manifest.get("reference_embeddings")
    if rows is None or rows == []:
        raise ArtifactRefusedError(
            "the manifest has no reference_embeddings, so the green endpoint's answers cannot be compared "
            "with the model's: package it with esdeploy package, or deploy with config.parity_check: \"skip\" "
            "to check shape and norms only"
        )
    return contract.read_references(rows, count, dimension)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cosine(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def check_answer(plan: SmokePlan, answer: dict[str, Any], min_cosine: float, parity_hint: str = "") -> str | None:
    """None when the answer is good, else a sentence with the numbers a person needs (and, when the
    embeddings are not close enough to the references, `parity_hint`)."""
    answered = answer.get("serving", Serving.HANDLER.value) if isinstance(answer, dict) else None
    if answered is not None and answered != plan.serving.value:
        return (
            f"smoke test: the endpoint answered as the {answered} serving does, but the deploy runs "
            f"{plan.serving.value} (config.serving): is config.image_uri the image of the other serving?"
        )
    embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
    if not isinstance(embeddings, list) or len(embeddings) != len(plan.texts):
        got = len(embeddings) if isinstance(embeddings, list) else type(embeddings).__name__
        return f"smoke test: sent {len(plan.texts)} probe texts, got {got} embeddings back"
    for index, vector in enumerate(embeddings):
        if not isinstance(vector, list) or not all(_is_number(x) for x in vector):
            return f"smoke test: embedding {index} is not a list of numbers"
        if len(vector) != plan.dimension:
            return (
                f"smoke test: embedding {index} has dimension {len(vector)}, "
                f"the manifest says {plan.dimension}"
            )
        if not all(math.isfinite(x) for x in vector):
            return f"smoke test: embedding {index} contains NaN or infinite values"
        if plan.normalize:
            norm = math.sqrt(sum(x * x for x in vector))
            if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
                return f"smoke test: embedding {index} has norm {norm:.6f}, expected 1 (normalised model)"
    if plan.references is not None:
        scores = [cosine(vector, ref) for vector, ref in zip(embeddings, plan.references, strict=True)]
        worst = min(range(len(scores)), key=scores.__getitem__)
        if scores[worst] < min_cosine:
            return (
                f"smoke test: cosine similarity to the reference embedding is {scores[worst]:.6f} "
                f"for probe {worst} ({plan.texts[worst][:40]!r}); the threshold is {min_cosine} "
                f"(all scores: {', '.join(f'{s:.4f}' for s in scores)}){parity_hint}"
            )
    return None
