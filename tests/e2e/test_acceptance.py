"""End to end: the installed `esdeploy acceptance` against `esdeploy local` — how we know the command itself works.

A tiny model (--artifact, packaged once) stands in for all-MiniLM-L6-v2. What only an account shows
reads "not measurable here"; everything the run made is checked gone by asking the embedded AWS and
the API directly, after a whole run and after a Ctrl-C in the middle of one.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from chalicelib.domain.names import alias_parameter, model_name_prefix
from esdeploy.acceptance.artifact import DEFAULT_MODEL_ID
from esdeploy.acceptance.facts import LIFECYCLE_FACTS
from esdeploy.acceptance.teardown import OBSERVER_PREFIX
from tests.console_script import installed_esdeploy
from tests.e2e.conftest import aws_env, processes_mentioning
from tests.e2e.packaged import PackagedModels

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = DEFAULT_MODEL_ID
PREFIX = "esdlocal"  # the local stage's ESDEPLOY_RESOURCE_PREFIX


@pytest.fixture(scope="module")
def artifact(packaged_models: PackagedModels) -> Path:
    """The tiny model packaged for the run's model id, as a person runs `esdeploy package` (no upload)."""
    return packaged_models.archive(MODEL)


def acceptance_args(stack: dict[str, Any], artifact: Path, *extra: str) -> list[str]:
    return [installed_esdeploy(), "acceptance", "--stage", "local", "--upload", stack["artifact_upload_url"],
            "--artifact", str(artifact), *extra]


def run_acceptance(stack: dict[str, Any], artifact: Path, cwd: Path, *extra: str,
                   timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(acceptance_args(stack, artifact, *extra), cwd=cwd, env=aws_env(stack),
                          capture_output=True, text=True, timeout=timeout)


def aws(stack: dict[str, Any], service: str) -> Any:
    return boto3.client(service, endpoint_url=stack["aws_endpoint"], region_name=stack["region"],
                        aws_access_key_id="local", aws_secret_access_key="local")


def run_leftovers(stack: dict[str, Any]) -> list[str]:
    """Everything of an acceptance run that the API and the embedded AWS still show, asked directly."""
    left: list[str] = []
    if requests.get(f"{stack['api_url']}/models/{MODEL}", timeout=10).status_code != 404:
        left.append("the model is known to the API")
    if aws(stack, "ssm").get_parameters(Names=[alias_parameter(stack["ssm_prefix"], MODEL)])["Parameters"]:
        left.append("the alias parameter")
    variants = model_name_prefix(PREFIX, MODEL)
    left += [a["AlarmName"] for a in aws(stack, "cloudwatch").describe_alarms(AlarmNamePrefix=variants)["MetricAlarms"]]
    left += [t["ResourceId"] for t in aws(stack, "application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"] if variants in t["ResourceId"]]
    bucket, prefix = stack["artifact_upload_url"][len("s3://"):].split("/", 1)
    versions = aws(stack, "s3").list_object_versions(Bucket=bucket, Prefix=f"{prefix}/{MODEL}/")
    left += [v["Key"] for v in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]]
    left += aws(stack, "sqs").list_queues(QueueNamePrefix=OBSERVER_PREFIX).get("QueueUrls", [])
    left += [r["Name"] for r in aws(stack, "events").list_rules(NamePrefix=OBSERVER_PREFIX)["Rules"]]
    # A local endpoint is a process named after its variant, serving from this stack's folder (another stack
    # on the machine, a parallel worker's, may serve the same model id).
    left += [p for p in processes_mentioning(variants) if str(stack["state"]) in p]
    return left


def test_without_yes_the_plan_is_printed_and_nothing_is_made(
    stack: dict[str, Any], artifact: Path, outside_repo: Path
) -> None:
    planned = run_acceptance(stack, artifact, outside_repo, timeout=120)

    assert planned.returncode == 0, planned.stderr
    assert "the plan (nothing has been created yet)" in planned.stderr
    assert "ml.m5.large" in planned.stderr and "cost: none (esdeploy local" in planned.stderr
    assert "nothing was created: run it again with --yes" in planned.stderr
    assert run_leftovers(stack) == []
    assert list(outside_repo.glob("acceptance-*.json")) == []


def test_the_inference_components_probe_refuses_the_local_stack_before_making_anything(
    stack: dict[str, Any], artifact: Path, outside_repo: Path
) -> None:
    probed = run_acceptance(stack, artifact, outside_repo, "--yes", "--probe", "inference-components", timeout=120)

    assert probed.returncode == 2, probed.stderr
    assert "needs an AWS account: moto" in probed.stderr and "nothing was created" in probed.stderr
    assert run_leftovers(stack) == []


