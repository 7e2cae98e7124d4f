"""Local stack: the HTTP server in front of the app, API Gateway's part on loopback.

Chalice's `create_local_server` is made for one developer's browser: a listen backlog of 5 (a
burst of new connections waits for SYN retries, up to a minute), no read timeout (a client that
sends nothing holds its thread forever), and http.server's HTML error pages. The embedded stack
serves a team, so this module keeps Chalice's request handling (its LocalGateway turns a request
into the Lambda event the app gets on AWS) and changes what is around it: a large backlog, a read
timeout per connection, one thread per connection, and every error it answers itself in the API's
`{"detail": ...}` shape.
"""
from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LocalChalice,
    LocalDevServer,
    LocalGatewayException,
)

logger = logging.getLogger(__name__)

# Connections the kernel queues before `accept` (Linux caps it at net.core.somaxconn, 4096 by default).
LISTEN_BACKLOG = 1024
# Seconds a connection may be silent (an idle keep-alive or a client that stalls mid-request)
# before it is closed and its thread ends.
READ_TIMEOUT_SECONDS = 30.0
# API Gateway's own limit for a request payload; the app's limit (ESDEPLOY_MAX_BODY_BYTES) is lower
# and answered by the app, this one keeps a client from making the server read gigabytes first.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024

# What a person should do about each refusal http.server makes before the app sees the request.
_REFUSALS = {
    HTTPStatus.BAD_REQUEST: "the request is not valid HTTP/1.1",
    HTTPStatus.REQUEST_URI_TOO_LONG: "the request line is over 65,536 bytes: shorten the URL",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: (
        "the request has too many or too long header lines (at most 100, each under 65,536 bytes)"
    ),
    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: "send HTTP/1.0 or HTTP/1.1",
}


