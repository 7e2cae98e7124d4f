"""Fixtures for end-to-end tests: the installed `esdeploy local` in a subprocess, and a tiny packaged model."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esdeploy.local.background import BackgroundStack, start_in_background
from esdeploy.local.processes import free_port, processes_mentioning
from tests.console_script import ROOT, installed_esdeploy, user_env
from tests.e2e.packaged import PackagedModels
from tests.serving.conftest import add_sentence_transformers_files, build_tiny_bert


@pytest.fixture(scope="module")
def outside_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory outside the checkout: the console script must not depend on the cwd."""
    directory = tmp_path_factory.mktemp("elsewhere")
    assert ROOT not in directory.parents
    return directory


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, outside_repo: Path) -> Iterator[dict[str, Any]]:
    """`esdeploy local` as a user starts it, from outside the repo; stopped with Ctrl-C (SIGINT) at the end.

    Its output goes to a log file (a pipe nobody reads would block the stack), shown when a test fails.
    """
    state = tmp_path_factory.mktemp("stack")
    log = state.parent / f"{state.name}.log"
    running = start_in_background(
        free_port(), state, log, env=user_env(), cwd=outside_repo, command=[installed_esdeploy()]
    )
    try:
        yield {**running.info, "handle": running, "state": state}
    finally:
        code = running.stop(timeout=90)
        output = running.log_tail(60)
        assert code == 0, output
        assert "local stack stopped" in output
        assert processes_mentioning(str(state)) == []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing e2e test shows the end of the stack's log beside its own output."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    running = getattr(item, "funcargs", {}).get("stack", {}).get("handle")
    if report.failed and isinstance(running, BackgroundStack):
        report.sections.append(("esdeploy local log (last 80 lines)", running.log_tail(80)))


@pytest.fixture(scope="module")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")
    return add_sentence_transformers_files(directory)


@pytest.fixture(scope="session")
def packaged_models(tmp_path_factory: pytest.TempPathFactory) -> PackagedModels:
    """The tiny model packaged once per model id for the whole run: pytest-xdist's workers share the folder
    above their own temporary folders (tests/e2e/packaged.py)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "packaged-models"
    root.mkdir(exist_ok=True)
    assert ROOT not in root.parents
    return PackagedModels(root, cwd=root)


def aws_env(stack: dict[str, Any]) -> dict[str, str]:
    """The second shell of README's "Try it by hand": the two `export` lines `esdeploy local` printed."""
    return user_env(
        ESDEPLOY_API=stack["api_url"],
        ESDEPLOY_SSM_PREFIX=stack["ssm_prefix"],
        ESDEPLOY_LOG_FILE=stack["log_file"],
        AWS_ENDPOINT_URL=stack["aws_endpoint"],
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_DEFAULT_REGION="us-east-1",
    )

