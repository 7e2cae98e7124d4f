"""Start-up housekeeping of the local stack: only what our dead runs made goes; live and foreign folders stay."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from esdeploy.local.housekeeping import (
    ENDPOINT_LOCK,
    ENDPOINT_MODULE,
    STACK_LOCK,
    Cleaned,
    FolderLock,
    StateDirInUseError,
    claim_state_dir,
    clean_temp_leftovers,
    end_orphaned_endpoints,
)

ROOT = Path(__file__).resolve().parents[2]


def folder(path: Path, *, lock: str | None = None, download: bool = False) -> Path:
    path.mkdir(parents=True)
    (path / "stack.json").write_text("{}")
    if lock:
        (path / lock).write_text("12345")
    if download:
        (path / "endpoints" / "esdlocal-m1-0-1").mkdir(parents=True)
        (path / "endpoints" / "esdlocal-m1-0-1" / "model.tar.gz").write_bytes(b"x" * 4096)
    return path


def test_a_reused_state_folder_loses_the_downloads_a_dead_run_left_and_keeps_the_rest(tmp_path: Path) -> None:
    state = folder(tmp_path / "state", lock=STACK_LOCK, download=True)

    lock, cleaned = claim_state_dir(state)
    try:
        assert not (state / "endpoints" / "esdlocal-m1-0-1").exists()
        assert (state / "stack.json").exists()
        assert cleaned.bytes == 4096 and cleaned.paths == [state / "endpoints" / "esdlocal-m1-0-1"]
        assert "removed 0.0 MB that an earlier esdeploy local left" in cleaned.summary()
    finally:
        lock.release()


def test_a_folder_that_never_held_a_stack_is_not_touched(tmp_path: Path) -> None:
    chosen = folder(tmp_path / "my-projects", download=True)  # someone's own "endpoints" folder

    lock, cleaned = claim_state_dir(chosen)
    lock.release()

    assert (chosen / "endpoints" / "esdlocal-m1-0-1" / "model.tar.gz").exists()
    assert cleaned.paths == []


def test_a_state_folder_a_live_stack_holds_is_refused_and_left_alone(tmp_path: Path) -> None:
    state = folder(tmp_path / "state", download=True)
    live = FolderLock(state, STACK_LOCK)
    assert live.try_acquire()
    live.write_owner()
    try:
        with pytest.raises(StateDirInUseError, match=rf"in use by another esdeploy local \(pid {os.getpid()}\)"):
            claim_state_dir(state)
        assert (state / "endpoints" / "esdlocal-m1-0-1" / "model.tar.gz").exists()
    finally:
        live.release()


def test_the_temp_folder_loses_only_dead_folders_of_ours(tmp_path: Path) -> None:
    dead_stack = folder(tmp_path / "esdeploy-local-dead", lock=STACK_LOCK, download=True)
    dead_endpoint = folder(tmp_path / "esdeploy-endpoint-dead", lock=ENDPOINT_LOCK)
    live_stack = folder(tmp_path / "esdeploy-local-live", lock=STACK_LOCK)
    live_endpoint = folder(tmp_path / "esdeploy-endpoint-live", lock=ENDPOINT_LOCK)
    unmarked = folder(tmp_path / "esdeploy-local-unmarked")  # made by someone else, or never started
    other = folder(tmp_path / "other-tool-dir", lock=STACK_LOCK)
    (tmp_path / "esdeploy-local-link").symlink_to(other)
    holders = [FolderLock(live_stack, STACK_LOCK), FolderLock(live_endpoint, ENDPOINT_LOCK)]
    assert all(holder.try_acquire() for holder in holders)
    try:
        cleaned = clean_temp_leftovers(Cleaned(), tmp_path)
    finally:
        for holder in holders:
            holder.release()

    assert sorted(cleaned.paths) == sorted([dead_stack, dead_endpoint])
    assert not dead_stack.exists() and not dead_endpoint.exists()
    assert live_stack.exists() and live_endpoint.exists() and unmarked.exists() and other.exists()
    assert (tmp_path / "esdeploy-local-link").is_symlink()


def test_a_lock_file_appears_already_locked(tmp_path: Path) -> None:
    """No cleaner may find a new stack's lock file unlocked between its creation and its lock."""
    first = FolderLock(tmp_path, STACK_LOCK)
    assert first.try_acquire()
    try:
        assert not FolderLock(tmp_path, STACK_LOCK).try_acquire()
        assert sorted(p.name for p in tmp_path.iterdir()) == [STACK_LOCK]  # no private name left behind
    finally:
        first.release()
    second = FolderLock(tmp_path, STACK_LOCK)
    assert second.try_acquire()
    second.release()


