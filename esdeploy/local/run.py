"""Local stack: the foreground of `esdeploy local` — start, print where things are, stop cleanly on Ctrl-C."""
from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

READY = "esdeploy local stack ready"


def run(port: int, state_dir: Path | None, sweep_every: float = 60.0) -> int:
    """0 after Ctrl-C (SIGINT) or SIGTERM stopped everything; 1 when the stack could not start."""
    from esdeploy.local.processes import PortInUseError
    from esdeploy.local.stack import LocalStack

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = LocalStack(port=port, state_dir=state_dir, sweep_every=sweep_every)
    try:
        info = stack.start()
    except (PortInUseError, OSError) as error:  # OSError: a --state-dir that cannot be made or written, ...
        stack.stop()  # removes the temp state folder it made
        print(f"esdeploy local: {error}", file=sys.stderr, flush=True)
        return 1
    except BaseException:
        stack.stop()
        raise
    try:
        kept = "" if state_dir else " (removed when the stack stops)"
        for line in (
            f"{READY}: API {info.api_url}",
            f"  embedded AWS (moto) at {info.aws_endpoint}; model artifacts go to {info.artifact_upload_url}",
            f"  state in {info.state_dir}{kept}; Ctrl-C stops everything",
            "  in another shell, paste these two lines, then use esdeploy:",
            f"    export ESDEPLOY_API={info.api_url} ESDEPLOY_SSM_PREFIX={info.ssm_prefix} "
            f"ESDEPLOY_LOG_FILE={info.log_file}",
            f"    export AWS_ENDPOINT_URL={info.aws_endpoint} AWS_ACCESS_KEY_ID=local "
            f"AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={info.region}",
            f"  e.g. esdeploy package MODEL_DIR --model-id ID --upload {info.artifact_upload_url}",
        ):
            print(line, flush=True)
        stop.wait()
    finally:
        print("stopping the local stack ...", flush=True)
        stack.stop()
        print("local stack stopped", flush=True)
    return 0
