"""Tests of `esdeploy package`: archive layout, manifest, fresh-process check, S3 upload (moto) and the CLI."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from moto import mock_aws
from typer.testing import CliRunner

from esdeploy import artifact_check, packaging
from esdeploy.cli import app
from esdeploy.manifest import Manifest, ManifestError, content_sha256, validate_model_id
from esdeploy.packaging import PackageRequest, PackageResult, PackagingError
from esdeploy.s3upload import UploadError, parse_destination, upload_artifact
from serving.inference import Encoder

MANIFEST_KEYS = {
    "format",
    "model_id",
    "dimension",
    "pooling",
    "normalize",
    "max_seq_length",
    "probe_texts",
    "reference_embeddings",
    "torch_version",
    "transformers_version",
    "content_sha256",
    "image_uri",
    "instance_type",
    "region",
    "created_at",
    "serving",
}


def extract(archive: Path, dest: Path) -> Path:
    return artifact_check.extract_archive(archive, dest)


def request_for(model_dir: Path, tmp_path: Path, **overrides: Any) -> PackageRequest:
    fields: dict[str, Any] = {
        "model_dir": model_dir,
        "model_id": "tiny",
        "output": tmp_path / "out" / "model.tar.gz",
        "region": "us-east-1",
        "instance_type": "ml.g5.xlarge",
    }
    return PackageRequest(**{**fields, **overrides})


def test_archive_layout(tiny_package: PackageResult) -> None:
    with tarfile.open(tiny_package.archive, "r:gz") as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert names[0] == "manifest.json"
    assert set(names) == {
        "manifest.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "code/inference.py",
    }
    # Reproducible metadata: no owner, no timestamp.
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)


def test_manifest_fields(tiny_package: PackageResult, tmp_path: Path) -> None:
    data = json.loads(tiny_package.manifest_path.read_text())
    assert set(data) == MANIFEST_KEYS
    manifest = Manifest.from_dict(data)
    assert manifest == tiny_package.manifest
    assert (manifest.format, manifest.model_id, manifest.dimension) == ("esdeploy-manifest/1", "tiny-st", 32)
    assert (manifest.pooling, manifest.normalize, manifest.max_seq_length) == ("mean", True, 24)
    assert manifest.probe_texts == list(packaging.PROBE_TEXTS)
    assert manifest.torch_version == torch.__version__
    assert manifest.image_uri.endswith(
        "huggingface-pytorch-inference:2.6.0-transformers4.49.0-gpu-py312-cu124-ubuntu22.04"
    )
    assert ".us-east-1." in manifest.image_uri
    assert (manifest.region, manifest.instance_type) == ("us-east-1", "ml.g5.xlarge")
    assert manifest.created_at.endswith("Z")
    datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))

    root = extract(tiny_package.archive, tmp_path / "x")
    assert json.loads((root / "manifest.json").read_text()) == data
    assert content_sha256(root, settings=manifest.serving_settings) == manifest.content_sha256


def test_reference_embeddings_come_from_the_handler(tiny_package: PackageResult, tmp_path: Path) -> None:
    root = extract(tiny_package.archive, tmp_path / "x")
    encoder = Encoder(root, device="cpu", dtype="float32")
    want = encoder.encode(tiny_package.manifest.probe_texts)
    got = torch.tensor(tiny_package.manifest.reference_embeddings)
    assert torch.allclose(got, want, atol=1e-6)
    assert tiny_package.check["ok"] and tiny_package.check["min_cosine"] > 0.9999


def test_references_agree_with_sentence_transformers(tiny_package: PackageResult) -> None:
    assert tiny_package.st_min_cosine is not None and tiny_package.st_min_cosine >= 0.9999


def test_disagreement_with_sentence_transformers_stops_packaging(
    tiny_st_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packaging, "sentence_transformers_parity", lambda stage, probes, refs: 0.5)
    with pytest.raises(PackagingError, match=r"disagree on this model \(lowest cosine 0.500000"):
        packaging.package(request_for(tiny_st_model_dir, tmp_path))
    assert not (tmp_path / "out" / "model.tar.gz").exists()


def test_plain_models_are_not_compared_with_sentence_transformers(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packaging, "run_artifact_check", lambda archive, python, serving: {"ok": True})
    result = packaging.package(request_for(tiny_model_dir, tmp_path))
    assert result.st_min_cosine is None
    assert (result.manifest.pooling, result.manifest.normalize, result.manifest.max_seq_length) == ("mean", True, 64)


def test_check_report_of_the_fresh_process(tiny_package: PackageResult) -> None:
    report = tiny_package.check
    assert report["ok"] is True and report["problems"] == []
    assert report["handler_file"].endswith("code/inference.py")
    assert "esdeploy-check-" in report["handler_file"]  # loaded from the extracted archive, not serving/


def test_content_hash_tracks_content(tmp_path: Path, tiny_package: PackageResult) -> None:
    root = extract(tiny_package.archive, tmp_path / "x")
    before = content_sha256(root)
    (root / "manifest.json").write_text("{}")  # the manifest is not part of its own hash
    assert content_sha256(root) == before
    with (root / "code" / "inference.py").open("a") as handle:
        handle.write("\n")
    assert content_sha256(root) != before


def test_content_hash_covers_how_the_model_is_served(tmp_path: Path, tiny_package: PackageResult) -> None:
    root = extract(tiny_package.archive, tmp_path / "x")
    settings = tiny_package.manifest.serving_settings
    shorter = {**settings, "max_seq_length": int(settings["max_seq_length"]) // 2}  # type: ignore[call-overload]
    assert content_sha256(root, settings=settings) == tiny_package.manifest.content_sha256
    assert content_sha256(root, settings=shorter) != tiny_package.manifest.content_sha256


def corrupt(archive: Path, tmp_path: Path, change: Any) -> Path:
    root = extract(archive, tmp_path / "corrupt")
    change(root)
    target = tmp_path / "corrupt.tar.gz"
    packaging.write_archive(root, target)
    return target


def test_check_catches_a_handler_that_does_not_import(tiny_package: PackageResult, tmp_path: Path) -> None:
    broken = corrupt(
        tiny_package.archive,
        tmp_path,
        lambda root: (root / "code" / "inference.py").write_text("import nowhere_module\n"),
    )
    report = packaging.run_artifact_check(broken)
    assert report["ok"] is False
    assert any("model_fn failed" in p and "nowhere_module" in p for p in report["problems"])


def test_check_catches_wrong_reference_embeddings(tiny_package: PackageResult, tmp_path: Path) -> None:
    def flip(root: Path) -> None:
        data = json.loads((root / "manifest.json").read_text())
        data["reference_embeddings"][2] = [-x for x in data["reference_embeddings"][2]]
        (root / "manifest.json").write_text(json.dumps(data))

    report = artifact_check.check_artifact(corrupt(tiny_package.archive, tmp_path, flip))
    assert not report.ok
    assert report.problems == ["probe 2: cosine -1.000000 with the reference, below 0.9999"]


def test_check_catches_missing_files_and_changed_weights(tiny_package: PackageResult, tmp_path: Path) -> None:
    report = artifact_check.check_artifact(
        corrupt(tiny_package.archive, tmp_path, lambda root: (root / "code" / "inference.py").unlink())
    )
    assert report.problems == ["artifact lacks code/inference.py"]

    def retouch(root: Path) -> None:
        from safetensors.torch import load_file, save_file

        weights = load_file(str(root / "model.safetensors"))
        name = next(iter(weights))
        weights[name] = weights[name] + 0.5
        save_file(weights, str(root / "model.safetensors"), metadata={"format": "pt"})

    shutil.rmtree(tmp_path / "corrupt")
    report = artifact_check.check_artifact(corrupt(tiny_package.archive, tmp_path, retouch))
    assert any(p.startswith("content_sha256 is") for p in report.problems)


def test_check_of_a_non_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "model.tar.gz"
    bogus.write_bytes(b"not a tarball")
    report = artifact_check.check_artifact(bogus)
    assert not report.ok and report.problems[0].startswith("cannot extract")


def test_failed_check_leaves_no_archive(
    tiny_st_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        packaging, "run_artifact_check", lambda archive, python, serving: {"ok": False, "problems": ["boom"]}
    )
    request = request_for(tiny_st_model_dir, tmp_path)
    with pytest.raises(PackagingError, match="failed its check: boom"):
        packaging.package(request)
    assert list((tmp_path / "out").iterdir()) == []


def test_overrides_reach_manifest_and_handler(
    tiny_st_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packaging, "run_artifact_check", lambda archive, python, serving: {"ok": True})
    request = request_for(
        tiny_st_model_dir,
        tmp_path,
        pooling="cls",
        normalize=False,
        max_seq_length=12,
        probe_texts=("one probe", "two probes"),
        instance_type="ml.m5.xlarge",
        region="eu-west-1",
    )
    result = packaging.package(request)
    assert result.st_min_cosine is None  # overrides: sentence-transformers is expected to differ
    manifest = result.manifest
    assert (manifest.pooling, manifest.normalize, manifest.max_seq_length) == ("cls", False, 12)
    assert manifest.probe_texts == ["one probe", "two probes"]
    assert "-cpu-" in manifest.image_uri and ".eu-west-1." in manifest.image_uri
    norms = torch.tensor(manifest.reference_embeddings).norm(dim=1)
    assert not torch.allclose(norms, torch.ones(2), atol=1e-3)


@pytest.mark.parametrize(
    ("change", "overrides", "message"),
    [
        (
            lambda d: (d / "model.safetensors").rename(d / "pytorch_model.bin"),
            {},
            "no .safetensors weights.*pytorch_model.bin",
        ),
        (lambda d: (d / "config.json").unlink(), {}, "no config.json"),
        (lambda d: [(d / n).unlink() for n in ("tokenizer.json", "vocab.txt")], {}, "no tokenizer files"),
        (lambda d: None, {"model_id": "no spaces"}, "model id 'no spaces' is invalid"),
        (lambda d: None, {"instance_type": "g5.xlarge"}, "not a SageMaker type"),
        (lambda d: None, {"region": "mars-1"}, "no handler image for region 'mars-1'"),
        (lambda d: None, {"pooling": "median"}, "pooling 'median'"),
        (lambda d: None, {"max_seq_length": 65}, "outside 1..64"),
        (lambda d: None, {"probe_texts": ()}, "probe texts"),
        (
            lambda d: (d / "modules.json").write_text(
                json.dumps(
                    [
                        {"path": "", "type": "sentence_transformers.models.Transformer"},
                        {"path": "2_Dense", "type": "sentence_transformers.models.Dense"},
                    ]
                )
            ),
            {},
            "unsupported model: .*Dense",
        ),
    ],
)
def test_package_refuses_with_a_clear_message(
    model_copy: Path, tmp_path: Path, change: Any, overrides: dict[str, Any], message: str
) -> None:
    change(model_copy)
    with pytest.raises(PackagingError, match=message):
        packaging.package(request_for(model_copy, tmp_path, **overrides))


def test_model_id_rules_and_upload_destinations() -> None:
    assert validate_model_id("all-MiniLM-L6-v2.v1_0") == "all-MiniLM-L6-v2.v1_0"
    for bad in ("", "-x", "a/b", "a b", "x" * 129, "..", "a\n"):
        with pytest.raises(ManifestError):
            validate_model_id(bad)
    assert parse_destination("s3://bucket/some/prefix/") == ("bucket", "some/prefix")
    assert parse_destination("s3://bucket") == ("bucket", "")
    for bad in ("https://bucket/x", "s3:///x"):
        with pytest.raises(UploadError):
            parse_destination(bad)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="artifacts")
        yield client


def test_upload_writes_tarball_and_manifest_side_by_side(s3: Any, tiny_package: PackageResult) -> None:
    digest = tiny_package.manifest.content_sha256
    result = upload_artifact(
        tiny_package.archive, tiny_package.manifest_path, "s3://artifacts/models", "tiny-st", digest
    )
    assert result.archive_url == f"s3://artifacts/models/tiny-st/{digest}/model.tar.gz"
    assert result.manifest_url == f"s3://artifacts/models/tiny-st/{digest}/manifest.json"
    tarball = s3.get_object(Bucket="artifacts", Key=f"models/tiny-st/{digest}/model.tar.gz")
    assert tarball["Body"].read() == tiny_package.archive.read_bytes()
    assert tarball["ContentType"] == "application/gzip"
    manifest = s3.get_object(Bucket="artifacts", Key=f"models/tiny-st/{digest}/manifest.json")
    assert json.loads(manifest["Body"].read()) == tiny_package.manifest.to_dict()
    pointer = json.loads(s3.get_object(Bucket="artifacts", Key="models/tiny-st/latest.json")["Body"].read())
    assert pointer["content_sha256"] == digest and pointer["model_data_url"] == result.archive_url


def test_upload_of_a_version_never_overwrites_an_earlier_one(
    s3: Any, tiny_package: PackageResult, tmp_path: Path
) -> None:
    """Two versions live under two keys; uploading the same content again rewrites nothing."""
    first_hash, second_hash = "1" * 64, "2" * 64
    first = upload_artifact(tiny_package.archive, tiny_package.manifest_path, "s3://artifacts/m", "tiny", first_hash)
    other = tmp_path / "other.tar.gz"
    other.write_bytes(b"version two")
    second = upload_artifact(other, tiny_package.manifest_path, "s3://artifacts/m", "tiny", second_hash)
    assert first.archive_url != second.archive_url and not second.already_there
    again = upload_artifact(other, tiny_package.manifest_path, "s3://artifacts/m", "tiny", first_hash)
    assert again.already_there and again.archive_url == first.archive_url
    kept = s3.get_object(Bucket="artifacts", Key=f"m/tiny/{first_hash}/model.tar.gz")["Body"].read()
    assert kept == tiny_package.archive.read_bytes()  # not "version two"
    pointer = json.loads(s3.get_object(Bucket="artifacts", Key="m/tiny/latest.json")["Body"].read())
    assert pointer["content_sha256"] == first_hash  # the latest upload names what is latest


def test_an_upload_that_loses_the_race_for_a_key_keeps_the_winners_object(
    s3: Any, tiny_package: PackageResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between "is it there?" and the write another upload may land: the write is conditional."""
    digest = "3" * 64
    key = f"m/tiny/{digest}/model.tar.gz"
    s3.put_object(Bucket="artifacts", Key=key, Body=b"the winner")
    monkeypatch.setattr("esdeploy.s3upload._exists", lambda *_: False)
    monkeypatch.setattr("esdeploy.s3upload.PART_BYTES", 5 * 1024 * 1024)  # multipart for the tiny archive too
    big = tmp_path / "big.tar.gz"
    big.write_bytes(b"x" * (11 * 1024 * 1024))
    result = upload_artifact(big, tiny_package.manifest_path, "s3://artifacts/m", "tiny", digest)
    assert result.already_there
    assert s3.get_object(Bucket="artifacts", Key=key)["Body"].read() == b"the winner"
    assert s3.list_multipart_uploads(Bucket="artifacts").get("Uploads", []) == []  # aborted, not billed