class ApiRequestHandler(ChaliceRequestHandler):
    """Chalice's handler with a read timeout and `{"detail"}` errors."""

    timeout = READ_TIMEOUT_SECONDS
    server_version = "esdeploy-local"

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log line: the app logs every request it answers ("http request"), this server
        every answer it gives itself (`_send_json`), and `esdeploy local` shows those lines."""

    def log_message(self, format: str, *args: Any) -> None:
        """http.server's own complaints (a bad request line) as a warning of the stack's. An idle
        keep-alive connection that reaches the read timeout (a browser's) is routine, not a warning."""
        text = format % args
        level = logging.DEBUG if text.startswith("Request timed out") else logging.WARNING
        logger.log(level, "local API server: %s", text, extra={"client": self.address_string()})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's refusals (bad request line, 414, 431, 501, ...) as JSON, not an HTML page."""
        try:
            status: HTTPStatus | None = HTTPStatus(code)
        except ValueError:
            status = None
        detail = _REFUSALS.get(status) if status is not None else None
        if message and detail:
            detail = f"{detail} ({message})"
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        # An unreadable request line leaves http.server on HTTP/0.9, which has no status line or
        # headers: answer in HTTP/1.1 so the client sees the status and the JSON type.
        self.request_version = self.protocol_version
        self._send_json(code, {"detail": detail or message or (status.phrase if status else "refused")},
                        {"Connection": "close"})

    def parse_request(self) -> bool:
        """http.server's parsing, less HTTP/0.9: a request line without a version has no status line
        or headers in its answer, so the client would get a bare body it cannot tell from an error."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/0.9: a request line needs a version")
            return False
        return True

    def _parse_payload(self) -> tuple[dict[str, Any], bytes | None]:
        """Chalice's reading of the body, with a Content-Length that may be missing, wrong, huge,
        repeated or longer than what comes; an unread body closes the connection (`_Refused`)."""
        length = self._content_length()
        if length > MAX_PAYLOAD_BYTES:
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body is {length} bytes; the API takes at most {MAX_PAYLOAD_BYTES} bytes",
            )
        return dict(self.headers), self._read_body(length) if length > 0 else None

    def _content_length(self) -> int:
        """The body's one length. Two Content-Length headers, or a Transfer-Encoding this server does
        not decode, could make a proxy in front and this server see different requests in the same
        bytes (request smuggling): refused, as RFC 9112 sections 6.3 and 11.2 allow."""
        lengths = self.headers.get_all("content-length") or []
        codings = self.headers.get_all("transfer-encoding") or []
        if codings and lengths:
            raise _Refused(
                HTTPStatus.BAD_REQUEST,
                "the request has both Transfer-Encoding and Content-Length: send the body with Content-Length only",
            )
        if codings:
            raise _Refused(
                HTTPStatus.NOT_IMPLEMENTED,
                f"Transfer-Encoding {', '.join(codings)} is not supported here: send the body with a Content-Length",
            )
        if len(lengths) > 1:
            raise _Refused(
                HTTPStatus.BAD_REQUEST,
                f"the request has {len(lengths)} Content-Length headers ({', '.join(lengths)}): send exactly one",
            )
        raw = (lengths[0] if lengths else "0").strip() or "0"
        if not raw.isdigit():
            raise _Refused(HTTPStatus.BAD_REQUEST, f"Content-Length {raw!r} is not a number of bytes")
        return int(raw)

    def _read_body(self, length: int) -> bytes:
        """Exactly `length` bytes, or a 400 that says how many came: the client stopped sending (read
        timeout) or closed its side."""
        body = bytearray()
        why = ""
        while len(body) < length:
            try:
                chunk = self.rfile.read1(length - len(body))
            except TimeoutError:
                why = f"nothing more came for {self.timeout:g} s"
                break
            if not chunk:
                why = "the client closed its side"
                break
            body += chunk
        if len(body) < length:
            raise _Refused(
                HTTPStatus.BAD_REQUEST,
                f"the request body ended after {len(body)} of the {length} bytes its Content-Length announced ({why})",
            )
        return bytes(body)

    def _generic_handle(self) -> None:
        try:
            super()._generic_handle()
        except _Refused as refused:
            self.close_connection = True  # the body, if any, was not read
            self._send_json(refused.status, {"detail": refused.detail}, {"Connection": "close"})

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def __getattr__(self, name: str) -> Any:
        """Any other method (TRACE, FOO) goes to the gateway too, which answers 405 with the path's
        methods (403 for a path no route has), as API Gateway does, where http.server says 501."""
        if name.startswith("do_"):
            return self._generic_handle
        raise AttributeError(name)

    def _send_http_response_with_body(self, code: int, headers: dict[str, Any], body: str | bytes) -> None:
        if self.command == "HEAD":  # the headers of the answer, never its body (it would end up in the next one)
            data = body.encode("utf-8") if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
            self._send_headers(headers)
            return
        super()._send_http_response_with_body(code, headers, body)

    def _send_error_response(self, error: LocalGatewayException) -> None:
        """The gateway's own answers (403 for a path no route has) in our shape."""
        try:
            message = json.loads(error.body or b"{}").get("message", "")
        except ValueError:
            message = ""
        path = self.path.split("?", 1)[0]
        if message == "Missing Authentication Token":
            # API Gateway answers an unknown path (and, on a stage with SigV4, an unsigned request)
            # with this 403; locally there is no auth, so it can only be the path.
            detail = f"{message}: no route answers {self.command} {path}; the routes are listed at /docs"
        else:
            detail = message or HTTPStatus(error.CODE).phrase
        headers = {k: v for k, v in (error.headers or {}).items() if k.lower() != "content-type"}
        self._send_json(error.CODE, {"detail": detail}, headers)

    def _send_json(self, code: int, body: dict[str, Any], headers: dict[str, Any]) -> None:
        """An answer of this server's own (a refusal, or the gateway's 403/405), logged as the app
        logs the requests it answers: one "http request" line, whoever answered."""
        logger.info(
            "http request",
            extra={"http_method": self.command or "-", "route": (getattr(self, "path", "") or "-").split("?", 1)[0],
                   "status_code": code, "answered_by": "local API server", "detail": body.get("detail")},
        )
        data = json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ApiHttpServer(ThreadingHTTPServer):
    """One thread per connection, ended by the read timeout at the latest; a backlog for bursts."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    block_on_close = False


def create_api_server(
    app: Chalice,
    host: str,
    port: int,
    *,
    backlog: int = LISTEN_BACKLOG,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    stage: str = "local",
) -> LocalDevServer:
    """The app behind the local gateway, as `chalice local` would serve it, but with the server
    above. `serve_forever()` in a thread, `shutdown()` from another, then `server.server_close()`."""
    # What chalice.local.create_local_server does first: `current_request` becomes per thread.
    if not isinstance(app, LocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    config = Config.create(chalice_stage=stage, app_name=app.app_name, chalice_app=app)
    handler = type("ApiRequestHandler", (ApiRequestHandler,), {"timeout": read_timeout})
    server_cls = type("ApiHttpServer", (ApiHttpServer,), {"request_queue_size": backlog})
    return LocalDevServer(app, config, host, port, handler_cls=handler, server_cls=server_cls)
