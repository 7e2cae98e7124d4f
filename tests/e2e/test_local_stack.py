"""End to end: the local stack in a subprocess, a tiny real model, deploy -> swap -> invoke -> delete."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import ROOT, aws_env, processes_mentioning

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "tiny_e2e.model"


def wait_for(api: str, kind: str, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = requests.get(f"{api}/{kind}/{task_id}", timeout=10).json()
        if task["status"] in {"done", "failed", "refused", "canceled"}:
            return task
        time.sleep(0.3)
    raise AssertionError(f"{kind} {task_id} still {task['status']}/{task['stage']} after {timeout} s")


def test_full_lifecycle_on_the_local_stack(stack: dict[str, Any], tiny_st_model: Path, tmp_path: Path) -> None:
    api = stack["api_url"]
    assert requests.get(f"{api}/health", timeout=5).json()["status"] == "ok"
    packaged = subprocess.run(
        [sys.executable, "-m", "esdeploy", "package", str(tiny_st_model), "--model-id", MODEL,
         "--output", str(tmp_path / "model.tar.gz"), "--upload", stack["artifact_upload_url"]],
        cwd=ROOT, env=aws_env(stack), capture_output=True, text=True, timeout=300,
    )
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr

    blue = requests.post(f"{api}/deploy", json={"model_id": MODEL, "config": {"bake_seconds": 3}}, timeout=10).json()
    blue = wait_for(api, "deploy", blue["task_id"])
    assert blue["status"] == "done", blue
    answer = requests.post(f"{api}/models/{MODEL}/invoke", json={"inputs": ["hello world", "quick fox"]},
                           timeout=30).json()
    assert answer["dimension"] == 32 and len(answer["embeddings"]) == 2
    assert answer["endpoint_name"] == blue["endpoint_name"]
    norm = sum(x * x for x in answer["embeddings"][0]) ** 0.5
    assert abs(norm - 1) < 1e-4  # the manifest says normalise, and the real handler did

    green = requests.post(f"{api}/deploy", json={"model_id": MODEL, "config": {"bake_seconds": 3}}, timeout=10).json()
    green = wait_for(api, "deploy", green["task_id"])
    assert green["status"] == "done", green
    alias = requests.get(f"{api}/models/{MODEL}", timeout=10).json()
    assert alias["endpoint_name"] == green["endpoint_name"]
    assert alias["previous_endpoint_name"] == blue["endpoint_name"]
    swapped = requests.post(f"{api}/models/{MODEL}/invoke", json={"inputs": ["hello world"]}, timeout=30).json()
    assert swapped["endpoint_name"] == green["endpoint_name"]
    assert swapped["embeddings"][0] == pytest.approx(answer["embeddings"][0], abs=1e-5)  # same weights

    # After the bake the blue endpoint process is gone.
    deadline = time.time() + 60
    while time.time() < deadline and requests.get(f"{api}/models/{MODEL}", timeout=10).json()["previous_endpoint_name"]:
        time.sleep(0.5)
    assert requests.get(f"{api}/models/{MODEL}", timeout=10).json()["previous_endpoint_name"] is None
    # The alias drops `previous` first, then the endpoint process is stopped.
    while time.time() < deadline and processes_mentioning(blue["endpoint_name"]):
        time.sleep(0.2)
    assert processes_mentioning(blue["endpoint_name"]) == []
    assert len(processes_mentioning(green["endpoint_name"])) == 1

    deletion = requests.post(f"{api}/delete", json={"model_id": MODEL, "reason": "e2e"}, timeout=10).json()
    deletion = wait_for(api, "delete", deletion["task_id"])
    assert deletion["status"] == "done", deletion
    assert requests.get(f"{api}/models", timeout=10).json() == {"models": []}
    deadline = time.time() + 30
    while time.time() < deadline and processes_mentioning(green["endpoint_name"]):
        time.sleep(0.2)
    assert processes_mentioning(green["endpoint_name"]) == []
    assert requests.get(f"{api}/delete-status/{MODEL}", timeout=10).json()["task_id"] == deletion["task_id"]


def test_an_artifact_that_cannot_load_fails_the_deploy(stack: dict[str, Any]) -> None:
    import boto3

    env = aws_env(stack)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="local", aws_secret_access_key="local")
    bucket, prefix = stack["artifact_upload_url"][5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/broken/model.tar.gz", Body=b"this is not a tarball")
    api = stack["api_url"]
    task = requests.post(f"{api}/deploy", json={"model_id": "broken"}, timeout=10).json()
    task = wait_for(api, "deploy", task["task_id"])
    assert task["status"] == "failed"
    assert "failed" in task["detail"] and task["endpoint_name"] in task["detail"]
    assert requests.get(f"{api}/models/broken", timeout=10).status_code == 404


def cli(stack: dict[str, Any], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esdeploy", "--api", stack["api_url"], "--poll-interval", "0.3", *args],
        cwd=ROOT, env=aws_env(stack), capture_output=True, text=True, timeout=timeout,
    )


def test_the_cli_drives_deploy_swap_invoke_delete(stack: dict[str, Any], tiny_st_model: Path, tmp_path: Path) -> None:
    model = "tiny-cli"
    packaged = cli(stack, "package", str(tiny_st_model), "--model-id", model,
                   "--output", str(tmp_path / "model.tar.gz"), "--upload", stack["artifact_upload_url"], timeout=300)
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr

    first = cli(stack, "--json", "deploy", model, "--bake-seconds", "2", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    blue = json.loads(first.stdout)
    assert blue["status"] == "done" and blue["stage"] == "finished"

    second = cli(stack, "--json", "deploy", model, "--bake-seconds", "2", "--wait")
    assert second.returncode == 0, second.stdout + second.stderr
    green = json.loads(second.stdout)

    listed = cli(stack, "--json", "models")
    assert listed.returncode == 0
    live = {m["embedding_model_id"]: m for m in json.loads(listed.stdout)["models"]}
    assert live[model]["endpoint_name"] == green["endpoint_name"]

    invoked = cli(stack, "--json", "invoke", model, "hello world", "quick brown fox")
    assert invoked.returncode == 0, invoked.stderr
    answer = json.loads(invoked.stdout)
    assert answer["endpoint_name"] == green["endpoint_name"] and len(answer["embeddings"]) == 2

    deleted = cli(stack, "delete", model, "--wait")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    status = cli(stack, "--json", "status", "--model", model, "--delete")
    assert json.loads(status.stdout)["status"] == "done"
    missing = cli(stack, "model", model)
    assert missing.returncode == 5 and "is not deployed" in missing.stderr
