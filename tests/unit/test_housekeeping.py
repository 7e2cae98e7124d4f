"""Start-up housekeeping of the local stack: only what our dead runs made goes; live and foreign folders stay."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from esdeploy.local.housekeeping import (
    ENDPOINT_LOCK,
    STACK_LOCK,
    Cleaned,
    FolderLock,
    StateDirInUseError,
    claim_state_dir,
    clean_temp_leftovers,
)


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
