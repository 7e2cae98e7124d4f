"""Local stack: when a process the stack started must stop — a signal, or the stack that started it is gone.

A local endpoint must never outlive its stack, however the stack ends. The kernel's parent-death
signal covers most deaths, but not a stack killed between fork and the child's prctl, and a signal
that Python handles only between bytecodes can wait behind a model load for a long time. So the
signals are taken by a thread of their own (`sigwait`, with SIGTERM and SIGINT blocked everywhere
else), a second thread watches the parent's pid, and when the process cannot stop in order within
a grace period (or has nothing to stop in order yet) it ends at once through `abandon`.
"""
from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
# How often the parent's pid is compared, and how long an orderly stop may take before `abandon`.
PARENT_POLL_SECONDS = 0.5
GRACE_SECONDS = 10.0


def keep_temporary_files_in(workdir: Path) -> None:
    """This process's temporary folder is `workdir`: what it writes there (torch's compile cache
    `torchinductor_<user>`, a library's scratch files) goes with the working folder, however the process
    ends, and never lands in the machine's temporary folder, where nothing would remove it."""
    os.environ["TMPDIR"] = str(workdir)
    tempfile.tempdir = None  # tempfile reads TMPDIR again on its next use


class Lifeline:
    """`stop` is set on SIGTERM/SIGINT or when `parent_pid` is no longer this process's parent.

    While `orderly()` answers False (nothing served yet: a model still loading), `abandon()` runs at
    once; otherwise the process has GRACE_SECONDS to stop by itself before `abandon()` runs.
    `abandon` must end the process (it removes what the process made, then `os._exit`).
    """

    def __init__(
        self,
        abandon: Callable[[str], None],
        orderly: Callable[[], bool],
        parent_pid: int | None = None,
        grace_seconds: float = GRACE_SECONDS,
        poll_seconds: float = PARENT_POLL_SECONDS,
    ) -> None:
        self.stop = threading.Event()
        self.reason = ""
        self._abandon = abandon
        self._orderly = orderly
        self._parent_pid = parent_pid
        self._grace = grace_seconds
        self._poll = poll_seconds
        self._once = threading.Lock()

    def start(self) -> None:
        """Call from the main thread before any other thread starts: threads inherit the blocked mask."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=self._take_signals, name="lifeline-signals", daemon=True).start()
        if self._parent_pid is not None:
            threading.Thread(target=self._watch_parent, name="lifeline-parent", daemon=True).start()

    def parent_gone(self) -> bool:
        return self._parent_pid is not None and os.getppid() != self._parent_pid

    def _take_signals(self) -> None:
        received = signal.sigwait(STOP_SIGNALS)
        self._end(f"received {signal.Signals(received).name}")

    def _watch_parent(self) -> None:
        while not self.stop.is_set():
            if self.parent_gone():
                self._end(f"its stack (pid {self._parent_pid}) is gone")
                return
            self.stop.wait(self._poll)

    def _end(self, reason: str) -> None:
        with self._once:
            if self.stop.is_set():
                return
            self.reason = reason
            self.stop.set()
        logger.info("stopping: %s", reason)
        if not self._orderly():
            self._abandon(reason)
            return
        # An orderly stop that hangs (a wedged request thread, a full pipe) must not keep it alive.
        timer = threading.Timer(self._grace, self._abandon, (f"{reason}; no orderly stop in {self._grace:.0f} s",))
        timer.daemon = True
        timer.start()
