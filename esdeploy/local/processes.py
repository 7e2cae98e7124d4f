"""Local stack: loopback ports and the processes the stack starts (for checks that nothing is left)."""
from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def processes_mentioning(marker: str) -> list[str]:
    """`pid: command line` of every other process whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()[:150]}")
    return found


class PortInUseError(Exception):
    """The loopback port asked for is taken: one line that says so and what to do, not a traceback."""

    def __init__(self, port: int) -> None:
        super().__init__(
            f"port {port} on {LOOPBACK} is already in use (another esdeploy local?): stop what listens there, "
            f"or take a free port: esdeploy local --port {free_port()}"
        )
        self.port = port


def ensure_port_free(port: int) -> None:
    """Raise PortInUseError unless `port` can be listened on (as the HTTP server will, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(port) from None
            raise
