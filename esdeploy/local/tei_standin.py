"""Local stack: the local TEI stand-in — text-embeddings-inference's HTTP API on SageMaker's container contract.

TEI has no Python package and the local stack runs no containers, so a `tei` variant runs this process instead:
``python -m esdeploy.local.tei_standin --artifact model.tar.gz --port 0`` extracts the artifact where SageMaker
would (`/opt/ml/model`, here a temporary folder), reads TEI's environment as TEI 1.8.2's SageMaker entrypoint and
router do (HF_MODEL_ID, required; POOLING, DTYPE, AUTO_TRUNCATE, MAX_CLIENT_BATCH_SIZE, MAX_CONCURRENT_REQUESTS,
MAX_BATCH_TOKENS, PAYLOAD_LIMIT), reads the model folder TEI's way (esdeploy.local.tei_model) and serves:

- GET /ping, /health, /: 200 with no body when the model is loaded, 503 `{"error", "error_type"}` before;
- GET /info: TEI's Info (model, pooling, limits, version 1.8.2);
- POST /invocations, /embed, /: TEI's `embed` — a JSON list of vectors; errors `{"error", "error_type"}` with
  TEI's status codes (413 validation, 422 tokenizer, 429 overloaded, 424 backend), bodies axum refuses in plain
  text (415, 400, 422, 413);
- POST /esdeploy/misbehave: the local-only misbehave switch (esdeploy.local.misbehave), as the handler's endpoint.

Its HTTP behaviour is checked against TEI's own OpenAPI document of that version (shared/tei), and it prints
the same start-up lines as esdeploy.local.endpoint, which the local hosting waits for, and lives as it does (the
same `--workdir` and `--parent-pid`: it never outlives the stack that started it). Loopback only.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chalicelib.adapters.serving_wire import SAGEMAKER_MODEL_DIR
from chalicelib.domain.serving import TEI_MAX_CLIENT_BATCH_SIZE, TEI_VERSION
from esdeploy.artifact_check import extract_archive
from esdeploy.local.endpoint import (
    FAILED,
    LISTENING,
    READY,
    announce,
    claim_workdir,
    flush_quietly,
    require_loopback,
    serving_arguments,
)
from esdeploy.local.lifeline import Lifeline
from esdeploy.local.misbehave import ENDPOINT_ROUTE, Misbehaviour, MisbehaviourError
from esdeploy.local.tei_model import TeiLoadError, TeiModel, TeiRequestError, read_folder
from esdeploy.local.tei_requests import BodyRejection, EmbedRequest, parse_embed_request

logger = logging.getLogger(__name__)

# TEI's ErrorType -> HTTP status (router/src/http/server.rs `impl From<&ErrorType> for StatusCode`).
ERROR_STATUS = {"Unhealthy": 503, "Backend": 424, "Overloaded": 429, "Validation": 413, "Tokenizer": 422, "Empty": 400}
_FALSEY = {"false", "no", "off", "0", "n", "f", ""}
_TRUTHY = {"true", "yes", "on", "1", "y", "t"}


@dataclass(frozen=True)
class TeiSettings:
    """TEI's settings from its environment (router/src/main.rs: every option also reads its variable)."""

    model_id: str
    pooling: str | None = None
    dtype: str = "float32"
    auto_truncate: bool = False
    max_client_batch_size: int = TEI_MAX_CLIENT_BATCH_SIZE
    max_concurrent_requests: int = 512
    max_batch_tokens: int = 16384
    payload_limit: int = 2_000_000

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> TeiSettings:
        """TeiLoadError naming the variable when TEI would not start with it."""
        model_id = env.get("HF_MODEL_ID", "").strip()
        if not model_id:
            raise TeiLoadError("HF_MODEL_ID must be set")  # sagemaker-entrypoint.sh's own words
        return cls(
            model_id=model_id,
            pooling=env.get("POOLING") or None,
            # The CPU image's default (the CUDA image's is float16; the local hosting says so for GPU types).
            dtype=env.get("DTYPE") or "float32",
            auto_truncate=_flag(env, "AUTO_TRUNCATE"),
            max_client_batch_size=_number(env, "MAX_CLIENT_BATCH_SIZE", cls.max_client_batch_size),
            max_concurrent_requests=_number(env, "MAX_CONCURRENT_REQUESTS", cls.max_concurrent_requests),
            max_batch_tokens=_number(env, "MAX_BATCH_TOKENS", cls.max_batch_tokens),
            payload_limit=_number(env, "PAYLOAD_LIMIT", cls.payload_limit),
        )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _FALSEY:
        return False
    if value in _TRUTHY:
        return True
    raise TeiLoadError(f"invalid value {env[name]!r} for {name} [possible values: true, false]")


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise TeiLoadError(f"invalid value {raw!r} for {name}: invalid digit found in string")
    return int(raw)


