"""The local stack's HTTP server (esdeploy/local/http_server.py): bursts, slow clients, and every
refusal it makes itself in the API's `{"detail"}` shape. Real sockets on loopback."""
from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from app import app
from chalicelib import wiring
from chalicelib.version import VERSION
from esdeploy.local.http_server import LISTEN_BACKLOG, create_api_server
from esdeploy.local.processes import LOOPBACK

READ_TIMEOUT = 0.5


@pytest.fixture
def server(memory_adapters: wiring.Adapters) -> Iterator[Any]:
    running = create_api_server(app, LOOPBACK, 0, read_timeout=READ_TIMEOUT)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server.server_close()


def url(server: Any, path: str = "") -> str:
    return f"http://{LOOPBACK}:{server.server.server_address[1]}{path}"


def raw_exchange(server: Any, request: bytes, *, half_close: bool = True) -> tuple[int, dict[str, str], Any]:
    """Send bytes as they are (then, with `half_close`, end the sending side, as `curl` does once
    its request is sent); (status, headers, JSON body) of the answer."""
    with socket.create_connection((LOOPBACK, server.server.server_address[1]), timeout=10) as conn:
        conn.sendall(request)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status", "needle"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "shorten the URL"),
        (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431,
         "too many or too long header lines"),
        (b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431, "too many or too long"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "not valid HTTP"),
        (b"GET /health HTTP/9.0\r\n\r\n", 505, "send HTTP/1.0 or HTTP/1.1"),
        (b"POST /deploy HTTP/1.1\r\nContent-Length: many\r\n\r\n", 400, "Content-Length 'many' is not a number"),
        (b"POST /deploy HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{", 413,
         "the API takes at most 10485760 bytes"),
    ],
)
def test_what_the_server_refuses_itself_is_json_with_a_detail(
    server: Any, request_bytes: bytes, status: int, needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="esdeploy.local.http_server")
    code, headers, body = raw_exchange(server, request_bytes)
    assert code == status
    assert headers["content-type"] == "application/json"
    assert set(body) == {"detail"} and needle in body["detail"], body
    # Logged as the app logs the requests it answers (esdeploy local prints it as an `api` line).
    [logged] = [r for r in caplog.records if r.getMessage() == "http request"]
    assert (logged.status_code, logged.answered_by) == (status, "local API server")  # type: ignore[attr-defined]


def test_a_path_no_route_has_is_the_gateways_403_in_our_shape(server: Any) -> None:
    answer = requests.get(url(server, "/nope?x=1"), timeout=10)
    assert answer.status_code == 403
    assert answer.json() == {
        "detail": "Missing Authentication Token: no route answers GET /nope; the routes are listed at /docs"
    }


def test_the_apps_own_answers_pass_unchanged(server: Any) -> None:
    assert requests.get(url(server, "/health"), timeout=10).json() == {"status": "ok", "service": "esdeploy",
                                                                        "version": VERSION}
    wrong = requests.put(url(server, "/deploy"), json={}, timeout=10)
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Unsupported method: PUT; this path allows POST"})
    for method in ("TRACE", "FOO"):  # http.server alone answers 501, a server error, with an HTML page
        other = requests.request(method, url(server, "/health"), timeout=10)
        assert (other.status_code, other.headers["Allow"]) == (405, "GET")
        assert other.json() == {"detail": f"Unsupported method: {method}; this path allows GET"}
    head = requests.head(url(server, "/health"), timeout=10)
    assert head.status_code == 405 and head.content == b""  # no body after HEAD: the connection stays usable


def test_a_burst_of_new_connections_is_queued_not_dropped(memory_adapters: wiring.Adapters) -> None:
    """Chalice's server listens with a backlog of 5: while it is busy, the 7th new connection's SYN
    is dropped and the client waits for a retransmit (1 s, 3 s, 7 s, ...). Here nothing accepts at
    all, so only the kernel's queue can complete the handshakes."""
    burst = 200
    assert burst <= LISTEN_BACKLOG
    idle = create_api_server(app, LOOPBACK, 0)  # bound and listening, serve_forever never called
    port = idle.server.server_address[1]
    connections: list[socket.socket] = []
    try:
        for _ in range(burst):
            connections.append(socket.create_connection((LOOPBACK, port), timeout=0.5))
    finally:
        for conn in connections:
            conn.close()
        idle.server.server_close()
    assert len(connections) == burst


def test_a_silent_client_is_cut_off_and_does_not_hold_up_others(server: Any) -> None:
    silent = [socket.create_connection((LOOPBACK, server.server.server_address[1]), timeout=30) for _ in range(20)]
    try:
        assert requests.get(url(server, "/health"), timeout=10).status_code == 200
        for conn in silent:
            assert conn.recv(1024) == b"", "the server closes a connection that stays silent past its read timeout"
    finally:
        for conn in silent:
            conn.close()


def test_a_body_shorter_than_its_content_length_is_a_400_after_the_read_timeout(server: Any) -> None:
    """The client said 100 bytes and sent 1: once the read timeout passes it gets an answer that
    says so, not a connection closed without a status."""
    code, headers, body = raw_exchange(
        server, b"POST /deploy HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        half_close=False,
    )
    assert (code, headers["connection"]) == (400, "close")
    assert body == {"detail": f"the request body ended after 1 of the 100 bytes its Content-Length announced "
                              f"(nothing more came for {READ_TIMEOUT:g} s)"}


def test_a_body_cut_short_by_the_client_closing_its_side_is_a_400(server: Any) -> None:
    code, _, body = raw_exchange(
        server, b"POST /deploy HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}"
    )
    assert code == 400 and "ended after 2 of the 100 bytes" in body["detail"]


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 2\r\nContent-Length: 2\r\n",
        b"Content-Length: 2\r\nContent-Length: 40\r\n",
        b"Content-Length: 2, 40\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
        b"Transfer-Encoding: chunked\r\n",
    ],
)
def test_a_body_whose_length_is_ambiguous_is_refused_not_smuggled(server: Any, framing: bytes) -> None:
    """Two Content-Length headers (or one with two values), or a Transfer-Encoding this server does
    not decode: a proxy in front could take a different length than this server and pass the rest
    on as a second request (request smuggling, RFC 9112 section 6.3 and 11.2). Refused, connection closed."""
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"{}"
    request = b"POST /deploy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing + b"\r\n" + body
    with socket.create_connection((LOOPBACK, server.server.server_address[1]), timeout=10) as conn:
        conn.sendall(request + smuggled)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 ") == 1, "one answer: the bytes after the refused request are never read"
    head, _, answer = data.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 501 "))
    assert b"Connection: close" in head
    detail = json.loads(answer)["detail"]
    assert "Content-Length" in detail or "Transfer-Encoding" in detail


def test_an_http_0_9_request_is_answered_in_http_1_1_and_closed(server: Any) -> None:
    """`GET /health` with no version is HTTP/0.9, which has no status line: the answer says, in
    HTTP/1.1, which versions to send, and the connection is closed."""
    code, headers, body = raw_exchange(server, b"GET /health\r\n")
    assert (code, headers["connection"], headers["content-type"]) == (505, "close", "application/json")
    assert "HTTP/0.9" in body["detail"] and "send HTTP/1.0 or HTTP/1.1" in body["detail"]
