"""End to end: `esdeploy local` (the installed command, in a subprocess) keeps AWS's guarantees.

Racing requests have one winner; endpoints take time to create, say so in SageMaker's documented
events and refuse deletes meanwhile; a hanging endpoint holds no other model's deploy; and what a
killed stack leaves on disk goes at the next start.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from esdeploy.local.background import BackgroundStack, start_in_background
from esdeploy.local.environment import LOCAL_STAGE, stage_environment
from esdeploy.local.processes import free_port, processes_mentioning
from tests.console_script import installed_esdeploy, user_env
from tests.e2e.packaged import SECOND_MODEL, SHARED_MODEL, PackagedModels
from tests.fakes.artifacts import publish_to_s3

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Long enough to stop a loaded green's process before its probe, short enough for a test.
CREATION_SECONDS = 20
QUICK, SLOW = SHARED_MODEL, SECOND_MODEL
RACERS, ROUNDS = 16, 5
# LocalHosting's read timeout for one invocation: a hanging green holds its worker this long.
INVOKE_TIMEOUT = 60


def start(tmp: Path, name: str, *options: str, env: dict[str, str] | None = None,
          state: Path | None = None, cwd: Path | None = None) -> BackgroundStack:
    return start_in_background(
        free_port(), state, tmp / f"{name}.log", env=env or user_env(), cwd=cwd or tmp,
        command=[installed_esdeploy()], options=options,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, outside_repo: Path) -> Iterator[dict[str, Any]]:
    """One `esdeploy local` whose endpoints stay Creating for CREATION_SECONDS (named `stack` so a
    failing test shows its log)."""
    state = tmp_path_factory.mktemp("strict")
    running = start(state.parent, state.name, "--endpoint-creation-seconds", str(CREATION_SECONDS),
                    state=state, cwd=outside_repo)
    try:
        yield {**running.info, "handle": running, "state": state}
    finally:
        for pid in stopped_pids:  # a process a test stopped must be able to hear Ctrl-C's SIGTERM
            with _gone():
                os.kill(pid, signal.SIGCONT)
        code = running.stop(timeout=90)
        assert code == 0, running.log_tail(60)
        assert processes_mentioning(str(state)) == []


stopped_pids: list[int] = []


class _gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_: object) -> bool:
        return kind is ProcessLookupError


@pytest.fixture(scope="module")
def published(stack: dict[str, Any], packaged_models: PackagedModels) -> list[str]:
    """Two models packaged and uploaded side by side, as `esdeploy package --upload` uploads them."""
    return [packaged_models.upload(stack, model) for model in (QUICK, SLOW)]


def get(api: str, path: str) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"{api}{path}", timeout=10).json()
    return answer


def wait_for(api: str, task_id: str, done: Any, what: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    task = get(api, f"/deploy/{task_id}")
    while not done(task):
        assert time.monotonic() < deadline, f"deploy {task_id} never {what}: {task['status']}/{task['stage']}"
        time.sleep(0.2)
        task = get(api, f"/deploy/{task_id}")
    return task


def ended(task: dict[str, Any]) -> bool:
    return task["status"] in {"done", "failed", "refused", "canceled"}


def event_time(task: dict[str, Any], stage: str) -> datetime:
    return datetime.fromisoformat(next(e["at"] for e in task["events"] if e["stage"] == stage))


# ---- one winner per race -----------------------------------------------------------------------


def race_deploys(api: str, model: str, artifact: str) -> list[tuple[int, dict[str, Any]]]:
    """RACERS POST /deploy for `model` at once, each with its own client id."""
    barrier = threading.Barrier(RACERS)

    def one(index: int) -> tuple[int, dict[str, Any]]:
        body = {"model_id": model, "id": f"{model}-{index}", "config": {"model_data_url": artifact}}
        barrier.wait()
        for _ in range(10):
            try:
                answer = requests.post(f"{api}/deploy", json=body, timeout=30)
                return answer.status_code, answer.json()
            except requests.ConnectionError:
                # 16 connections at once overflow the local server's listen backlog; the same
                # request with the same id gets the same answer (the HTTP-contract work raises it).
                time.sleep(0.2)
        raise AssertionError(f"racer {index} was never answered")

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def test_racing_deploys_of_one_model_have_exactly_one_winner(stack: dict[str, Any]) -> None:
    api = stack["api_url"]
    s3 = embedded_s3(stack)
    won: list[str] = []
    for round_ in range(ROUNDS):
        model = f"race-{round_}-{uuid.uuid4().hex[:6]}"
        # An artifact that passes the gate at submit but holds no model: the winner's endpoint stays
        # Creating for CREATION_SECONDS (then fails), so its lease outlives the round and a second
        # 200 can only be a second winner.
        artifact = publish_to_s3(s3, stack["artifact_upload_url"], model)
        outcomes = race_deploys(api, model, artifact)
        codes = sorted(code for code, _ in outcomes)
        winners = [body["task_id"] for code, body in outcomes if code == 200]
        assert codes == [200] + [409] * (RACERS - 1), f"round {round_}: {codes}, winners {winners}"
        losers = [body for code, body in outcomes if code != 200]
        assert all(body["active_task_id"] == winners[0] and winners[0] in body["detail"] for body in losers), losers
        won.append(winners[0])
    # Nothing left behind: each round's winner holds one of the stage's live-model slots until it ends,
    # and the stack's next test deploys two models under the same cap.
    for task_id in won:
        assert requests.post(f"{api}/deploy/{task_id}/cancel", timeout=10).status_code in {200, 409}
    for task_id in won:
        assert wait_for(api, task_id, ended, "ended")["status"] in {"canceled", "failed"}


def test_conditional_writes_to_the_embedded_dynamodb_have_exactly_one_winner(stack: dict[str, Any]) -> None:
    """The guarantee itself, raced over HTTP against the stack's embedded AWS: without it about one
    round in ten lets two conditional writes through."""
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=stack["aws_endpoint"], region_name="us-east-1", aws_access_key_id="local",
        aws_secret_access_key="local", config=Config(max_pool_connections=RACERS),
    )
    table = stage_environment(LOCAL_STAGE)["ESDEPLOY_MODELS_TABLE"]

    def take(barrier: threading.Barrier, key: str, index: int) -> bool:
        barrier.wait()
        try:
            dynamodb.update_item(
                TableName=table, Key={"embedding_model_id": {"S": key}},
                UpdateExpression="SET lock_task_id = :me", ConditionExpression="attribute_not_exists(lock_task_id)",
                ExpressionAttributeValues={":me": {"S": str(index)}},
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    doubles = []
    with ThreadPoolExecutor(RACERS) as pool:
        for round_ in range(60):
            racing = functools.partial(take, threading.Barrier(RACERS), f"race-{round_}-{uuid.uuid4().hex[:6]}")
            winners = sum(pool.map(racing, range(RACERS)))
            if winners != 1:
                doubles.append((round_, winners))
    assert doubles == []


# ---- documented events, endpoints that take time, and one slow endpoint among others -------------


def endpoint_events(stack: dict[str, Any], name: str) -> list[str]:
    log = Path(stack["state_dir"]) / "endpoint-events.jsonl"
    return [e["status"] for e in map(json.loads, log.read_text().splitlines()) if e["endpoint"] == name]


def loaded_endpoint(name: str, timeout: float = 60) -> int:
    """The pid of endpoint `name`'s process, once it answers /ping (its model has loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in [int(p.split(":")[0]) for p in processes_mentioning(name)]:
            for port in listening_ports(pid):
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                        return pid
        time.sleep(0.2)
    raise AssertionError(f"endpoint {name} never loaded its model")