class TeiState:
    """What the request handlers share: the settings, the model once loaded, and the in-flight count."""

    def __init__(self, settings: TeiSettings) -> None:
        self.settings = settings
        self.model: TeiModel | None = None
        self.ready = threading.Event()
        self.misbehaviour = Misbehaviour()
        self._in_flight = 0
        self._count_lock = threading.Lock()

    def try_acquire(self) -> bool:
        """TEI's `try_acquire_permit`: a single input finds the model at MAX_CONCURRENT_REQUESTS and is refused."""
        with self._count_lock:
            if self._in_flight >= self.settings.max_concurrent_requests:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._count_lock:
            self._in_flight -= 1

    def info(self) -> dict[str, Any]:
        """TEI's Info (router/src/lib.rs)."""
        model = self.model
        assert model is not None
        settings = self.settings
        return {
            "model_id": settings.model_id,
            "model_sha": None,
            "model_dtype": model.dtype,
            "model_type": {"embedding": {"pooling": model.folder.pooling}},
            "max_concurrent_requests": settings.max_concurrent_requests,
            "max_input_length": model.folder.max_input_length,
            "max_batch_tokens": settings.max_batch_tokens,
            "max_batch_requests": None,
            "max_client_batch_size": settings.max_client_batch_size,
            "auto_truncate": settings.auto_truncate,
            "tokenization_workers": os.cpu_count() or 1,
            "version": TEI_VERSION,
            "sha": None,
            "docker_label": None,
        }


