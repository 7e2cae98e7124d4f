"""Local stack: what an earlier run left behind when it was killed (kill -9, a crash), removed at start-up.

A running stack holds an exclusive lock (flock) on `<state folder>/.esdeploy-local.lock`, and each
local endpoint process one on `<its temp folder>/.esdeploy-endpoint.lock`; the kernel releases a
lock when its process dies, however it dies. So a folder whose lock can be taken belongs to no live
process, and what our earlier runs made in it can go; a folder whose lock is held is left alone.
Only folders that carry our lock file are ever touched: what esdeploy made, nothing else.
Endpoint processes live in their stack's state folder (`endpoints/<variant>/run`); they stop by
themselves when their stack dies (esdeploy.local.lifeline), and a start that finds one still running
in a dead stack's folder ends it before removing the folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

STACK_LOCK = ".esdeploy-local.lock"
ENDPOINT_LOCK = ".esdeploy-endpoint.lock"
# mkdtemp prefixes: the stack's default state folder, a local endpoint's extracted artifact.
STATE_PREFIX = "esdeploy-local-"
ENDPOINT_PREFIX = "esdeploy-endpoint-"
# In a state folder, what a run makes that outlives it when the run is killed.
DOWNLOADS = "endpoints"
# What a local endpoint's command line runs (python -m esdeploy.local.endpoint).
ENDPOINT_MODULE = "esdeploy.local.endpoint"


class StateDirInUseError(Exception):
    """Another live `esdeploy local` runs on this state folder."""

    def __init__(self, state_dir: Path, holder: str) -> None:
        super().__init__(
            f"the state folder {state_dir} is in use by another esdeploy local{holder}: stop it, "
            "or give this one another --state-dir"
        )


@dataclass
class Cleaned:
    """What a start-up removed, for one line of output."""

    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    ended: list[int] = field(default_factory=list)  # pids of endpoint processes a dead stack left running

    def add(self, path: Path) -> None:
        self.bytes += _size(path)
        self.paths.append(path)

    def summary(self) -> str:
        ended = f"; ended {len(self.ended)} endpoint process(es) it left running" if self.ended else ""
        return (
            f"removed {self.bytes / 1e6:.1f} MB that an earlier esdeploy local left when it did not stop "
            f"cleanly: {', '.join(str(p) for p in self.paths)}{ended}"
        )


class FolderLock:
    """An exclusive flock on `<folder>/<name>`, held until `release()` or the process ends."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / name
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                if self._create_locked():
                    return True
                continue  # someone else made it meanwhile: take theirs, or find it held
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True

    def _create_locked(self) -> bool:
        """Make the lock file already locked (locked under a private name, then linked into place),
        so that no cleaner can ever see it unlocked and take a live folder for a dead one."""
        private = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(private, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.link(private, self.path)
        except FileExistsError:
            os.close(fd)
            return False
        finally:
            private.unlink()
        self._fd = fd
        return True

    def write_owner(self, owner: str | None = None) -> None:
        """Who holds it (default: this pid), for the message another start shows and for ending orphans."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (owner or str(os.getpid())).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def claim_state_dir(state_dir: Path) -> tuple[FolderLock, Cleaned]:
    """Lock `state_dir` for this stack and remove the downloads an earlier run left in it.

    Raises StateDirInUseError when a live stack holds it. A folder that never held a stack's lock
    file is new to us: nothing in it is touched (it might be any folder a person chose)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ours_before = (state_dir / STACK_LOCK).exists()
    lock = FolderLock(state_dir, STACK_LOCK)
    if not lock.try_acquire():
        raise StateDirInUseError(state_dir, _holder(lock.path))
    lock.write_owner()
    cleaned = Cleaned()
    downloads = state_dir / DOWNLOADS
    if ours_before and downloads.is_dir():
        # The stack that made them is dead (its lock was free), so any endpoint still running here is an orphan.
        cleaned.ended.extend(end_orphaned_endpoints(downloads))
        for leftover in sorted(downloads.iterdir()):
            cleaned.add(leftover)
            _remove(leftover)
    return lock, cleaned


def clean_temp_leftovers(cleaned: Cleaned, temp_dir: Path | None = None) -> Cleaned:
    """Remove the default state folders and endpoint folders under the temp folder whose process
    is gone (their lock can be taken); folders of live stacks and endpoints stay."""
    root = temp_dir or Path(tempfile.gettempdir())
    for folder, lock_name in _candidates(root):
        lock = FolderLock(folder, lock_name)
        try:
            if not lock.try_acquire():
                continue  # a live stack or endpoint
        except OSError:
            continue  # not ours to judge (another user's, read-only)
        if lock_name == STACK_LOCK:
            # A dead stack's folder: the endpoints it started may still run in it, holding their own locks.
            cleaned.ended.extend(end_orphaned_endpoints(folder))
        try:
            cleaned.add(folder)
            _remove(folder)
        finally:
            lock.release()
    return cleaned


def end_orphaned_endpoints(folder: Path, grace: float = 10.0) -> list[int]:
    """End the local endpoint processes whose lock lies under `folder`, a dead stack's folder
    (SIGTERM, then SIGKILL), and return their pids. A pid is ended only if it still is that endpoint
    (its command line names the lock's folder), so a recycled pid is never touched."""
    ended = []
    for lock_path in sorted(folder.rglob(ENDPOINT_LOCK)):
        pid = _endpoint_pid(lock_path)
        if pid is not None and _end(pid, grace):
            ended.append(pid)
            logger.warning("ended a local endpoint its stack left running", extra={"pid": pid,
                                                                                  "folder": str(lock_path.parent)})
    return ended


def _endpoint_pid(lock_path: Path) -> int | None:
    """The pid a live endpoint wrote into its lock file, if that process still is this endpoint."""
    lock = FolderLock(lock_path.parent, lock_path.name)
    try:
        if lock.try_acquire():
            lock.release()
            return None  # nobody holds it
        for _ in range(20):  # the endpoint writes its pid just after it takes the lock
            if text := lock_path.read_text():
                break
            time.sleep(0.05)
        pid = int(json.loads(text)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    cmdline = _cmdline(pid)
    if ENDPOINT_MODULE not in cmdline or str(lock_path.parent.resolve()) not in cmdline:
        return None
    return pid


def _end(pid: int, grace: float) -> bool:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _cmdline(pid):
                return True
            time.sleep(0.05)
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _candidates(root: Path) -> Iterator[tuple[Path, str]]:
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        for prefix, lock_name in ((STATE_PREFIX, STACK_LOCK), (ENDPOINT_PREFIX, ENDPOINT_LOCK)):
            if entry.name.startswith(prefix) and not entry.is_symlink() and (entry / lock_name).is_file():
                yield entry, lock_name


def _holder(lock_path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(lock_path.read_text().strip())})"
    return ""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    logger.info("removed a leftover of an earlier run", extra={"path": str(path)})


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(OSError):
            return path.lstat().st_size
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total
