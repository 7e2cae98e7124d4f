"""A local endpoint never outlives the stack that started it, whenever the stack dies, and leaves no folder.

Issue 24: an endpoint that started around the moment its stack was killed with `kill -9` kept running
(parent pid 1, serving its model) and kept its folder in the temp folder; SIGTERM did not stop it.
Here a stand-in for the stack starts the endpoint exactly as the local hosting does
(`start_endpoint_process`) and kills itself at a chosen moment of the endpoint's start-up.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from esdeploy.local.endpoint import LISTENING, READY
from esdeploy.local.lifeline import keep_temporary_files_in
from esdeploy.packaging import PackageResult

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
# The stand-in stack: starts the endpoint as LocalHosting does, reads its output until `wanted`
# (nothing: at once), then dies as `kill -9` kills a stack.
DYING_STACK = """
import os, signal, sys
from pathlib import Path
from esdeploy.local.hosting import start_endpoint_process
process = start_endpoint_process(Path(sys.argv[1]), Path(sys.argv[2]), sys.executable)
print(process.pid, flush=True)
wanted = sys.argv[3]
if wanted:
    for line in process.stdout:
        if line.startswith(wanted):
            break
os.kill(os.getpid(), signal.SIGKILL)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(
    "dies", ["", LISTENING, READY],
    ids=["stack-dies-at-once", "stack-dies-while-it-loads", "stack-dies-while-it-serves"],
)
def test_an_endpoint_ends_with_its_stack_and_leaves_no_folder(
    tiny_package: PackageResult, tmp_path: Path, dies: str
) -> None:
    workdir = tmp_path / "state" / "endpoints" / "esdlocal-tiny-0-1" / "run"
    stack = subprocess.Popen(
        [sys.executable, "-c", DYING_STACK, str(tiny_package.archive), str(workdir), dies],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert stack.stdout is not None
    pid = int(stack.stdout.readline())
    assert stack.wait(timeout=120) == -signal.SIGKILL
    try:
        assert wait_gone(pid, timeout=30), f"endpoint {pid} outlived its stack"
        assert not workdir.exists()
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_while_the_model_loads_ends_it_at_once(tiny_package: PackageResult, tmp_path: Path) -> None:
    """A signal is taken by a thread of its own, not between two bytecodes of a model load."""
    workdir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "esdeploy.local.endpoint", "--artifact", str(tiny_package.archive),
         "--port", "0", "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"},
    )
    assert process.stdout is not None
    try:
        assert process.stdout.readline().startswith(LISTENING)  # bound; the model loads now
        process.send_signal(signal.SIGTERM)
        process.stdout.read()  # drained to the end: it ended
        assert process.wait(timeout=30) == 0
        assert not workdir.exists()
    finally:
        if process.poll() is None:
            process.kill()



def test_a_serving_process_keeps_its_temporary_files_in_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch and the libraries write caches to the temporary folder (torchinductor_<user>, say): for a serving
    process (the endpoint's and the TEI stand-in's serve() call this first) that is its working folder, which goes
    with it, never the machine's /tmp or the folder of the stack that started it."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "machine"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    workdir = tmp_path / "endpoints" / "v1" / "run"
    workdir.mkdir(parents=True)
    tempfile.gettempdir()  # already read once, as an import may have
    keep_temporary_files_in(workdir)
    with tempfile.NamedTemporaryFile() as scratch:
        assert Path(scratch.name).parent == workdir
    assert os.environ["TMPDIR"] == str(workdir)
