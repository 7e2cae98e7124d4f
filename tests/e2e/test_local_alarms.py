"""End to end: on the installed `esdeploy local`, a live endpoint made to misbehave moves its alarms."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from chalicelib.domain.models import TERMINAL_STATUSES
from chalicelib.domain.names import variant_alarm_names
from esdeploy.demo import timestamp
from tests.e2e.conftest import aws_env, processes_mentioning
from tests.e2e.packaged import SHARED_MODEL, PackagedModels
from tests.e2e.test_local_stack import embedded_client, wait_for, wait_for_stage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = SHARED_MODEL


def cloudwatch(stack: dict[str, Any]) -> Any:
    return boto3.client("cloudwatch", endpoint_url=stack["aws_endpoint"], region_name=stack["region"],
                        aws_access_key_id="local", aws_secret_access_key="local")


def alarm_state(client: Any, name: str) -> tuple[str, str]:
    (alarm,) = client.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarm["StateValue"], alarm["StateReason"]


@pytest.fixture(scope="module")
def uploaded(stack: dict[str, Any], packaged_models: PackagedModels) -> str:
    """The tiny model packaged once and uploaded to this stack; each test deploys and deletes it."""
    return packaged_models.upload(stack, MODEL)


def test_a_misbehaving_green_is_rolled_back_by_its_alarm_within_the_bake(
    stack: dict[str, Any], uploaded: str, outside_repo: Path
) -> None:
    """One deploy pair covers the whole local chain: healthy traffic leaves green's alarms OK; the
    misbehave switch as a person runs it; the stand-in moves the 5XX alarm with CloudWatch's words
    and puts the event on the queue; the worker rolls back within the bake; green and its alarms go."""
    api = stack["api_url"]
    blue = requests.post(f"{api}/deploy", json={"model_id": MODEL}, timeout=10).json()
    blue = wait_for(api, "deploy", blue["task_id"])
    assert blue["status"] == "done", blue  # a first deploy: nothing to roll back to, no bake
    bake = 20
    green = requests.post(f"{api}/deploy", json={"model_id": MODEL, "config": {
        "bake_seconds": bake, "max_5xx_errors_per_minute": 3}}, timeout=10).json()
    green = wait_for_stage(api, green["task_id"], "baking")
    assert green["stage"] == "baking" and green["live_at"], green
    variant = green["endpoint_name"]
    embedder = embedded_client(stack).embedder(MODEL, ttl_seconds=1)
    deadline = time.time() + 10
    while embedder.embed(["which one?"]).endpoint_name != variant:
        assert time.time() < deadline, "the embedder never reached green"
        time.sleep(0.2)

    watch = cloudwatch(stack)
    errors_alarm, latency_alarm = variant_alarm_names(variant)
    time.sleep(4)  # two rounds of the stand-in: healthy traffic leaves both alarms OK
    assert alarm_state(watch, errors_alarm)[0] == alarm_state(watch, latency_alarm)[0] == "OK"

    # What a person runs, in the shell with the two export lines.
    flipped = subprocess.run(
        [sys.executable, "-m", "esdeploy.local.misbehave", variant, "--errors", "1.0"],
        cwd=outside_repo, env=aws_env(stack), capture_output=True, text=True, timeout=60,
    )
    assert flipped.returncode == 0, flipped.stderr
    assert json.loads(flipped.stdout) == {"endpoint": variant, "errors": 1.0, "latency_ms": 0}
    failed = 0
    back_on_blue: float | None = None
    task = green
    deadline = timestamp(green["live_at"]) + bake + 30
    while time.time() < deadline and task["status"] not in TERMINAL_STATUSES:
        try:
            embedder.embed(["failing on purpose"])
        except Exception:
            failed += 1
        if back_on_blue is None and requests.get(f"{api}/models/{MODEL}", timeout=10).json()[
                "endpoint_name"] == blue["endpoint_name"]:
            back_on_blue = time.time()
        task = requests.get(f"{api}/deploy/{green['task_id']}", timeout=10).json()
        time.sleep(0.1)

    assert task["status"] == "failed", task
    assert f"alarm {errors_alarm} went to ALARM" in task["detail"], task["detail"]
    # CloudWatch's own words for the breach, carried into the task's detail.
    found = re.search(r"\(Threshold Crossed: 1 datapoint \[(\d+)\.0 \(\d\d/\d\d/\d\d \d\d:\d\d:00\)\] "
                      r"was greater than the threshold \(3\.0\)\.\)", task["detail"])
    assert found is not None and int(found.group(1)) > 3, task["detail"]
    assert failed > 3
    assert back_on_blue is not None and back_on_blue - timestamp(green["live_at"]) < bake, (back_on_blue, green)
    alias = requests.get(f"{api}/models/{MODEL}", timeout=10).json()
    assert alias["endpoint_name"] == blue["endpoint_name"]
    moved = [json.loads(line) for line in (stack["state"] / "alarm-events.jsonl").read_text().splitlines()]
    assert any(m["alarm"] == errors_alarm and m["state"] == "ALARM" and m["previous"] == "OK" for m in moved)
    # Green is torn down (its alarms with it); blue serves the application again.
    deadline = time.time() + 60
    while time.time() < deadline and processes_mentioning(variant):
        time.sleep(0.2)
    assert processes_mentioning(variant) == []
    assert cloudwatch(stack).describe_alarms(AlarmNamePrefix=variant)["MetricAlarms"] == []
    assert embedder.embed(["healed"]).endpoint_name == blue["endpoint_name"]
    deletion = requests.post(f"{api}/delete", json={"model_id": MODEL, "reason": "e2e"}, timeout=10).json()
    assert wait_for(api, "delete", deletion["task_id"])["status"] == "done"
