"""CLI test fixtures: a scripted fake API on a requests transport, a fake clock, and the real API over HTTP."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from typer.testing import CliRunner

from esdeploy.cli import app
from esdeploy.cli_runtime import CliHooks
from tests.scenarios.conftest import world  # noqa: F401 - the moto + fake SageMaker world, reused

URL = "http://api.test"
T0 = "2025-01-01T00:00:00.000000Z"


@dataclass
class Sent:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    raw: bytes
    url: str


class FakeApi(BaseAdapter):
    """A requests transport that answers from a script and records what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.script: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.sent: list[Sent] = []

    def on(self, method: str, path: str, *answers: tuple[int, Any]) -> FakeApi:
        """Answers in order; the last one repeats."""
        self.script[(method, path)] = list(answers)
        return self

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:  # type: ignore[override]
        path = request.path_url or "/"
        raw = request.body or b""
        raw = raw.encode() if isinstance(raw, str) else raw
        body = json.loads(raw) if raw else None
        self.sent.append(Sent(str(request.method), path, body, dict(request.headers), raw, str(request.url)))
        answers = self.script.get((str(request.method), path))
        status, payload = (404, {"detail": f"no route {request.method} {path}"}) if not answers else (
            answers.pop(0) if len(answers) > 1 else answers[0]
        )
        response = requests.Response()
        response.status_code = status
        response.reason = "scripted"
        response._content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass

    def session(self) -> requests.Session:
        session = requests.Session()
        session.mount("http://", self)
        session.mount("https://", self)
        return session


@dataclass
class FakeClock:
    """Time that moves only when the wait loop sleeps."""

    now: float = 1_735_689_600.0  # 2025-01-01T00:00:00Z, where the scripted tasks start
    slept: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Cli:
    api: FakeApi
    clock: FakeClock
    runner: CliRunner

    def __call__(self, *args: str, live: bool | None = False, url: str = URL) -> Any:
        hooks = CliHooks(session=self.api.session(), sleep=self.clock.sleep, clock=self.clock.time, live=live)
        return self.runner.invoke(app, ["--api", url, *args], obj=hooks)


@pytest.fixture(autouse=True)
def clean_cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ESDEPLOY_API", "ESDEPLOY_API_IAM", "ESDEPLOY_TIMEOUT", "ESDEPLOY_POLL_INTERVAL", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli() -> Cli:
    return Cli(FakeApi(), FakeClock(), CliRunner())


def task(
    status: str = "pending",
    stage: str = "queued",
    *,
    kind: str = "deploy",
    task_id: str = "t1",
    model: str = "m1",
    trail: list[tuple[str, str]] | None = None,
    detail: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A task answer whose events walk `trail` (stage, status), one second apart."""
    steps = trail or [("queued", "pending")]
    if steps[-1] != (stage, status):
        steps = [*steps, (stage, status)]
    events = [
        {"at": f"2025-01-01T00:00:{i:02d}.000000Z", "stage": s, "status": st} for i, (s, st) in enumerate(steps)
    ]
    if detail:
        events[-1]["detail"] = detail
    body: dict[str, Any] = {
        "task_id": task_id,
        "kind": kind,
        "embedding_model_id": model,
        "status": status,
        "stage": stage,
        "created_at": T0,
        "updated_at": events[-1]["at"],
        "config": {},
        "source": "http",
        "events": events,
        **extra,
    }
    if detail:
        body["detail"] = detail
    return body


@pytest.fixture
def api_url(world: Any) -> Iterator[str]:  # noqa: F811 - the imported fixture is the parameter
    """The real Chalice app behind chalice's local HTTP server on an ephemeral loopback port."""
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, LocalDevServer

    from app import app as chalice_app

    class QuietHandler(ChaliceRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """The access log would land in the CLI's captured stderr."""

    server = LocalDevServer(chalice_app, Config.create(), "127.0.0.1", 0, handler_cls=QuietHandler)
    thread = threading.Thread(target=server.server.serve_forever, name="chalice-local", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server.server_address[1]}"
    server.server.shutdown()
    server.server.server_close()
    thread.join(timeout=5)
