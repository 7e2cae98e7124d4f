"""Services: the health gate — does a green endpoint answer real embedding requests correctly?"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "Embedding models map text to vectors.",
)
UNIT_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SmokePlan:
    """What to send and what to expect, from the artifact's manifest (or defaults)."""

    texts: tuple[str, ...]
    dimension: int | None
    normalize: bool
    references: tuple[tuple[float, ...], ...] | None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any] | None) -> SmokePlan:
        manifest = manifest or {}
        texts = tuple(manifest.get("probe_texts") or DEFAULT_PROBE_TEXTS)
        references = manifest.get("reference_embeddings")
        rows = references if isinstance(references, list) and len(references) == len(texts) else None
        return cls(
            texts=texts,
            dimension=int(manifest["dimension"]) if manifest.get("dimension") else None,
            normalize=bool(manifest.get("normalize", False)),
            references=tuple(tuple(float(x) for x in row) for row in rows) if rows is not None else None,
        )


def cosine(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def check_answer(plan: SmokePlan, answer: dict[str, Any], min_cosine: float) -> str | None:
    """None when the answer is good, else a sentence with the numbers a person needs."""
    embeddings = answer.get("embeddings") if isinstance(answer, dict) else None
    if not isinstance(embeddings, list) or len(embeddings) != len(plan.texts):
        got = len(embeddings) if isinstance(embeddings, list) else type(embeddings).__name__
        return f"smoke test: sent {len(plan.texts)} probe texts, got {got} embeddings back"
    for index, vector in enumerate(embeddings):
        if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
            return f"smoke test: embedding {index} is not a list of numbers"
        if plan.dimension is not None and len(vector) != plan.dimension:
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
                f"(all scores: {', '.join(f'{s:.4f}' for s in scores)})"
            )
    return None