class TeiError(Exception):
    """An answer of TEI's ErrorResponse shape."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.error_type]


def embed(state: TeiState, request: EmbedRequest) -> list[list[float]]:
    """router/src/http/server.rs `embed`: the batch checks, then each input through the model."""
    model = state.model
    assert model is not None
    settings = state.settings
    if not request.single:
        if not request.inputs:
            raise TeiError("`inputs` cannot be empty", "Empty")
        if len(request.inputs) > settings.max_client_batch_size:
            raise TeiError(
                f"batch size {len(request.inputs)} > maximum allowed batch size {settings.max_client_batch_size}",
                "Validation",
            )
    elif not state.try_acquire():
        raise TeiError("Model is overloaded", "Overloaded")
    try:
        return model.embed(
            request.inputs,
            truncate=settings.auto_truncate if request.truncate is None else request.truncate,
            truncation_direction=request.truncation_direction,
            prompt_name=request.prompt_name,
            normalize=request.normalize,
            dimensions=request.dimensions,
        )
    except TeiRequestError as error:
        raise TeiError(str(error), error.error_type) from None
    except Exception as error:  # the backend failed: TEI's Backend error (424)
        logger.exception("inference failed")
        raise TeiError(f"Backend error: Inference failed: {type(error).__name__}: {error}", "Backend") from None
    finally:
        if request.single:
            state.release()


class TeiHandler(BaseHTTPRequestHandler):
    """TEI's routes (router/src/http/server.rs `run`) as far as an embedding model on SageMaker uses them."""

    protocol_version = "HTTP/1.1"
    server: TeiServer
    _GET = {"/", "/ping", "/health", "/info"}
    _POST = {"/", "/invocations", "/embed", ENDPOINT_ROUTE}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in self._GET:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED if path in self._POST else HTTPStatus.NOT_FOUND, b"", None)
            return
        state = self.server.state
        if not state.ready.is_set():
            self._error(TeiError("unhealthy", "Unhealthy"))
        elif path == "/info":
            self._json(HTTPStatus.OK, state.info())
        else:
            self._send(HTTPStatus.OK, b"", None)

    def do_HEAD(self) -> None:
        path = self.path.split("?", 1)[0]
        status = HTTPStatus.OK if path in self._GET and self.server.state.ready.is_set() else HTTPStatus.NOT_FOUND
        self.send_response(status if path in self._GET or path not in self._POST else HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _other_method(self) -> None:
        """axum: a route that exists answers 405 to another method, one that does not 404."""
        path = self.path.split("?", 1)[0]
        if self._body() is None:
            return
        known = path in self._GET or path in self._POST
        self._send(HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND, b"", None)

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method it has no do_<METHOD> for with 501; axum with 405 or 404.
        if name.startswith("do_"):
            return self._other_method
        raise AttributeError(name)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body()
        if body is None:
            return
        if path not in self._POST:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED if path in self._GET else HTTPStatus.NOT_FOUND, b"", None)
            return
        if path == ENDPOINT_ROUTE:
            self._set_misbehaviour(body)
            return
        state = self.server.state
        if not state.ready.is_set():
            self._error(TeiError("unhealthy", "Unhealthy"))
            return
        misbehaviour = state.misbehaviour
        if misbehaviour.latency_ms:
            time.sleep(misbehaviour.latency_ms / 1000)
        if misbehaviour.fails_now():
            # A 5XX, as a broken backend would give: the bake's 5XX alarm counts these.
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": "failing on purpose: esdeploy local misbehave switch is on", "error_type": "Backend"})
            return
        try:
            request = parse_embed_request(body, self.headers.get("Content-Type"))
            vectors = embed(state, request)
        except BodyRejection as rejection:
            self._send(HTTPStatus(rejection.status), str(rejection).encode(), "text/plain; charset=utf-8")
            return
        except TeiError as error:
            self._error(error)
            return
        self._json(HTTPStatus.OK, vectors)

    def _body(self) -> bytes | None:
        """The request body up to PAYLOAD_LIMIT (axum's DefaultBodyLimit: 413 in plain text past it)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(HTTPStatus.BAD_REQUEST, b"Invalid Content-Length", "text/plain; charset=utf-8")
            return None
        if length > self.server.state.settings.payload_limit:
            self.close_connection = True  # not read: answering before the upload ends is cheaper
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       b"Failed to buffer the request body: length limit exceeded", "text/plain; charset=utf-8")
            return None
        return self.rfile.read(length) if length else b""

    def _set_misbehaviour(self, body: bytes) -> None:
        try:
            wanted = Misbehaviour.parse(json.loads(body or b"{}"))
        except (ValueError, MisbehaviourError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"detail": str(exc)})
            return
        self.server.state.misbehaviour = wanted
        logger.warning("misbehave switch set: %s", wanted.as_dict())
        self._json(HTTPStatus.OK, wanted.as_dict())

    def _error(self, error: TeiError) -> None:
        self._json(HTTPStatus(error.status), {"error": str(error), "error_type": error.error_type})

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, json.dumps(body, separators=(",", ":")).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


class TeiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: TeiState) -> None:
        self.state = state
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, TeiHandler)


def model_folder(settings: TeiSettings, extracted: Path) -> Path:
    """HF_MODEL_ID as TEI takes it: a folder that exists, where SageMaker's /opt/ml/model is the extracted
    artifact; anything else is a Hub id, which TEI would download (the local stack has no network for it)."""
    if settings.model_id == SAGEMAKER_MODEL_DIR:
        return extracted
    path = Path(settings.model_id)
    if path.is_dir():
        return path
    raise TeiLoadError(
        f"Could not download model artifacts: HF_MODEL_ID {settings.model_id!r} is no folder here, and the local "
        f"stack downloads nothing (set it to {SAGEMAKER_MODEL_DIR}, where SageMaker extracts model.tar.gz)"
    )


def serve(
    artifact: Path, host: str, port: int, env: Mapping[str, str], workdir: Path | None = None,
    parent_pid: int | None = None,
) -> int:
    """Extract, bind, load, serve until told to stop; always removes the working folder. The same life as
    esdeploy.local.endpoint's: `workdir` (the local stack passes one inside its state folder) or a new temporary
    one, held by a lock; with `parent_pid` it stops when the stack that started it is gone (esdeploy.local.lifeline)."""
    workdir, _held = claim_workdir(workdir, parent_pid)  # held until this function returns
    serving = threading.Event()

    def abandon(reason: str) -> None:
        logger.warning("ending at once (%s); removing %s", reason, workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        flush_quietly()
        os._exit(0)

    lifeline = Lifeline(abandon, orderly=serving.is_set, parent_pid=parent_pid)
    lifeline.start()
    if lifeline.parent_gone():
        abandon(f"its stack (pid {parent_pid}) was gone at start")
    server: TeiServer | None = None
    try:
        settings = TeiSettings.from_environment(env)
        extracted = artifact if artifact.is_dir() else extract_archive(artifact, workdir / "model")
        state = TeiState(settings)
        server = TeiServer((host, port), state)
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        bound = server.server_address[1]
        announce(f"{LISTENING} http://{host}:{bound} (workdir {workdir}; TEI {TEI_VERSION} stand-in)")
        folder = read_folder(model_folder(settings, extracted), settings.pooling)
        state.model = TeiModel(folder, settings.dtype)
        serving.set()
        if lifeline.stop.is_set():
            return 0
        state.ready.set()
        announce(f"{READY} TEI stand-in, {folder.pooling} pooling, {settings.dtype}, on port {bound}")
        lifeline.stop.wait()
        return 0
    except Exception as exc:
        logger.exception("TEI stand-in failed")
        with contextlib.suppress(OSError):  # nobody may be reading any more (a killed stack's pipe)
            announce(f"{FAILED} {type(exc).__name__}: {exc}")
        return 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = serving_arguments("python -m esdeploy.local.tei_standin", __doc__.splitlines()[0])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host = require_loopback(args.host)
    if not args.artifact.exists():
        parser.error(f"{args.artifact} does not exist")
    return serve(args.artifact, host, args.port, os.environ, args.workdir, args.parent_pid)


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    flush_quietly()
    os._exit(status)  # cleaned up already; skipping torch's teardown saves seconds on every swap
