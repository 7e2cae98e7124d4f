"""Fixtures for tests/infra: each stage is packaged once per session (about 5 s each)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

# The helpers sit beside this file; pytest's importlib mode would not put this folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
from infra_support import INFRA_VENV, package, project_dir


def _require_app() -> None:
    if not (project_dir() / "app.py").exists():
        pytest.skip("app.py does not exist yet: `chalice package` needs the Chalice app")


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """packaged(stage) -> (out_dir, template dict) of `infra/package.sh <stage>`."""
    cache: dict[str, tuple[Path, dict[str, Any]] | AssertionError] = {}

    def get(stage: str) -> tuple[Path, dict[str, Any]]:
        _require_app()
        if stage not in cache:
            out = tmp_path_factory.mktemp(f"package-{stage}")
            try:
                cache[stage] = (out, package(stage, out))
            except AssertionError as failure:  # package once: every test of the stage reports it
                cache[stage] = failure
        found = cache[stage]
        if isinstance(found, AssertionError):
            raise found
        return found

    return get


@pytest.fixture(scope="session")
def infra_tool() -> Any:
    """infra_tool(name) -> path of cfn-lint/checkov in .venv-infra. Missing tools fail under CI
    (the Makefile creates the venv first) and skip on a developer machine that never made it."""

    def get(name: str) -> Path:
        path = INFRA_VENV / "bin" / name
        if not path.exists():
            message = f"{path} is missing: run `make infra-venv` (pip install -r requirements-infra.txt)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        return path

    return get
