"""Local stack: the foreground command — start, print where the API is, stop cleanly on Ctrl-C."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType


def run(port: int, state_dir: Path | None, sweep_every: float = 60.0) -> int:
    from esdeploy.local.stack import LocalStack

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = LocalStack(port=port, state_dir=state_dir, sweep_every=sweep_every)
    try:
        info = stack.start()
        print(f"esdeploy local stack ready: API {info.api_url}", flush=True)
        print(f"  embedded AWS (moto) at {info.aws_endpoint}; upload models to {info.artifact_upload_url}",
              flush=True)
        print(f"  state in {info.state_dir}; Ctrl-C stops everything", flush=True)
        print("  to package and upload from another shell:", flush=True)
        print(f"    export AWS_ENDPOINT_URL={info.aws_endpoint} AWS_ACCESS_KEY_ID=local "
              f"AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={info.region}", flush=True)
        print(f"    esdeploy package MODEL_DIR --model-id ID --upload {info.artifact_upload_url}", flush=True)
        stop.wait()
    finally:
        print("stopping the local stack ...", flush=True)
        stack.stop()
        print("local stack stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="esdeploy local", description="Run esdeploy on this machine.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--sweep-every", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run(args.port, args.state_dir, args.sweep_every)
