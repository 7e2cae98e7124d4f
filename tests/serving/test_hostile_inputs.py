"""Hostile model folders and artifacts: nothing is read or written outside the folders we own."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from esdeploy import packaging
from esdeploy.artifact_check import extract_archive
from esdeploy.cli import app
from esdeploy.packaging import PackageRequest, PackagingError


def request_for(model_dir: Path, tmp_path: Path) -> PackageRequest:
    return PackageRequest(
        model_dir=model_dir,
        model_id="tiny",
        output=tmp_path / "out" / "model.tar.gz",
        region="us-east-1",
        instance_type="ml.g5.xlarge",
    )


def pooling_module(path: str) -> str:
    return json.dumps(
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"},
        ]
    )


@pytest.fixture
def escape_name() -> str:
    """A folder name nobody else uses, two levels above the staging folder (the system temp dir)."""
    return f"esdeploy-escape-{uuid.uuid4().hex}"


def test_a_module_path_up_and_out_is_refused_and_nothing_is_written_outside(
    model_copy: Path, tmp_path: Path, escape_name: str
) -> None:
    """`../../x`: read from beside the model folder, and (staging/../../x) written into the temp dir."""
    beside = (model_copy / ".." / ".." / escape_name).resolve()
    beside.mkdir(parents=True)
    (beside / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (model_copy / "modules.json").write_text(pooling_module(f"../../{escape_name}"))
    escaped = Path(tempfile.gettempdir()) / escape_name
    try:
        with pytest.raises(PackagingError, match=f"module path '../../{escape_name}' leaves the model folder"):
            packaging.package(request_for(model_copy, tmp_path))
        assert not escaped.exists()
    finally:
        shutil.rmtree(beside, ignore_errors=True)
        shutil.rmtree(escaped, ignore_errors=True)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, out: "/etc", "module path '/etc' leaves the model folder"),
        (lambda d, out: "1_Pooling/../../x", "module path '1_Pooling/../../x' leaves the model folder"),
        (lambda d, out: "..\\\\x", "leaves the model folder"),
        (lambda d, out: _link(d / "1_Pooling", out) or "1_Pooling", "is a link that leads out of the model folder"),
    ],
    ids=["absolute", "dot-dot-inside", "backslash", "symlink-out"],
)
def test_a_module_path_that_leaves_the_model_folder_is_refused(
    model_copy: Path, tmp_path: Path, make: Callable[[Path, Path], str], message: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text('{"secret": true}')
    (model_copy / "modules.json").write_text(pooling_module(make(model_copy, outside)))
    with pytest.raises(PackagingError, match=message):
        packaging.package(request_for(model_copy, tmp_path))


def _link(link: Path, target: Path) -> None:
    link.symlink_to(target, target_is_directory=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON"), ('{"path": "x"}', "must be a JSON list of objects"),
     ('[{"path": 3}]', "module path 3 is not a string")],
)
def test_a_broken_modules_json_is_a_packaging_error(
    model_copy: Path, tmp_path: Path, content: str, message: str
) -> None:
    (model_copy / "modules.json").write_text(content)
    with pytest.raises(PackagingError, match=message):
        packaging.package(request_for(model_copy, tmp_path))


def test_the_cli_says_so_in_one_line_without_a_traceback(model_copy: Path, tmp_path: Path) -> None:
    (model_copy / "modules.json").write_text(pooling_module("../../elsewhere"))
    result = CliRunner().invoke(
        app, ["package", str(model_copy), "--model-id", "tiny", "--output", str(tmp_path / "o" / "model.tar.gz")]
    )
    assert result.exit_code == 1
    assert "package failed:" in result.stderr and "leaves the model folder" in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit(1), not an escaped error


# ---- the endpoint's extractor (esdeploy.local.endpoint and the fresh-process check use it) --------------


def hostile_archive(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def file_member(name: str, data: bytes = b"x") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def link_member(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "member",
    [
        file_member("../escaped.txt"),
        file_member("code/../../escaped.txt"),
        file_member("/tmp/escaped-absolute.txt"),
        link_member("model.safetensors", "/etc/passwd", tarfile.SYMTYPE),
        link_member("model.safetensors", "../../escaped.txt", tarfile.SYMTYPE),
        link_member("model.safetensors", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dot-dot", "dot-dot-inside", "absolute", "symlink-absolute", "symlink-up", "hardlink-out"],
)
def test_the_extractor_refuses_members_that_leave_the_folder(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = hostile_archive(tmp_path / "model.tar.gz", member)
    target = tmp_path / "deep" / "model"
    with pytest.raises(tarfile.TarError):
        extract_archive(archive, target)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()
    assert not Path("/tmp/escaped-absolute.txt").exists()
    assert not (target / "model.safetensors").is_symlink()
