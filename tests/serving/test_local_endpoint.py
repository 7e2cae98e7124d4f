"""Tests of the local endpoint (python -m esdeploy.local.endpoint), the serving container stand-in, over HTTP."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from esdeploy.local.endpoint import require_loopback
from esdeploy.packaging import PackageResult

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60


class Running:
    """A local endpoint subprocess plus the lines it has printed so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.base_url = ""
        self.workdir = ""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} (exit code {self.proc.poll()})")


@pytest.fixture(scope="module")
def endpoint(tiny_package: PackageResult) -> Iterator[Running]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "ESDEPLOY_SERVING_MAX_BODY_BYTES": "4096",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "esdeploy.local.endpoint", "--artifact", str(tiny_package.archive), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    running = Running(proc)
    try:
        listening = running.wait_for(r"listening on (http://\S+) \(workdir (\S+)\)")
        running.base_url, running.workdir = listening.group(1), listening.group(2)
        running.wait_for(r"ready: model tiny-st")
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def post(endpoint: Running, body: Any, **headers: str) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers.setdefault("Content-Type", "application/json")
    return requests.post(f"{endpoint.base_url}/invocations", data=data, headers=headers, timeout=30)


@pytest.mark.slow
def test_ping(endpoint: Running) -> None:
    response = requests.get(f"{endpoint.base_url}/ping", timeout=10)
    assert response.status_code == 200


@pytest.mark.slow
def test_invocation_returns_embeddings(endpoint: Running, tiny_package: PackageResult) -> None:
    manifest = tiny_package.manifest
    response = post(endpoint, {"inputs": manifest.probe_texts[:2]})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["model"] == "tiny-st" and body["dimension"] == 32
    assert body["embeddings"] == manifest.reference_embeddings[:2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "headers", "detail"),
    [
        ({"inputs": []}, {}, "empty list"),
        ({"inputs": [1]}, {}, "not a string"),
        ("a,b", {"Content-Type": "text/csv"}, "unsupported content type"),
        ({"inputs": ["x"]}, {"Accept": "text/csv"}, "unsupported accept type"),
        ({"inputs": ["x" * 5000]}, {}, "over the limit of 4096"),
    ],
)
def test_client_errors_are_400_with_detail(endpoint: Running, body: Any, headers: dict[str, str], detail: str) -> None:
    response = post(endpoint, body, **headers)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


@pytest.mark.slow
def test_unknown_routes_are_404(endpoint: Running) -> None:
    assert requests.get(f"{endpoint.base_url}/nope", timeout=10).status_code == 404
    assert requests.post(f"{endpoint.base_url}/ping", data=b"", timeout=10).status_code == 404


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_removes_the_workdir(endpoint: Running) -> None:
    assert Path(endpoint.workdir).is_dir()
    endpoint.proc.send_signal(signal.SIGTERM)
    assert endpoint.proc.wait(timeout=20) == 0
    assert not Path(endpoint.workdir).exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_allowed(host: str) -> None:
    assert require_loopback(host) == host


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.com", "::"])
def test_other_hosts_are_refused(host: str) -> None:
    with pytest.raises(SystemExit, match="not a loopback address"):
        require_loopback(host)
