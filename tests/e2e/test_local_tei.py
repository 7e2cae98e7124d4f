"""End to end: a TEI deploy on the local stack — the TEI stand-in behind the same gate, swap, bake, rollback and
delete as the handler, on a CPU and a GPU instance type, while an application's embedder answers across every
swap. One stack (this module's), one tiny model packaged once with `--serving tei`, short bakes."""
from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.console_script import installed_esdeploy
from tests.e2e.conftest import aws_env, processes_mentioning
from tests.e2e.test_local_stack import embedded_client, wait_for, wait_for_stage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "tiny-tei"
# More than TEI's 32 inputs a request: the embedder must split the batch, and keep it on one variant.
TEXTS = [f"text {i}: the quick brown fox searches embedding vector models" for i in range(40)]


class EmbedderLoop:
    """An application embedding through the alias without pause, counting what answered and what failed."""

    def __init__(self, stack: dict[str, Any]) -> None:
        self.embedder = embedded_client(stack).embedder(MODEL, ttl_seconds=0.5)
        self.answered: Counter[tuple[str, str]] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EmbedderLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.embedder.embed(TEXTS)
                assert len(answer.vectors) == len(TEXTS) and answer.dimension == 32
                self.answered[(answer.endpoint_name, answer.serving)] += 1
            except Exception as error:  # any failure of the application's call counts
                self.failures.append(f"{type(error).__name__}: {error}")

    def calls_to(self, endpoint: str) -> int:
        return sum(count for (name, _), count in self.answered.items() if name == endpoint)


def cli(stack: dict[str, Any], cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([installed_esdeploy(), "--poll-interval", "0.3", *args], cwd=cwd, env=aws_env(stack),
                          capture_output=True, text=True, timeout=timeout)


def deploy(api: str, **config: Any) -> dict[str, Any]:
    answer = requests.post(f"{api}/deploy", json={"model_id": MODEL, "config": config}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def serving_process(endpoint: str) -> str:
    [process] = processes_mentioning(endpoint)
    return process


def environment_of(process: str) -> dict[str, str]:
    pid = process.split(":", 1)[0]
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


def test_a_tei_model_goes_through_gate_swap_bake_rollback_and_delete_on_cpu_and_gpu(
    stack: dict[str, Any], tiny_st_model: Path, tmp_path: Path, outside_repo: Path
) -> None:
    api = stack["api_url"]
    packaged = cli(stack, outside_repo, "package", str(tiny_st_model), "--model-id", MODEL, "--serving", "tei",
                   "--output", str(tmp_path / "model.tar.gz"), "--upload", stack["artifact_upload_url"])
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    assert json.loads((tmp_path / "manifest.json").read_text())["serving"] == "tei"

    # Its latest artifact was packaged for TEI: a handler deploy of it is refused at submit, naming why.
    refused = requests.post(f"{api}/deploy", json={"model_id": MODEL}, timeout=10)
    assert refused.status_code == 422 and refused.json()["field"] == "config.serving", refused.text
    assert "packaged for 'tei'" in refused.json()["detail"]

    # First variant: TEI's CPU image on a CPU type, deployed as a person does, through the installed CLI.
    first = cli(stack, outside_repo, "--json", "deploy", MODEL, "--serving", "tei", "--instance-type",
                "ml.c6i.large", "--bake-seconds", "1", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    cpu = json.loads(first.stdout)
    assert (cpu["status"], cpu["config"]["serving"]) == ("done", "tei"), cpu
    assert "/tei-cpu:" in cpu["config"]["image_uri"]
    assert any("smoke test passed on 5 probe texts" in e.get("detail", "") for e in cpu["events"])
    assert "esdeploy.local.tei_standin" in serving_process(cpu["endpoint_name"])
    invoked = requests.post(f"{api}/models/{MODEL}/invoke", json={"inputs": ["hello world"]}, timeout=30).json()
    assert (invoked["serving"], invoked["model"], invoked["dimension"]) == ("tei", MODEL, 32), invoked

    with EmbedderLoop(stack) as loop:
        # Second: TEI's GPU image on a GPU type; the stand-in runs float16 there, as TEI's CUDA image does.
        gpu = wait_for_stage(api, deploy(api, serving="tei", instance_type="ml.g5.xlarge", bake_seconds=3)["task_id"],
                             "baking")
        assert gpu["stage"] == "baking" and "/tei:" in gpu["config"]["image_uri"], gpu
        assert environment_of(serving_process(gpu["endpoint_name"]))["DTYPE"] == "float16"
        assert wait_for(api, "deploy", gpu["task_id"])["status"] == "done"

        # Third: back to the CPU type, rolled back by hand during its bake: the alias returns to the GPU variant.
        third = wait_for_stage(api, deploy(api, serving="tei", instance_type="ml.c6i.large", bake_seconds=120)[
            "task_id"], "baking")
        assert third["stage"] == "baking", third
        wait_until(lambda: loop.calls_to(third["endpoint_name"]) > 0, "the embedder to reach the third variant")
        rolled = requests.post(f"{api}/models/{MODEL}/rollback", timeout=30)
        assert rolled.status_code == 200 and rolled.json()["endpoint_name"] == gpu["endpoint_name"], rolled.text
        assert wait_for(api, "deploy", third["task_id"])["status"] == "canceled"
        wait_until(lambda: not processes_mentioning(third["endpoint_name"]), "the rolled-away variant to stop")
        calls_before = loop.calls_to(gpu["endpoint_name"])
        wait_until(lambda: loop.calls_to(gpu["endpoint_name"]) > calls_before, "the embedder back on the GPU variant")

    assert loop.failures == [], loop.failures[:5]
    assert {endpoint for endpoint, _ in loop.answered} >= {gpu["endpoint_name"], third["endpoint_name"]}
    assert {serving for _, serving in loop.answered} == {"tei"}
    wait_until(lambda: not processes_mentioning(cpu["endpoint_name"]), "the first variant's teardown after the bake")

    deleted = cli(stack, outside_repo, "delete", MODEL, "--wait")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    wait_until(lambda: not processes_mentioning(gpu["endpoint_name"]), "the last variant to stop")


def wait_until(condition: Any, what: str, timeout: float = 120) -> None:
    """Polls `condition` (no fixed sleep: it returns as soon as the condition holds)."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not condition():
            if done.wait(0.2):
                raise AssertionError(f"waited {timeout} s for {what}")
    finally:
        deadline.cancel()
