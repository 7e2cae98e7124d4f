"""Local stack: the foreground of `esdeploy local` — start, print where things are, stop cleanly on Ctrl-C."""
from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from esdeploy.local.readable import TEXT, Reporter

READY = "esdeploy local stack ready"
STATE_IN = "state in "


def run(
    port: int, state_dir: Path | None, sweep_every: float, endpoint_creation_seconds: float, log_format: str = TEXT
) -> int:
    """0 after Ctrl-C (SIGINT) or SIGTERM stopped everything; 1 when the stack could not start.
    While it runs: one readable line per thing that happened, or (`log_format` json) the app's JSON lines."""
    from esdeploy.local.housekeeping import StateDirInUseError
    from esdeploy.local.processes import PortInUseError
    from esdeploy.local.stack import LocalStack

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # Python runs a handler only when the main thread runs bytecode: blocked in Event.wait() with
    # no timeout, it may never (a signal taken by another thread does not wake it), and Event.set()
    # from a handler that interrupts wait() can block on the Event's own lock. So: a list, and a
    # main thread that wakes every 0.2 s.
    signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = LocalStack(
        port=port,
        state_dir=state_dir,
        sweep_every=sweep_every,
        endpoint_creation_seconds=endpoint_creation_seconds,
        reporter=Reporter(sys.stdout) if log_format == TEXT else None,
    )
    try:
        info = stack.start()
    except (PortInUseError, StateDirInUseError, OSError) as error:  # OSError: a --state-dir that cannot be made, ...
        stack.stop()  # removes the temp state folder it made
        print(f"esdeploy local: {error}", file=sys.stderr, flush=True)
        return 1
    except BaseException:
        stack.stop()
        raise
    try:
        if stack.cleaned.paths:
            print(f"  {stack.cleaned.summary()}", flush=True)
        kept = "" if state_dir else " (removed when the stack stops)"
        for line in (
            f"{READY}: API {info.api_url}",
            f"  embedded AWS (moto) at {info.aws_endpoint}; model artifacts go to {info.artifact_upload_url}",
            f"  {STATE_IN}{info.state_dir}{kept}; Ctrl-C stops everything",
            "  in another shell, paste these two lines, then use esdeploy:",
            f"    export ESDEPLOY_API={info.api_url} ESDEPLOY_SSM_PREFIX={info.ssm_prefix} "
            f"ESDEPLOY_LOG_FILE={info.log_file}",
            f"    export AWS_ENDPOINT_URL={info.aws_endpoint} AWS_ACCESS_KEY_ID=local "
            f"AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={info.region}",
            f"  e.g. esdeploy package MODEL_DIR --model-id ID --upload {info.artifact_upload_url}",
            "what happens from now on, one line each (--log-format json: the app's JSON log lines):"
            if log_format == TEXT
            else "the app's JSON log lines from now on (also in the log file above):",
        ):
            print(line, flush=True)
        while not signals:
            time.sleep(0.2)  # a signal interrupts it; its handler only appends
    finally:
        print("stopping the local stack ...", flush=True)
        stack.stop()
        print("local stack stopped", flush=True)
    return 0
