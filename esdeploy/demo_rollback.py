"""Operator tool layer: `make demo-rollback` — a bad version rolled back by its alarms within its bake.

On the local stack with real embeddings (what `make demo` sets up): v1 of all-MiniLM-L6-v2 live (blue),
v2 deployed with a bake and live (green, stage `baking`), an application embedding without pause
through `esdeploy.Client().embedder()`. Then v2's endpoint is made to misbehave (every invocation
answered 500: esdeploy.local.misbehave); the alarm stand-in moves v2's 5XX alarm to ALARM, the deploy
worker rolls the alias back to v1. The report says how many invocations failed, how long it took from
the first error to the alias back on blue, and how the task ended (the detail names the alarm).
Exits 1 when the alias was not back on blue within the bake.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from esdeploy.demo import (
    MODEL_ID,
    Demo,
    InvocationLoop,
    Report,
    control_plane,
    finish,
    leftover_processes,
    print_tasks,
    started,
    timestamp,
)
from esdeploy.local.misbehave import Misbehaviour, set_misbehaviour
from esdeploy.local.processes import free_port

BAKE_SECONDS = 60
MAX_5XX_ERRORS_PER_MINUTE = 5
# The application's loop: about 20 invocations a second, and it re-reads the alias every second.
LOOP_PAUSE_SECONDS = 0.05
ALIAS_TTL = 1.0



def wait_for_alias(demo: Demo, endpoint_name: str, deadline: float) -> float | None:
    """When the alias named `endpoint_name` (looked at every 0.1 s), or None if not by `deadline`."""
    while time.time() < deadline:
        if demo.call("GET", f"/models/{MODEL_ID}")["endpoint_name"] == endpoint_name:
            return time.time()
        time.sleep(0.1)
    return None


def wait_for_traffic(loop: InvocationLoop, endpoint_name: str, timeout: float = 30) -> None:
    """Until the application's loop is answered by `endpoint_name` (its cached alias has moved)."""
    deadline = time.time() + timeout
    while loop.endpoints[endpoint_name] == 0:
        if time.time() > deadline:
            raise RuntimeError(f"the application's embedder did not reach {endpoint_name} within {timeout:.0f} s")
        time.sleep(0.1)


def run_demo_rollback(port: int, keep: bool, bake_seconds: int) -> int:
    report = Report()
    workdir = Path(tempfile.mkdtemp(prefix="esdeploy-demo-rollback-"))
    demo = Demo(port, workdir, report)
    if not started(demo, "demo-rollback"):
        return 1
    tasks: dict[str, dict[str, Any]] = {}
    outcome: dict[str, Any] = {}
    loop: InvocationLoop | None = None
    try:
        demo.package("v1")
        blue = demo.deploy("v1 (blue)")
        tasks["deploy v1"] = blue
        # Version 2: the same weights with a shorter token window: another artifact, another content hash.
        demo.package("v2", "--max-seq-length", "128")
        loop = InvocationLoop(demo.embedder(ttl_seconds=ALIAS_TTL), pause=LOOP_PAUSE_SECONDS)
        loop.start()
        config = {"bake_seconds": bake_seconds, "max_5xx_errors_per_minute": MAX_5XX_ERRORS_PER_MINUTE}
        green = demo.deploy_live(f"v2 (green, bake {bake_seconds} s)", config)
        report.step(f"  {green['detail']}")
        wait_for_traffic(loop, green["endpoint_name"])
        report.step(f"the application's embedder is answered by {green['endpoint_name']} ({loop.ok} answers so far)")

        flipped_at = time.time()  # before: the loop's first error may come before the switch's answer does
        set_misbehaviour(demo.info["aws_endpoint"], green["endpoint_name"], Misbehaviour(errors=1.0))
        report.step(f"{green['endpoint_name']} misbehaves: every invocation answered 500 (esdeploy.local.misbehave)")
        bake_ends = timestamp(green["live_at"]) + bake_seconds
        back_at = wait_for_alias(demo, blue["endpoint_name"], deadline=bake_ends + 30)
        if back_at is not None:
            report.step(f"alias back on blue {blue['endpoint_name']}")
        final = demo.wait("deploy", green["task_id"], timeout=max(bake_ends - time.time(), 0) + 60)
        tasks["deploy v2"] = final
        report.step(f"deploy v2 {final['status']}: {final.get('detail')}")
        demo.wait_gone(green["endpoint_name"])
        time.sleep(1)
        loop.stop.set()
        loop.join()
        first_error = loop.first_error_at
        outcome = {
            "errors": len(loop.errors),
            "invocations": loop.ok + len(loop.errors),
            "order": " -> ".join(loop.order),
            "first_error": loop.errors[0] if loop.errors else None,
            "flipped_to_first_error": None if first_error is None else first_error - flipped_at,
            "first_error_to_blue": None if first_error is None or back_at is None else back_at - first_error,
            "within_bake": back_at is not None and back_at <= bake_ends,
            "alias_back": back_at is not None,
            "alarm": f"{green['endpoint_name']}-invocation-5xx",
        }
        deletion = demo.call("POST", "/delete", {"embedding_model_id": MODEL_ID, "reason": "demo over"})
        tasks["delete"] = demo.wait("delete", deletion["task_id"])
    except (RuntimeError, requests.RequestException) as error:
        report.step(f"the demo stopped here: {error}")
    finally:
        if loop is not None:
            loop.stop.set()
        demo.stop_stack()
    leftovers = leftover_processes(str(workdir))
    print_tasks("esdeploy demo-rollback report", tasks)
    for label in ("deploy v1", "deploy v2"):
        if label in tasks:
            print(f"  {label}: control plane {control_plane(demo, tasks[label])}")
    final = tasks.get("deploy v2", {})
    rolled_back = (
        bool(outcome)
        and final.get("status") == "failed"
        and outcome["alarm"] in str(final.get("detail"))
        and outcome["within_bake"]
    )
    if outcome:
        print(f"  failed invocations: {outcome['errors']} of {outcome['invocations']} by embedder() "
              f"(answered by {outcome['order']})")
        if outcome["first_error"]:
            print(f"  first error: {outcome['first_error'][:200]}")
        print(f"  misbehave on -> first error: {_seconds(outcome['flipped_to_first_error'])}")
        print(f"  first error -> alias back on blue: {_seconds(outcome['first_error_to_blue'])} "
              f"({'within' if outcome['within_bake'] else 'NOT within'} the bake of {bake_seconds} s)")
    print(f"  task: {final.get('status', 'n/a')}: {final.get('detail', '')}")
    print(f"  leftover processes: {len(leftovers)} {leftovers or ''}")
    if not rolled_back:
        print("  the bad version was NOT rolled back by its alarm within the bake")
    deleted = tasks.get("delete", {}).get("status") == "done"
    return finish(report, workdir, keep, rolled_back and deleted and not leftovers, "demo-rollback")


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esdeploy.demo_rollback", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="the local API's port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, artifacts)")
    parser.add_argument("--bake-seconds", type=int, default=BAKE_SECONDS, help=f"v2's bake (default {BAKE_SECONDS})")
    args = parser.parse_args(argv)
    return run_demo_rollback(args.port or free_port(), args.keep, args.bake_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
