"""Local stack: one local endpoint — the SageMaker serving container contract (GET /ping, POST /invocations).

``python -m esdeploy.local.endpoint --artifact model.tar.gz --port 8080`` extracts the artifact to a
temporary directory, imports its own ``code/inference.py`` as the container would, and serves the
SageMaker container contract with the stdlib HTTP server on a loopback address only. Client errors
(the handler's BadRequestError) are answered 400 ``{"detail": "..."}``; anything else is a 500. The real
HF toolkit answers every handler exception with 400, so a local 500 points at a server-side bug.
It stops cleanly on SIGTERM/SIGINT, and when started with ``--parent-pid`` also when that parent is
gone (esdeploy.local.lifeline); either way it removes its working directory.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from esdeploy.artifact_check import extract_archive, load_handler
from esdeploy.local.housekeeping import ENDPOINT_LOCK, ENDPOINT_PREFIX, FolderLock
from esdeploy.local.lifeline import Lifeline, keep_temporary_files_in
from esdeploy.local.misbehave import ENDPOINT_ROUTE, Misbehaviour, MisbehaviourError

logger = logging.getLogger(__name__)

# What the process prints, flushed, for whoever started it (the local hosting, the tests).
LISTENING = "esdeploy local endpoint listening on"
READY = "esdeploy local endpoint ready:"
FAILED = "esdeploy local endpoint failed:"


class ServerState:
    """What the request handlers share: the handler module, the loaded model, and readiness."""

    def __init__(self) -> None:
        self.handler: ModuleType | None = None
        self.model: Any = None
        self.ready = threading.Event()
        self.max_body_bytes = 6 * 1024 * 1024  # SageMaker's own invocation limit until the handler says
        # Local only (esdeploy.local.misbehave): 500s and latency on purpose, once it is serving.
        self.misbehaviour = Misbehaviour()

    def is_bad_request(self, exc: BaseException) -> bool:
        bad_request = getattr(self.handler, "BadRequestError", None)
        return isinstance(bad_request, type) and isinstance(exc, bad_request)


class InvocationHandler(BaseHTTPRequestHandler):
    """The two routes of the SageMaker container contract."""

    protocol_version = "HTTP/1.1"
    server: EndpointServer

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._send_json(HTTPStatus.NOT_FOUND, {"detail": f"no route GET {self.path}"})
        elif self.server.state.ready.is_set():
            self._send_json(HTTPStatus.OK, {"status": "ok"})
        else:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "model is loading"})

    def do_POST(self) -> None:
        state = self.server.state
        if self.path == ENDPOINT_ROUTE:
            self._set_misbehaviour()
            return
        if self.path != "/invocations":
            self._discard_body()
            self._send_json(HTTPStatus.NOT_FOUND, {"detail": f"no route POST {self.path}"})
            return
        if not state.ready.is_set() or state.handler is None:
            self._discard_body()
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "model is loading"})
            return
        length = self._content_length()
        if length is None:
            return
        if length > state.max_body_bytes:
            # Not read: answering before the upload ends is cheaper than buffering it.
            self.close_connection = True
            self._send_json(
                HTTPStatus.BAD_REQUEST,
                {"detail": f"request body is {length} bytes, over the limit of {state.max_body_bytes}"},
            )
            return
        body = self.rfile.read(length)
        misbehaviour = state.misbehaviour
        if misbehaviour.latency_ms:
            time.sleep(misbehaviour.latency_ms / 1000)
        if misbehaviour.fails_now():
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                            {"detail": "failing on purpose: esdeploy local misbehave switch is on"})
            return
        handler = state.handler
        try:
            request = handler.input_fn(body, self.headers.get("Content-Type"))
            prediction = handler.predict_fn(request, state.model)
            payload = handler.output_fn(prediction, self.headers.get("Accept"))
        except Exception as exc:
            if state.is_bad_request(exc):
                self._send_json(HTTPStatus.BAD_REQUEST, {"detail": str(exc)})
            else:
                logger.exception("invocation failed")
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"detail": f"{type(exc).__name__}: {exc}"})
            return
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        self._send(HTTPStatus.OK, data, "application/json")

    def _set_misbehaviour(self) -> None:
        """POST /esdeploy/misbehave {"errors": 0..1, "latency_ms": N}: answers the setting now in force."""
        length = self._content_length()
        if length is None:
            return
        try:
            wanted = Misbehaviour.parse(json.loads(self.rfile.read(length) or b"{}"))
        except (ValueError, MisbehaviourError) as exc:  # JSONDecodeError is a ValueError
            self._send_json(HTTPStatus.BAD_REQUEST, {"detail": str(exc)})
            return
        self.server.state.misbehaviour = wanted
        logger.warning("misbehave switch set: %s", wanted.as_dict())
        self._send_json(HTTPStatus.OK, wanted.as_dict())

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_json(HTTPStatus.LENGTH_REQUIRED, {"detail": "send a Content-Length header"})
            return None
        return length

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= self.server.state.max_body_bytes:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _send_json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


class EndpointServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the shared state."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, InvocationHandler)


def require_loopback(host: str) -> str:
    """Only loopback addresses: this server has no authentication and is meant for one machine."""
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise SystemExit(f"--host {host!r} is not a loopback address (use 127.0.0.1, ::1 or localhost)")


def claim_workdir(workdir: Path | None, parent_pid: int | None) -> tuple[Path, FolderLock]:
    """A serving process's working folder (the one given, or a new temporary one), its temporary folder too,
    and the lock it holds while it lives: a stack starting later removes the folder only once it is gone, and
    ends this process first if the stack that started it is gone (the pids say so). The TEI stand-in's too."""
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix=ENDPOINT_PREFIX))
    else:
        workdir.mkdir(parents=True, exist_ok=True)
    keep_temporary_files_in(workdir)
    lock = FolderLock(workdir, ENDPOINT_LOCK)
    lock.try_acquire()
    lock.write_owner(json.dumps({"pid": os.getpid(), "parent_pid": parent_pid}))
    return workdir, lock