def test_upload_to_a_missing_bucket_is_an_upload_error(s3: Any, tiny_package: PackageResult) -> None:
    with pytest.raises(UploadError, match="s3://nope/models"):
        upload_artifact(tiny_package.archive, tiny_package.manifest_path, "s3://nope/models", "tiny-st", "0" * 64)


def test_cli_packages_checks_and_uploads(
    s3: Any, tiny_st_model_dir: Path, tmp_path: Path, tiny_package: PackageResult
) -> None:
    output = tmp_path / "dist" / "model.tar.gz"
    result = CliRunner().invoke(
        app,
        [
            "package",
            str(tiny_st_model_dir),
            "--model-id",
            "tiny-st",
            "--output",
            str(output),
            "--upload",
            "s3://artifacts/models/",
            "--instance-type",
            "ml.g5.2xlarge",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(output)
    manifest = Manifest.read(output.parent / "manifest.json")
    # Same model and code give the same content hash, whatever the instance type or time.
    assert manifest.content_sha256 == tiny_package.manifest.content_sha256
    assert manifest.instance_type == "ml.g5.2xlarge"
    folder = f"models/tiny-st/{manifest.content_sha256}"
    stored = json.loads(s3.get_object(Bucket="artifacts", Key=f"{folder}/manifest.json")["Body"].read())
    assert stored == manifest.to_dict()
    assert s3.head_object(Bucket="artifacts", Key=f"{folder}/model.tar.gz")["ContentLength"] == output.stat().st_size
    assert f"latest version of tiny-st: s3://artifacts/models/tiny-st/latest.json -> {manifest.content_sha256}" in (
        result.stderr.replace("\n", "")
    )


def test_cli_reports_packaging_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["package", str(tmp_path), "--model-id", "x", "--output", str(tmp_path / "o.tgz")])
    assert result.exit_code == 1
    assert re.search(r"package failed:.*no config\.json", result.output.replace("\n", " "))
