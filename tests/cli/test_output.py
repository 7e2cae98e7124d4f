"""Output into a pipe or a file is plain, stable lines (no borders, no padding, never wrapped, one
line per event); tables only on a terminal, fitted to its width."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from esdeploy import packaging, views
from esdeploy.manifest import Manifest
from esdeploy.packaging import PackageRequest, PackageResult
from esdeploy.progress import LineView
from tests.cli.conftest import Cli, task
from tests.cli.test_commands import ALIAS

HASH = "8ed8855bdd96b0f2a1e5c9d3e7f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0"
ALIAS_2 = {**ALIAS, "embedding_model_id": "a-much-longer-model-id", "endpoint_name": "esd-long-1",
           "previous_endpoint_name": None, "task_id": "t2"}


def plain_lines(text: str) -> list[str]:
    lines = text.splitlines()
    assert all(line == line.rstrip() for line in lines), "no trailing blanks"
    return lines


def test_models_into_a_pipe_is_a_header_and_one_line_per_model(cli: Cli) -> None:
    cli.api.on("GET", "/models", (200, {"models": [ALIAS, ALIAS_2]}))
    lines = plain_lines(cli("models").stdout)
    assert [line.split() for line in lines] == [
        ["MODEL", "LIVE_ENDPOINT", "PREVIOUS_ENDPOINT", "SWAPPED_AT", "TASK"],
        ["m1", "esd-m1-aaaa-bbbb", "esd-m1-aaaa-cccc", "2025-01-01T00:05:00.000000Z", "t1"],
        ["a-much-longer-model-id", "esd-long-1", "-", "2025-01-01T00:05:00.000000Z", "t2"],
    ]
    assert len({line.index(line.split()[1]) for line in lines}) == 1, "columns line up"


def test_models_on_a_terminal_is_a_table_fitted_to_its_width(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: the output is a terminal
    monkeypatch.setenv("COLUMNS", "70")
    cli.api.on("GET", "/models", (200, {"models": [ALIAS]}))
    shown = re.sub(r"\x1b\[[0-9;]*m", "", cli("models").stdout)  # the header is bold
    assert "┃ model" in shown and "live endpoint" in shown
    assert max(len(line) for line in shown.splitlines()) <= 70
    assert "…" not in shown, "ids fold onto a second line; they are never cut"


def test_status_into_a_pipe_is_not_padded_or_wrapped(cli: Cli) -> None:
    long_detail = "artifact checked: manifest of m1, 5 probe texts with reference embeddings; " * 4
    shown = task("done", "finished", trail=[("queued", "pending"), ("creating", "processing")],
                 detail=long_detail.strip(), config={"content_hash": HASH, "instance_type": "ml.g5.xlarge"})
    cli.api.on("GET", "/deploy/t1", (200, shown))
    lines = plain_lines(cli("status", "t1").stdout)
    assert f"  content_hash   {HASH}" in lines
    events = lines[lines.index(next(line for line in lines if line.startswith("AT "))):]
    assert [line.split()[1:3] for line in events] == [
        ["STAGE", "STATUS"], ["queued", "pending"], ["creating", "processing"], ["finished", "done"]
    ]
    assert events[-1].endswith(long_detail.strip()), "a long detail stays on its line"
    assert all(len(line) < 100 for line in events[:-1]), "short rows are not padded to the longest"


def test_wait_lines_keep_their_columns_at_awaiting_promotion() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    view = LineView(console)
    trail = [("queued", "pending"), ("verifying", "processing"), ("awaiting_promotion", "processing"),
             ("swapping", "processing")]
    view.update(task("processing", "swapping", trail=trail))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    status_at = {line.index(" " + line.split()[2] + " ", len(line.split()[0]) + 2 + len(line.split()[1]))
                 if len(line.split()) > 3 else line.rindex(" " + line.split()[2]) for line in lines}
    assert len(status_at) == 1, lines


def _manifest(content: str) -> Manifest:
    return Manifest(
        model_id="m1", dimension=2, pooling="mean", normalize=True, max_seq_length=256, probe_texts=["a"],
        reference_embeddings=[[0.6, 0.8]], torch_version="2.13.0", transformers_version="4.49.0",
        content_sha256=content,
        image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0",
        instance_type="ml.g5.xlarge", region="us-east-1", created_at="2026-01-01T00:00:00Z",
    )


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The packager's output, without its minutes: each call writes the archive and manifest.json beside
    it, with the next content hash of the list."""
    contents: list[str] = []

    def package(request: PackageRequest, progress: Any = None) -> PackageResult:
        manifest = _manifest(contents.pop(0))
        request.output.parent.mkdir(parents=True, exist_ok=True)
        request.output.write_bytes(manifest.content_sha256.encode())
        beside = request.output.parent / "manifest.json"
        beside.write_text(manifest.to_json())
        return PackageResult(archive=request.output, manifest_path=beside, manifest=manifest,
                             archive_bytes=64, check={"load_seconds": 0.1, "min_cosine": 1.0})

    monkeypatch.setattr(packaging, "package", package)
    return contents


def test_a_second_package_says_what_it_replaced(cli: Cli, builds: list[str], tmp_path: Path) -> None:
    """`dist/<model>/model.tar.gz` is written over by the next build of the model: said, with both hashes."""
    other = "1" * 64
    builds += [HASH, HASH, other]
    output = tmp_path / "dist" / "m1" / "model.tar.gz"
    args = ("package", str(tmp_path), "--model-id", "m1", "--output", str(output))
    first = cli(*args)
    assert first.exit_code == 0, first.output
    assert "replaced" not in first.stderr and first.stdout == f"{output}\n"
    same = cli(*args)
    assert f"replaced        an earlier build of the same content ({HASH[:12]}): nothing changed" in same.stderr
    changed = cli(*args)
    said = " ".join(changed.stderr.split())
    assert f"replaced an earlier build, content {HASH[:12]}, now {other[:12]}; it is gone" in said
    assert changed.stdout == f"{output}\n", "stdout stays the archive's path alone"


def test_the_package_summary_keeps_the_content_hash_whole_in_a_narrow_pipe(tmp_path: Path) -> None:
    manifest = _manifest(HASH)
    result = PackageResult(archive=tmp_path / "model.tar.gz", manifest_path=tmp_path / "manifest.json",
                           archive_bytes=90_000_000, manifest=manifest,
                           check={"load_seconds": 1.2, "min_cosine": 0.999999}, st_min_cosine=None)
    narrow = Console(file=io.StringIO(), width=40, color_system=None)
    narrow.print(views.package_summary(result, plain=True), soft_wrap=True)
    lines = plain_lines(narrow.file.getvalue())  # type: ignore[attr-defined]
    assert f"content sha256  {HASH}" in lines
    assert any(line.startswith("image           763104351884.dkr.ecr") for line in lines)


def test_an_upload_into_a_pipe_prints_no_progress_bar_cut_at_80_columns(tmp_path: Path) -> None:
    """A bar's last frame in a pipe was the URL cut with an ellipsis; the line after the upload says
    where it went."""
    import boto3
    from moto import mock_aws

    from esdeploy.s3upload import upload_artifact

    archive, beside = tmp_path / "model.tar.gz", tmp_path / "manifest.json"
    archive.write_bytes(b"x" * 4096)
    beside.write_text("{}")
    piped = Console(file=io.StringIO(), width=80, color_system=None)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        upload_artifact(archive, beside, "s3://artifacts/models", "m1", HASH, s3_client=s3, console=piped)
    assert piped.file.getvalue() == ""  # type: ignore[attr-defined]