def serve(artifact: Path, host: str, port: int, workdir: Path | None = None, parent_pid: int | None = None) -> int:
    """Extract, bind, load, serve until told to stop; always removes the working folder.

    `workdir` (the local stack passes one inside its own state folder, which its stop removes) or a
    new temporary folder. With `parent_pid`, the process also stops when that process is no longer
    its parent: a local endpoint never outlives the stack that started it."""
    workdir, _held = claim_workdir(workdir, parent_pid)  # held until this function returns
    state = ServerState()
    serving = threading.Event()

    def abandon(reason: str) -> None:
        # Nothing served yet (or an orderly stop that hangs): end now, leaving nothing behind.
        logger.warning("ending at once (%s); removing %s", reason, workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        flush_quietly()
        os._exit(0)

    lifeline = Lifeline(abandon, orderly=serving.is_set, parent_pid=parent_pid)
    lifeline.start()
    if lifeline.parent_gone():  # the stack died before this process got here
        abandon(f"its stack (pid {parent_pid}) was gone at start")
    server: EndpointServer | None = None
    thread: threading.Thread | None = None
    try:
        model_dir = artifact if artifact.is_dir() else extract_archive(artifact, workdir / "model")
        # Bind before loading so that the port is ours and /ping can say "loading" meanwhile.
        server = EndpointServer((host, port), state)
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        bound_port = server.server_address[1]
        announce(f"{LISTENING} http://{host}:{bound_port} (workdir {workdir})")
        state.handler = load_handler(model_dir)
        state.max_body_bytes = int(getattr(state.handler, "MAX_BODY_BYTES", state.max_body_bytes))
        state.model = state.handler.model_fn(str(model_dir))
        serving.set()
        if lifeline.stop.is_set():  # told to stop while loading, and `abandon` did not end it
            return 0
        state.ready.set()
        announce(f"{READY} model {getattr(state.model, 'model_id', '?')} on port {bound_port}")
        lifeline.stop.wait()
        logger.info("stopping (%s)", lifeline.reason)
        return 0
    except Exception as exc:
        logger.exception("endpoint failed")
        with contextlib.suppress(OSError):  # nobody may be reading any more (a killed stack's pipe)
            announce(f"{FAILED} {type(exc).__name__}: {exc}")
        return 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)
        logger.info("stopped; removed %s", workdir)


def flush_quietly() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def announce(line: str) -> None:
    # stdout, flushed: the local stack and the tests wait for these lines.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serving_arguments(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of a serving process the local hosting starts (this one and the TEI stand-in)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--artifact", required=True, type=Path, help="model.tar.gz or an extracted artifact directory")
    parser.add_argument("--port", required=True, type=int, help="TCP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--workdir", type=Path, help="folder to extract into (default: a new temporary folder)")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = serving_arguments("python -m esdeploy.local.endpoint", __doc__.splitlines()[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host = require_loopback(args.host)
    if not args.artifact.exists():
        parser.error(f"{args.artifact} does not exist")
    return serve(args.artifact, host, args.port, args.workdir, args.parent_pid)


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    flush_quietly()
    # Everything is cleaned up by now; skipping interpreter teardown saves ~2 s of torch unloading,
    # which the local stack pays on every endpoint swap.
    os._exit(status)
