"""Local stack: `esdeploy local` as a child process (for the demo and the tests), its output in a log file.

The child's output goes to a file, never to a pipe: a pipe that nobody reads fills up after some
64 KiB of log lines, and then the stack blocks on its next write and stops answering.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esdeploy.local.run import READY, STATE_IN


class StackStartError(Exception):
    """`esdeploy local` exited or did not get ready; the message carries the end of its log."""


def esdeploy_command() -> list[str]:
    """The installed `esdeploy` console script of this interpreter's environment, as a user runs it."""
    script = Path(sys.executable).parent / "esdeploy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "esdeploy"]


@dataclass
class BackgroundStack:
    """A started `esdeploy local`: where it is (`info`, from its stack.json), its log, how to stop it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    state_dir: Path
    info: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C, as a person stops it; killed only if it does not stop within `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_in_background(
    port: int,
    state_dir: Path | None,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    command: list[str] | None = None,
    options: Sequence[str] = (),
) -> BackgroundStack:
    """Start `esdeploy local` (with `options`, e.g. --endpoint-creation-seconds) and return once it
    printed that it is ready, or raise StackStartError. `state_dir` None: the stack's own temp folder."""
    argv = [*(command or esdeploy_command()), "local", "--port", str(port), *options]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=dict(env or os.environ), cwd=cwd
        )
    stack = BackgroundStack(process, log_path, state_dir or Path())
    try:
        found = _wait_until_ready(stack, timeout)
        stack.state_dir = state_dir or Path(found)
        stack.info = json.loads((stack.state_dir / "stack.json").read_text())
    except BaseException:  # not ready, or the caller gave up (Ctrl-C, a test's timeout): nothing stays running
        stack.stop(timeout=30)
        raise
    return stack


def _wait_until_ready(stack: BackgroundStack, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (found := _state_dir_line(stack.log_path.read_text(errors="replace"))) is None:
        if stack.process.poll() is not None:
            raise StackStartError(f"esdeploy local exited with {stack.process.returncode}:\n{stack.log_tail()}")
        if time.monotonic() > deadline:
            raise StackStartError(f"esdeploy local was not ready within {timeout:.0f} s:\n{stack.log_tail()}")
        time.sleep(0.1)
    return found


def _state_dir_line(log: str) -> str | None:
    """The state folder `esdeploy local` printed once ready (the line after READY), if it has yet."""
    if READY not in log:
        return None
    for line in log[log.index(READY):].splitlines():
        if line.strip().startswith(STATE_IN):
            return line.strip()[len(STATE_IN):].split(" (", 1)[0].split(";", 1)[0].strip()
    return None
