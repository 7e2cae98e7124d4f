"""The manifest contract has one home: what the gate refuses, esdeploy's reading of a manifest refuses too,
naming the same field, and the packager refuses such probe texts before it builds anything."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain import manifest as contract
from chalicelib.domain.errors import ArtifactRefusedError
from chalicelib.domain.models import ParityCheck
from chalicelib.domain.serving import Serving
from chalicelib.services.smoke import smoke_plan
from esdeploy import packaging
from esdeploy.manifest import Manifest, ManifestError

HASH = "ab" * 32
GOOD: dict[str, Any] = {
    "format": "esdeploy-manifest/1",
    "model_id": "m1",
    "dimension": 2,
    "pooling": "mean",
    "normalize": True,
    "max_seq_length": 256,
    "probe_texts": ["first probe", "second probe"],
    "reference_embeddings": [[0.6, 0.8], [1.0, 0.0]],
    "torch_version": "2.13.0",
    "transformers_version": "4.49.0",
    "content_sha256": HASH,
    "image_uri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0",
    "instance_type": "ml.g5.xlarge",
    "region": "us-east-1",
    "created_at": "2026-01-01T00:00:00Z",
    "serving": "handler",
}


def changed(**fields: Any) -> dict[str, Any]:
    return {**GOOD, **fields}


BROKEN = [
    (changed(format="esdeploy-manifest/0"), "format"),
    (changed(serving="onnx"), "serving"),
    (changed(content_sha256="AB" * 32), "content_sha256"),
    (changed(dimension=0), "dimension"),
    (changed(dimension=True), "dimension"),
    (changed(normalize="yes"), "normalize"),
    (changed(pooling="median"), "pooling"),
    (changed(probe_texts="first probe"), "probe_texts"),
    (changed(probe_texts=[], reference_embeddings=[]), "probe_texts"),
    (changed(probe_texts=["p"] * 33, reference_embeddings=[[1.0, 0.0]] * 33), "probe_texts"),
    # What esdeploy's reading of a manifest let through before it read the contract's rules:
    (changed(probe_texts=["first probe", "   "]), "probe_texts[1]"),
    (changed(probe_texts=["first probe", 7]), "probe_texts[1]"),
    (changed(reference_embeddings=[[0.6, 0.8], [math.nan, 0.0]]), "reference_embeddings[1]"),
    (changed(reference_embeddings=[[0.6, 0.8]]), "reference_embeddings"),
    (changed(reference_embeddings=[[0.6, 0.8], [1.0]]), "reference_embeddings[1]"),
    (changed(serving="tei", normalize=False), "normalize"),
    (changed(serving="tei", pooling="max"), "pooling"),
]


def gate(document: dict[str, Any]) -> None:
    smoke_plan(
        document, embedding_model_id="m1", content_hash=None, parity=ParityCheck.REQUIRED,
        serving=Serving(document.get("serving", "handler")) if document.get("serving") in ("handler", "tei")
        else Serving.HANDLER,
    )


def test_a_good_manifest_reads_alike_everywhere() -> None:
    assert Manifest.from_dict(GOOD).to_dict() == GOOD
    gate(GOOD)
    contract.check_fields(GOOD)


@pytest.mark.parametrize(("document", "field"), BROKEN, ids=[field for _, field in BROKEN])
def test_the_gate_and_esdeploy_refuse_the_same_manifests_naming_the_same_field(
    document: dict[str, Any], field: str
) -> None:
    with pytest.raises(ArtifactRefusedError) as refused:
        gate(document)
    with pytest.raises(ManifestError) as read:
        Manifest.from_dict(document)
    with pytest.raises(contract.ManifestFieldError) as checked:
        contract.check_fields(document)

    assert checked.value.field == field
    assert f"the artifact's manifest field `{field}` " in str(refused.value)
    assert str(read.value) == f"manifest field {checked.value}"


def test_a_manifest_that_names_no_pooling_passes_the_gate_for_tei() -> None:
    """The gate reads only what it needs; TEI's pooling rule bites where the manifest names one."""
    document = {k: v for k, v in changed(serving="tei").items() if k != "pooling"}
    plan = smoke_plan(document, embedding_model_id="m1", content_hash=None, parity=ParityCheck.REQUIRED,
                      serving=Serving.TEI)
    assert plan.texts == ("first probe", "second probe")


@pytest.mark.parametrize(
    ("probes", "reason"),
    [
        (("a probe", " \t"), r"`probe_texts\[1\]` is ' \\t', blank: a probe text needs something to embed"),
        ((), "`probe_texts` has 0 texts; it must have 1-32 non-blank strings"),
        (("p",) * 33, "`probe_texts` has 33 texts; it must have 1-32 non-blank strings"),
    ],
)
def test_the_packager_refuses_probe_texts_the_gate_would_refuse_before_it_builds_anything(
    tmp_path: Path, probes: tuple[str, ...], reason: str
) -> None:
    request = packaging.PackageRequest(
        model_dir=tmp_path / "not-even-read", model_id="m1", output=tmp_path / "out" / "model.tar.gz",
        region="us-east-1", instance_type="ml.g5.xlarge", probe_texts=probes,
    )
    (tmp_path / "not-even-read").mkdir()
    with pytest.raises(packaging.PackagingError, match=f"^probe texts: the manifest field {reason} \\(--probe\\)$"):
        packaging.package(request)
    assert not (tmp_path / "out").exists()
