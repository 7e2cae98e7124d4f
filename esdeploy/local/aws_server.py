"""Local stack: the embedded AWS server — moto, plus SageMaker Runtime's InvokeEndpoint for local endpoints.

moto answers InvokeEndpoint for any name with canned data; here, `POST /endpoints/<name>/invocations`
reaches the local endpoint process of that name instead, with SageMaker's answers: the container's
body and content type, `ValidationError` (400) for an endpoint that does not exist or is not in
service, `ModelError` (424) when the container answers an error. SageMaker's Service Quotas and
IAM's policy simulator, which moto lacks, are answered by esdeploy/local/account.py. Everything
else is moto's. So boto3's `sagemaker-runtime` client, pointed at AWS_ENDPOINT_URL, embeds with the
real model, and `esdeploy doctor` reads the embedded account as it reads one on AWS.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import unquote

from esdeploy.local.account import AccountRoutes, SageMakerQuotas
from esdeploy.local.environment import LOCAL_REGION
from esdeploy.local.hosting import EndpointGoneError
from esdeploy.local.misbehave import ROUTE_PREFIX, ROUTE_SUFFIX, Misbehaviour, MisbehaviourError
from esdeploy.local.pollers import LOCAL_ACCOUNT

_INVOCATIONS = re.compile(r"^/endpoints/([^/]+)/invocations$")
_MISBEHAVE = re.compile("^" + re.escape(ROUTE_PREFIX) + r"([^/]+)" + re.escape(ROUTE_SUFFIX) + "$")
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Endpoints(Protocol):
    """What InvokeEndpoint needs of the local hosting (LocalHosting.forward)."""

    def forward(self, name: str, body: bytes, content_type: str, accept: str) -> tuple[int, bytes, str]: ...

    def misbehave(self, name: str, misbehaviour: Misbehaviour) -> Misbehaviour: ...


class RuntimeRoutes:
    """WSGI: InvokeEndpoint to the local hosting, the local-only misbehave switch
    (esdeploy.local.misbehave) too, every other request to moto."""

    def __init__(
        self, moto: Wsgi, hosting: Callable[[], Endpoints | None], account: AccountRoutes | None = None
    ) -> None:
        self._moto = moto
        self._hosting = hosting
        self._account = account

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self._account is not None:
            answered = self._account.answer(environ, start_response)
            if answered is not None:
                return answered
        path = environ.get("PATH_INFO", "")
        misbehave = _MISBEHAVE.match(path)
        if environ.get("REQUEST_METHOD") == "POST" and misbehave is not None:
            return self._misbehave(unquote(misbehave.group(1)), _body(environ), start_response)
        found = _INVOCATIONS.match(path)
        if environ.get("REQUEST_METHOD") != "POST" or found is None:
            return self._moto(environ, start_response)
        name = unquote(found.group(1))
        body = _body(environ)
        hosting = self._hosting()
        try:
            if hosting is None:
                raise EndpointGoneError(name, "not found")
            status, payload, content_type = hosting.forward(
                name,
                body,
                environ.get("CONTENT_TYPE") or "application/json",
                environ.get("HTTP_ACCEPT") or "application/json",
            )
        except EndpointGoneError as error:
            return _error(start_response, "400 Bad Request", "ValidationError", {"message": str(error)})
        except Exception as error:  # the endpoint process broke off: SageMaker's own 5xx
            return _error(start_response, "500 Internal Server Error", "InternalFailure", {"message": str(error)})
        if status >= 400:
            kind = "client" if status < 500 else "server"
            text = payload.decode("utf-8", "replace")[:1000]
            return _error(
                start_response,
                "424 Failed Dependency",
                "ModelError",
                {
                    "message": f'Received {kind} error ({status}) from primary with message "{text}".',
                    "OriginalStatusCode": status,
                    "OriginalMessage": text,
                    "LogStreamArn": f"local:{name}",
                },
            )
        start_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(payload))),
                ("x-Amzn-Invoked-Production-Variant", "AllTraffic"),
            ],
        )
        return [payload]


    def _misbehave(self, name: str, body: bytes, start_response: Callable[..., Any]) -> list[bytes]:
        """Local only: `{"errors": 0..1, "latency_ms": N}` for a local endpoint in service."""
        hosting = self._hosting()
        try:
            wanted = Misbehaviour.parse(json.loads(body or b"{}"))
            if hosting is None:
                raise EndpointGoneError(name, "not found")
            now = hosting.misbehave(name, wanted)
        except (ValueError, MisbehaviourError) as error:  # JSONDecodeError is a ValueError
            return _json(start_response, "400 Bad Request", {"detail": str(error)})
        except EndpointGoneError as error:
            return _json(start_response, "404 Not Found", {"detail": str(error)})
        return _json(start_response, "200 OK", {"endpoint": name, **now.as_dict()})


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(environ["wsgi.input"].read(length)) if length else b""


def _json(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    raw = json.dumps(body).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))])
    return [raw]


def _error(start_response: Callable[..., Any], status: str, code: str, body: dict[str, Any]) -> list[bytes]:
    raw = json.dumps(body).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(raw))), ("x-amzn-ErrorType", code)],
    )
    return [raw]


class EmbeddedAws:
    """moto's threaded server with the runtime routes in front; `hosting` is set once it exists."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.hosting: Endpoints | None = None
        # The account's SageMaker quotas (esdeploy/local/account.py): change them to see what doctor says.
        self.quotas = SageMakerQuotas(region=LOCAL_REGION, account=LOCAL_ACCOUNT)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = RuntimeRoutes(
            DomainDispatcherApplication(create_backend_app), lambda: self.hosting, AccountRoutes(self.quotas)
        )
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-aws", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
