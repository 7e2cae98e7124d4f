"""The contract, fuzzed: schemathesis against the installed `esdeploy local` over loopback, every route.

schemathesis reads GET /openapi.json and sends what it generates from it: examples, the coverage
phase's boundary and negative values (wrong types, missing fields, undeclared methods, missing or
wrong `Content-Type`, bodies over the size limit), random fuzzing, and stateful sequences along the
links it infers (POST /deploy -> GET /deploy/{task_id} -> cancel, ...). Every answer must be no 5xx
and conform to the document: a documented status, its `Content-Type`, its body schema (which
forbids undocumented fields), and a 4xx for data the document calls invalid. One model is deployed
first, so that /invoke, /models and the task routes answer 200s too, not only 404s.

The run is bounded by examples per operation and a fixed seed (ESDEPLOY_FUZZ_EXAMPLES,
ESDEPLOY_FUZZ_SEED to change them); its request count and time are printed in pytest's summary.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import FUZZ_REPORT
from tests.e2e.packaged import SHARED_MODEL, PackagedModels

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = SHARED_MODEL
DEPLOY_TASK = "contract-deploy"
DELETE_TASK = "contract-delete"
EXAMPLES = 12
SEED = 20261201

# `positive_data_acceptance` is left out: the stage's allow-lists (instance types, counts, bake,
# the artifact bucket) are settings, not part of the document, so a schema-valid config may still be
# a 422 on a given stage. 413 joins the rejections: a body over the size limit is refused as such.
CONFIG = f"""
[checks.negative_data_rejection]
expected-statuses = ["400", "403", "404", "405", "409", "413", "415", "422"]

[dictionaries.models]
values = ["{MODEL}"]

[dictionaries.tasks]
values = ["{DEPLOY_TASK}", "{DELETE_TASK}"]

[parameters]
"path.embedding_model_id" = {{ dictionary = "models", probability = 0.5 }}
"path.task_id" = {{ dictionary = "tasks", probability = 0.5 }}
"""


@pytest.fixture(scope="module")
def live_model(stack: dict[str, Any], packaged_models: PackagedModels) -> str:
    """The tiny model live on a real local endpoint, and one ended deletion task."""
    api = stack["api_url"]
    packaged_models.upload(stack, MODEL)
    deploy = requests.post(f"{api}/deploy", json={"model_id": MODEL, "id": DEPLOY_TASK,
                                                  "config": {"bake_seconds": 1}}, timeout=10)
    assert deploy.status_code == 200, deploy.text
    assert wait_for(api, "deploy", DEPLOY_TASK)["status"] == "done"
    refused = requests.post(f"{api}/delete", json={"model_id": "contract-nothing", "id": DELETE_TASK}, timeout=10)
    assert refused.status_code == 200, refused.text
    wait_for(api, "delete", DELETE_TASK)
    return MODEL


def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(
    stack: dict[str, Any], live_model: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    before = _served(stack)
    examples = int(_env("ESDEPLOY_FUZZ_EXAMPLES", EXAMPLES))
    seed = int(_env("ESDEPLOY_FUZZ_SEED", SEED))
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{stack['api_url']}/openapi.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(examples), "--seed", str(seed), "--workers", "1",
        "--request-timeout", "30", "--suppress-health-check", "all", "--warnings", "off",
    ]
    started = time.monotonic()
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated", output)
    statuses = _served(stack) - before
    served = sum(statuses.values())
    passed = run.returncode == 0
    # On the test report, so that the summary has it also when the test ran in a pytest-xdist worker.
    request.node.user_properties.append((FUZZ_REPORT,
        f"schemathesis against esdeploy local: {generated.group(1) if generated else '?'} test cases generated, "
        f"{served} requests served, {took:.0f} s, {'no failures' if passed else 'FAILED'} "
        f"(--max-examples {examples} per operation, --seed {seed}); statuses "
        + ", ".join(f"{code}: {count}" for code, count in sorted(statuses.items()))
    ))
    assert passed, _failures(output)
    assert generated is not None and int(generated.group(1)) > 100, output[-3000:]
    assert served > 100, "the stack's log shows fewer requests than schemathesis claims to have sent"
    # The refusals the issue named, produced by the run itself and checked against the document there.
    assert {200, 400, 404, 405, 409, 413, 415, 422} <= set(statuses), statuses
    assert not [code for code in statuses if code >= 500], statuses


def wait_for(api: str, kind: str, task_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = requests.get(f"{api}/{kind}/{task_id}", timeout=10).json()
        if task["status"] in {"done", "failed", "refused", "canceled"}:
            return dict(task)
        time.sleep(0.3)
    raise AssertionError(f"{kind} {task_id} still {task['status']}/{task['stage']} after {timeout} s")


def _env(name: str, default: int) -> str:
    import os

    return os.environ.get(name, str(default))


def _served(stack: dict[str, Any]) -> Counter[int]:
    """Answers the stack printed, by status: one `api` line each, whoever answered (the app or the
    local API server), and a poll like the line before counted in the `again, N more times` line."""
    text = stack["handle"].log_path.read_text(errors="replace")
    served: Counter[int] = Counter()
    for code, again in re.findall(r"^\d\d:\d\d:\d\d  api +\S+ \S+ -> (\d{3})(?: again, (\d+) more times?)?",
                                  text, flags=re.MULTILINE):
        served[int(code)] += int(again) if again else 1
    return served


def _failures(output: str) -> str:
    """The FAILURES section and the summary, each line cut short (bodies can be megabytes)."""
    lines = [line[:400] for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if "FAILURES" in line), max(len(lines) - 120, 0))
    return "\n".join(lines[start:start + 400])