def listening_ports(pid: int) -> list[int]:
    """Loopback TCP ports process `pid` listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_a_hanging_green_does_not_hold_another_models_deploy(stack: dict[str, Any], published: list[str]) -> None:
    api = stack["api_url"]
    slow = requests.post(f"{api}/deploy", json={"model_id": SLOW, "config": {"bake_seconds": 0}}, timeout=10).json()
    creating = wait_for(api, slow["task_id"], lambda t: t["stage"] == "waiting", "waiting")
    green = creating["endpoint_name"]
    # Once its model has loaded (and while it is still Creating), its process hangs, as a wedged
    # container would: the smoke probe will wait for an answer.
    pid = loaded_endpoint(green)
    stopped_pids.append(pid)
    os.kill(pid, signal.SIGSTOP)
    # Another model's deploy, whose endpoint comes up after the hanging one.
    quick = requests.post(f"{api}/deploy", json={"model_id": QUICK, "config": {"bake_seconds": 0}}, timeout=10).json()
    hanging = wait_for(api, slow["task_id"], lambda t: t["stage"] == "verifying", "verifying")
    done = wait_for(api, quick["task_id"], ended, "ended")

    assert done["status"] == "done", done
    # It went live while the hanging probe still held one of the deploy worker's (as Lambda's) slots.
    assert (event_time(done, "finished") - event_time(hanging, "verifying")).total_seconds() < INVOKE_TIMEOUT
    assert get(api, f"/deploy/{slow['task_id']}")["stage"] == "verifying"
    # The local stack said what SageMaker says, when SageMaker says it: Creating first, InService once
    # the creation time was up, in the event's own spelling.
    assert endpoint_events(stack, done["endpoint_name"])[:2] == ["CREATING", "IN_SERVICE"]
    live = event_time(done, "verifying") - event_time(done, "creating")
    assert live.total_seconds() >= CREATION_SECONDS


# ---- a killed stack's leftovers ---------------------------------------------------------------------


def embedded_s3(stack: dict[str, Any]) -> Any:
    return boto3.client("s3", endpoint_url=stack["aws_endpoint"], region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def copy_artifacts(source: dict[str, Any], target: dict[str, Any]) -> None:
    """Whatever `esdeploy package --upload` put into one embedded S3, into another (same layout)."""
    bucket, prefix = source["artifact_upload_url"][len("s3://"):].split("/", 1)
    src, dst = embedded_s3(source), embedded_s3(target)
    for page in src.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found = src.get_object(Bucket=bucket, Key=item["Key"])
            dst.put_object(Bucket=bucket, Key=item["Key"], Body=found["Body"].read(),
                           Metadata=found.get("Metadata", {}), ContentType=found["ContentType"])


def downloads(state: Path) -> list[Path]:
    return sorted((state / "endpoints").glob("*/model.tar.gz"))


@pytest.fixture
def started() -> Iterator[list[BackgroundStack]]:
    """Stacks a test starts; any still running when it ends (a failure, a timeout) is stopped, then killed."""
    stacks: list[BackgroundStack] = []
    yield stacks
    for running in stacks:
        running.stop(timeout=30)


def test_what_a_killed_stack_left_goes_at_the_next_start_and_a_live_stacks_folder_stays(
    stack: dict[str, Any], published: list[str], tmp_path: Path, started: list[BackgroundStack]
) -> None:
    temp = tmp_path / "tmp"  # the stacks' temp folder: where default state folders go
    temp.mkdir()
    env = user_env(TMPDIR=str(temp))
    given = tmp_path / "given-state"

    killed = start(tmp_path, "killed", state=given, env=env)
    started.append(killed)
    copy_artifacts(stack, killed.info)
    task = requests.post(f"{killed.info['api_url']}/deploy", json={"model_id": QUICK}, timeout=10).json()
    deadline = time.monotonic() + 60
    while not downloads(given):
        assert time.monotonic() < deadline, f"never downloaded: {task}"
        time.sleep(0.1)
    killed_default = start(tmp_path, "killed-default", env=env)
    started.append(killed_default)
    live = start(tmp_path, "live", env=env)
    started.append(live)
    for victim in (killed, killed_default):
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while processes_mentioning(str(given)) and time.monotonic() < deadline:
        time.sleep(0.2)  # its endpoint processes follow it (they watch the stack: esdeploy.local.lifeline)
    assert processes_mentioning(str(given)) == []  # no endpoint outlives its stack
    assert downloads(given) and killed_default.state_dir.exists()  # what kill -9 leaves behind

    again = start(tmp_path, "again", state=given, env=env)
    started.append(again)
    try:
        assert downloads(given) == []
        assert not killed_default.state_dir.exists()
        assert live.state_dir.exists() and (live.state_dir / "stack.json").exists()
        assert get(live.info["api_url"], "/health")["status"] == "ok"
        assert "removed" in again.log_tail() and str(killed_default.state_dir) in again.log_tail()
        # A folder that a live stack holds is refused, in one line.
        refused = subprocess.run(
            [installed_esdeploy(), "local", "--port", str(free_port()), "--state-dir", str(given)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert refused.returncode == 1
        assert f"the state folder {given} is in use by another esdeploy local (pid {again.process.pid})" in (
            refused.stderr
        )
    finally:
        assert again.stop() == 0 and live.stop() == 0
    assert sorted(p.name for p in temp.iterdir()) == []  # clean stops leave nothing in the temp folder
