"""`esdeploy package --serving tei`: what TEI reads is written so that it computes the references, and what TEI
cannot serve that way is refused at packaging, naming the reason."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.domain.serving import Serving
from esdeploy import artifact_check
from esdeploy.local.tei_model import read_folder
from esdeploy.manifest import Manifest, serving_settings
from esdeploy.packaging import PackageRequest, PackageResult, PackagingError, package
from esdeploy.s3upload import upload_artifact


def tei_request(model_dir: Path, tmp_path: Path, **overrides: Any) -> PackageRequest:
    fields: dict[str, Any] = {
        "model_dir": model_dir, "model_id": "tiny-tei", "output": tmp_path / "out" / "model.tar.gz",
        "region": "us-east-1", "instance_type": "ml.c6i.large", "serving": Serving.TEI,
    }
    return PackageRequest(**{**fields, **overrides})


@pytest.fixture(scope="module")
def tei_package(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    """A plain Hugging Face model (no sentence-transformers files) packaged for TEI, checked in a fresh process."""
    return package(tei_request(tiny_model_dir, tmp_path_factory.mktemp("tei")))


def test_a_tei_artifact_carries_what_tei_reads_and_no_handler_code(tei_package: PackageResult, tmp_path: Path) -> None:
    root = artifact_check.extract_archive(tei_package.archive, tmp_path / "x")
    manifest = tei_package.manifest

    assert (manifest.serving, manifest.pooling, manifest.max_seq_length) == ("tei", "mean", 64)
    assert not (root / "code").exists()
    # Without 1_Pooling/config.json TEI would pool a BERT by its CLS token; the handler pools by mean.
    folder = read_folder(root)
    assert (folder.pooling, folder.max_input_length) == ("mean", 64)
    assert json.loads((root / "sentence_bert_config.json").read_text())["max_seq_length"] == 64
    assert "tei-cpu:2.0.1-tei1.8.2-cpu" in manifest.image_uri and manifest.image_uri.startswith("683313688378.")
    assert tei_package.check["ok"] and tei_package.check["min_cosine"] > 0.9999


def test_the_serving_is_part_of_the_content_hash_and_old_manifests_read_as_the_handlers(
    tei_package: PackageResult,
) -> None:
    data = tei_package.manifest.to_dict()
    assert data["serving"] == "tei"
    assert serving_settings("mean", True, 64, "tei") != serving_settings("mean", True, 64)
    assert serving_settings("mean", True, 64) == {"pooling": "mean", "normalize": True, "max_seq_length": 64}
    del data["serving"]  # a manifest packaged before TEI existed
    assert Manifest.from_dict(data).serving == "handler"


def test_the_fresh_process_check_reads_the_archive_as_tei_does(tei_package: PackageResult, tmp_path: Path) -> None:
    root = artifact_check.extract_archive(tei_package.archive, tmp_path / "x")
    (root / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    ))

    report = artifact_check.check_artifact(root, serving="tei")

    assert not report.ok
    assert any("TEI reads cls pooling and 64 tokens, the manifest says mean and 64" in p for p in report.problems)


def test_its_upload_tells_a_deploy_which_serving_it_is_for(tei_package: PackageResult, monkeypatch: Any) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        upload_artifact(tei_package.archive, tei_package.manifest_path, "s3://artifacts/models", "tiny-tei",
                        tei_package.manifest.content_sha256, s3_client=s3, serving=Serving.TEI)
        pointer = json.loads(s3.get_object(Bucket="artifacts", Key="models/tiny-tei/latest.json")["Body"].read())
    assert pointer["serving"] == "tei"


def lower_case(model_dir: Path) -> None:
    config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({**config, "do_lower_case": True}))


def model_type(kind: str) -> Any:
    def change(model_dir: Path) -> None:
        config = json.loads((model_dir / "config.json").read_text())
        (model_dir / "config.json").write_text(json.dumps({**config, "model_type": kind}))
    return change


@pytest.mark.parametrize(
    ("change", "overrides", "reason"),
    [
        (None, {"pooling": "max"}, "max pooling: TEI 1.8.2 pools by cls, mean, splade or last token only"),
        (None, {"normalize": False}, "TEI normalises every request that does not say normalize: false"),
        (lambda d: (d / "tokenizer.json").unlink(), {}, r"no tokenizer.json \(a fast tokenizer\)"),
        (lower_case, {}, "sentence_bert_config.json says do_lower_case"),
        (model_type("qwen2"), {}, "model_type 'qwen2': TEI 1.8.2 serves it only on a CUDA GPU"),
        (model_type("t5"), {}, "TEI would not start with it: model_type 't5' is not one TEI 1.8.2 loads"),
    ],
)
def test_what_tei_cannot_serve_as_the_references_say_is_refused_by_name(
    tiny_st_model_dir: Path, tmp_path: Path, change: Any, overrides: dict[str, Any], reason: str
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_st_model_dir, model_dir)
    if change is not None:
        change(model_dir)

    with pytest.raises(PackagingError, match=f"TEI cannot serve this model as packaged: {reason}"):
        package(tei_request(model_dir, tmp_path, **overrides))
    assert not (tmp_path / "out" / "model.tar.gz").exists()


def test_tei_has_no_image_for_a_neuron_type(tiny_st_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match=r"TEI has no image for instance type 'ml\.inf2\.xlarge'"):
        package(tei_request(tiny_st_model_dir, tmp_path, instance_type="ml.inf2.xlarge"))