# ---- endpoint processes a dead stack left running (issue 24) ------------------------------------

# Holds an endpoint's lock as a local endpoint does, its command line naming the module and its folder;
# argv: the folder, whether it ignores SIGTERM (a wedged one), the pid to write into the lock.
ORPHAN = """
import json, os, signal, sys, time
from pathlib import Path
from esdeploy.local.housekeeping import ENDPOINT_LOCK, FolderLock
workdir = Path(sys.argv[3]); workdir.mkdir(parents=True, exist_ok=True)
lock = FolderLock(workdir, ENDPOINT_LOCK)
assert lock.try_acquire()
lock.write_owner(json.dumps({"pid": int(sys.argv[5] or os.getpid()), "parent_pid": 1}))
if sys.argv[4] == "wedged":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("holding", flush=True)
time.sleep(600)
"""


@pytest.fixture
def orphans() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(workdir: Path, mode: str = "polite", writes_pid: str = "") -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", ORPHAN, ENDPOINT_MODULE, "--workdir", str(workdir), mode, writes_pid],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert process.stdout is not None and process.stdout.readline() == "holding\n"
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_a_reused_state_folder_first_ends_the_endpoints_its_dead_stack_left_running(
    tmp_path: Path, orphans: Callable[..., subprocess.Popen[str]]
) -> None:
    state = folder(tmp_path / "state", lock=STACK_LOCK, download=True)
    orphan = orphans(state / "endpoints" / "esdlocal-m1-0-1" / "run")

    lock, cleaned = claim_state_dir(state)
    lock.release()

    assert orphan.wait(timeout=15) is not None  # ended, not left serving
    assert cleaned.ended == [orphan.pid]
    assert not (state / "endpoints" / "esdlocal-m1-0-1").exists()
    assert "ended 1 endpoint process(es) it left running" in cleaned.summary()


def test_an_endpoint_that_ignores_sigterm_is_killed(
    tmp_path: Path, orphans: Callable[..., subprocess.Popen[str]]
) -> None:
    wedged = orphans(tmp_path / "endpoints" / "v" / "run", "wedged")

    assert end_orphaned_endpoints(tmp_path / "endpoints", grace=0.5) == [wedged.pid]
    assert wedged.wait(timeout=10) == -signal.SIGKILL


def test_a_pid_that_is_no_longer_the_endpoint_is_never_signalled(
    tmp_path: Path, orphans: Callable[..., subprocess.Popen[str]]
) -> None:
    """The lock names a pid the kernel gave to another program since: that program is left alone."""
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        orphans(tmp_path / "endpoints" / "v" / "run", writes_pid=str(bystander.pid))
        assert end_orphaned_endpoints(tmp_path / "endpoints", grace=0.5) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_dead_stacks_default_folder_in_the_temp_folder_goes_with_the_endpoints_it_left(
    tmp_path: Path, orphans: Callable[..., subprocess.Popen[str]]
) -> None:
    dead_stack = folder(tmp_path / "esdeploy-local-dead", lock=STACK_LOCK)
    orphan = orphans(dead_stack / "endpoints" / "esdlocal-m1-0-1" / "run")

    cleaned = clean_temp_leftovers(Cleaned(), tmp_path)

    assert orphan.wait(timeout=15) is not None
    assert cleaned.ended == [orphan.pid] and cleaned.paths == [dead_stack]
    assert not dead_stack.exists()
