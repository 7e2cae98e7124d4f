"""Fixtures for end-to-end tests: the local stack in a subprocess, and a tiny packaged model."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esdeploy.local.processes import free_port, processes_mentioning
from tests.serving.conftest import add_sentence_transformers_files, build_tiny_bert

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`esdeploy local` as a user starts it; stopped with Ctrl-C (SIGINT) at the end."""
    state = tmp_path_factory.mktemp("stack")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for name in [n for n in env if n.startswith(("ESDEPLOY_", "AWS_"))]:
        del env[name]
    process = subprocess.Popen(
        [sys.executable, "-m", "esdeploy.local", "--port", str(port), "--state-dir", str(state)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.time() + 120
    for line in process.stdout:
        lines.append(line)
        if "local stack ready" in line or time.time() > deadline:
            break
    assert "local stack ready" in "".join(lines), "".join(lines)
    info = json.loads((state / "stack.json").read_text())
    try:
        yield {**info, "process": process, "state": state, "startup": "".join(lines)}
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=90)[0]
        assert process.returncode == 0, output[-3000:]
        assert "local stack stopped" in output
        assert processes_mentioning(str(state)) == []


@pytest.fixture(scope="module")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")
    return add_sentence_transformers_files(directory)


def aws_env(stack: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESDEPLOY_", "AWS_"))}
    return {**env, "AWS_ENDPOINT_URL": stack["aws_endpoint"], "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}