def test_tear_down_only_lists_what_a_killed_run_left_and_removes_it_with_yes(
    stack: dict[str, Any], artifact: Path, outside_repo: Path
) -> None:
    """A run killed outright (kill -9) leaves its queue, rule and artifacts: found by name, removed on --yes."""
    name = f"{OBSERVER_PREFIX}20261207000000-dead"
    aws(stack, "sqs").create_queue(QueueName=name)
    aws(stack, "events").put_rule(Name=name, EventPattern=json.dumps({"source": ["aws.sagemaker"]}))
    bucket, prefix = stack["artifact_upload_url"][len("s3://"):].split("/", 1)
    aws(stack, "s3").put_object(Bucket=bucket, Key=f"{prefix}/{MODEL}/latest.json", Body=b"{}")
    assert len(run_leftovers(stack)) == 3

    listed = run_acceptance(stack, artifact, outside_repo, "--tear-down-only", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert f"EventBridge rule {name}" in listed.stderr and f"{MODEL}/latest.json" in listed.stderr
    assert "nothing was removed: run it again with --yes" in listed.stderr
    assert len(run_leftovers(stack)) == 3

    removed = run_acceptance(stack, artifact, outside_repo, "--tear-down-only", "--yes", timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert run_leftovers(stack) == []


def test_ctrl_c_in_the_middle_of_a_deploy_tears_down_everything_the_run_made(
    stack: dict[str, Any], artifact: Path, outside_repo: Path, tmp_path: Path
) -> None:
    report = tmp_path / "interrupted.json"
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        running = subprocess.Popen(acceptance_args(stack, artifact, "--yes", "--report", str(report)),
                                   cwd=outside_repo, env=aws_env(stack), stdout=subprocess.DEVNULL, stderr=err)
    try:
        # Interrupted while v1 is InService and being checked or swapped: a deploy in flight, a variant up.
        deadline = time.time() + 180
        while True:
            answer = requests.get(f"{stack['api_url']}/deploy-status/{MODEL}", timeout=10)
            if answer.status_code == 200 and answer.json()["stage"] in ("verifying", "swapping", "finished"):
                break
            assert running.poll() is None, errors.read_text()
            assert time.time() < deadline, errors.read_text()
            time.sleep(0.1)
        running.send_signal(signal.SIGINT)
        code = running.wait(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    said = errors.read_text()

    assert code == 130, said
    assert "interrupted: tearing down what the run made" in said
    written = json.loads(report.read_text())
    assert written["outcome"] == "interrupted"
    assert written["leftovers"] == []
    assert run_leftovers(stack) == []


def test_a_whole_run_on_the_local_stack_goes_as_documented(
    stack: dict[str, Any], artifact: Path, outside_repo: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    ran = run_acceptance(stack, artifact, outside_repo, "--yes", "--bake-seconds", "1", "--rollback-window", "120",
                         "--report", str(report))

    assert ran.returncode == 0, ran.stderr[-4000:]
    written = json.loads(report.read_text())
    assert written["outcome"] == "passed", written["error"]
    assert [(step["name"], step["status"], step["ok"]) for step in written["steps"]] == [
        ("deploy v1", "done", True),
        ("deploy v2, force its 5XX alarm", "failed", True),
        ("deploy v3 (manual promotion, autoscaling)", "done", True),
        ("deploy v4, DeleteEndpoint while Creating, cancel", written["steps"][3]["status"], True),
        ("delete the model", "done", True),
    ]
    assert written["steps"][3]["status"] in ("canceled", "done")  # locally the endpoint may be up before the cancel
    assert "-invocation-5xx went to ALARM" in written["steps"][1]["detail"]
    facts = written["facts"]
    assert list(facts) == [fact.key for fact in LIFECYCLE_FACTS]
    stages = facts["stage_seconds"]["value"]
    assert facts["stage_seconds"]["outcome"] == "measured" and len(stages) == 5
    assert any(stage == "awaiting_promotion" for task in stages.values() for stage, _ in task)
    for fact in LIFECYCLE_FACTS:
        if fact.local_limit:
            assert facts[fact.key]["outcome"] == "not measurable here", fact.key
            assert facts[fact.key]["value"] is None and "not measurable locally" in facts[fact.key]["note"]
    assert "set_alarm_state_to_alias_back_seconds" in facts["alarm_event_latency"]["note"]
    assert "'registered': True" in facts["autoscaling_validation"]["note"]
    assert written["leftovers"] == []
    assert "teardown" in ran.stdout and "nothing left" in ran.stdout
    assert run_leftovers(stack) == []
