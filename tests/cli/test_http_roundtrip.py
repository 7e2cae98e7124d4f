"""The CLI against the real API: Chalice app over chalice's local HTTP server on loopback, moto behind it.

The wait loop's sleep runs the workers (one SQS message per poll), so `--wait` watches a real deploy
move through its stages, with a fake SageMaker and no real waiting.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from esdeploy.cli import app
from esdeploy.cli_runtime import CliHooks
from tests.cli.conftest import FakeClock
from tests.fakes.artifacts import content_hash_for
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World


class Stack:
    """The CLI pointed at the served app; every poll lets the workers take one step."""

    def __init__(self, world: World, url: str) -> None:
        self.world = world
        self.url = url
        self.clock = FakeClock()
        self.runner = CliRunner()

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        self.world.pump.run(steps=1)

    def __call__(self, *args: str) -> Any:
        hooks = CliHooks(sleep=self.sleep, clock=self.clock.time, live=False)
        return self.runner.invoke(app, ["--api", self.url, *args], obj=hooks)


@pytest.fixture
def stack(world: World, api_url: str) -> Stack:
    return Stack(world, api_url)


def deploy_m1(stack: Stack, *extra: str) -> Any:
    artifact = stack.world.upload_artifact("m1", manifest_for("m1"))
    return stack("deploy", "m1", "--artifact", artifact, "--bake-seconds", "0", *extra)


def test_deploy_wait_watches_every_stage_to_done(stack: Stack) -> None:
    result = deploy_m1(stack, "--wait", "--id", "first")
    assert result.exit_code == 0, result.output
    stages = [line[11:25].strip() for line in result.stdout.splitlines() if line.startswith("+")]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "queued", "preflight", "creating", "waiting", "verifying", "swapping", "finished"
    ]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("deploy task first for m1: done (finished); live endpoint ")

    models = json.loads(stack("--json", "models").stdout)["models"]
    assert [m["embedding_model_id"] for m in models] == ["m1"]
    endpoint = models[0]["endpoint_name"]
    assert endpoint in stack("models").stdout
    assert json.loads(stack("--json", "model", "m1").stdout)["task_id"] == "first"
    shown = stack("model", "m1").stdout
    assert "live artifact" in shown and content_hash_for("m1") in shown  # which weights the alias serves

    answer = stack("invoke", "m1", "hello", "world")
    assert answer.exit_code == 0, answer.output
    assert f"dimension 16 · endpoint {endpoint} · 2 vectors" in answer.stdout
    raw = json.loads(stack("--json", "invoke", "m1", "hello").stdout)
    assert raw["endpoint_name"] == endpoint and len(raw["embeddings"][0]) == 16

    status = stack("status", "first")
    assert status.exit_code == 0 and "smoke test passed" in status.stdout


def test_second_operation_is_refused_with_the_active_task(stack: Stack) -> None:
    first = deploy_m1(stack, "--id", "busy-1")
    assert first.exit_code == 0, first.output
    second = stack("delete", "m1")
    assert second.exit_code == 5
    assert "error (HTTP 409)" in second.stderr and "active task: busy-1 (deploy)" in second.stderr


def test_cancel_wait_ends_canceled(stack: Stack) -> None:
    deploy_m1(stack, "--id", "to-cancel")
    stack.world.pump.run(steps=2)  # preflight, then the green variant is being created
    result = stack("cancel", "to-cancel", "--wait")
    assert result.exit_code == 3, result.output
    assert "canceled" in result.stdout.strip().splitlines()[-1]


def test_delete_wait_and_status_by_model(stack: Stack) -> None:
    assert deploy_m1(stack, "--wait").exit_code == 0
    result = stack("delete", "m1", "--reason", "done with it", "--id", "del-1", "--wait")
    assert result.exit_code == 0, result.output
    for stage in ("unaliasing", "tearing_down", "finished"):
        assert stage in result.stdout
    by_model = json.loads(stack("--json", "status", "--model", "m1", "--delete").stdout)
    assert by_model["task_id"] == "del-1" and by_model["reason"] == "done with it"
    assert stack("status", "del-1").exit_code == 0  # not a deploy task: found among deletions
    assert "no models are deployed" in stack("models").stdout


def test_refused_delete_exits_6(stack: Stack) -> None:
    result = stack("delete", "never-deployed", "--wait")
    assert result.exit_code == 6, result.output
    assert "has nothing deployed" in result.stdout


def test_validation_error_names_the_field(stack: Stack) -> None:
    result = stack("deploy", "m1", "--artifact", "https://not-s3/model.tar.gz")
    assert result.exit_code == 5
    assert "error (HTTP 422)" in result.stderr and "option: --artifact" in result.stderr  # the API's field, as a flag


def test_errors_go_to_stderr_and_nothing_else_does(stack: Stack) -> None:
    result = stack("model", "nope")
    assert result.exit_code == 5 and result.stdout == ""
    assert result.stderr == "error (HTTP 404): Model `nope` is not deployed\n"


def test_manual_promotion_through_the_cli(stack: Stack) -> None:
    assert deploy_m1(stack, "--wait", "--id", "blue").exit_code == 0
    stack.world.upload_artifact("m1", manifest_for("m1", version=2))
    waited = stack("deploy", "m1", "--manual-promotion", "--promotion-timeout", "7200", "--id", "green", "--wait")
    assert waited.exit_code == 0, waited.output
    last = waited.stdout.strip().splitlines()[-1]
    assert "processing (awaiting_promotion)" in last and "esdeploy promote green" in last
    candidate = json.loads(stack("--json", "status", "green").stdout)["endpoint_name"]

    shown = stack("model", "m1").stdout
    assert f"candidate endpoint  {candidate}" in shown and content_hash_for("m1", 2) in shown
    through = json.loads(stack("--json", "invoke", "m1", "reindex me", "--candidate").stdout)
    assert through["endpoint_name"] == candidate and through["target"] == "candidate"
    live = json.loads(stack("--json", "invoke", "m1", "query").stdout)
    assert live["endpoint_name"] != candidate

    promoted = stack("promote", "green", "--wait")
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.strip().splitlines()[-1].startswith("deploy task green for m1: done (finished)")
    assert json.loads(stack("--json", "model", "m1").stdout)["endpoint_name"] == candidate
    again = stack("invoke", "m1", "x", "--candidate")
    assert again.exit_code == 5 and "no candidate awaiting promotion" in again.stderr
    # The API names its field (config.promotion "manual"); the CLI names its flag.
    said = " ".join(again.stderr.split())
    assert "deploy it with --manual-promotion" in said and "config.promotion" not in said


def test_a_first_deploy_awaiting_promotion_is_listed_and_explained(stack: Stack) -> None:
    stack.world.upload_artifact("m1", manifest_for("m1"))
    waited = stack("deploy", "m1", "--manual-promotion", "--id", "first", "--wait")
    assert waited.exit_code == 0, waited.output
    listed = stack("models").stdout.splitlines()
    assert listed[0].split() == ["MODEL", "LIVE_ENDPOINT", "PREVIOUS_ENDPOINT", "SWAPPED_AT", "TASK", "CANDIDATE",
                                 "CANDIDATE_TASK"]
    model, live, _, _, _, candidate, task_id = listed[1].split()
    assert (model, live, task_id) == ("m1", "-", "first") and candidate.startswith("esd-m1-")
    invoked = stack("invoke", "m1", "hello")
    assert invoked.exit_code == 5
    said = " ".join(invoked.stderr.split())
    assert "has no live variant yet: the candidate of its first deploy, task `first`, awaits promotion" in said
    assert "(it answers with --candidate; promote the task to make it live)" in said
