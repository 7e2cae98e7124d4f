"""Benchmark: the local stack's HTTP server under load, Chalice's own server as the baseline, side by side.

Both servers serve the real app (`import app`) in their own process on 127.0.0.1, one after the
other at each level, so that machine noise hits both:

- `chalice`: `chalice.local.create_local_server` as the stack used it (listen backlog 5, no read
  timeout);
- `esdeploy`: `esdeploy.local.http_server.create_api_server` (backlog 1024, 30 s read timeout).

Phases, each bounded in requests and seconds, so the script stops by itself:

1. N clients (8, 32, 64), each sending GET /health on a new connection, back to back: p50/p99/max.
2. A burst: 128 clients connect at the same moment, one request each: the slowest answer.
3. 64 silent connections (a client that connects and sends nothing), then 8 clients as in 1:
   latency while they are held, and how many of them the server has closed after its read timeout.

    .venv/bin/python bench/local_api_load.py                  # about 2-4 minutes on 2 cores
    .venv/bin/python bench/local_api_load.py --requests 20 --levels 8,32
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from esdeploy.local.processes import LOOPBACK, free_port  # noqa: E402

SERVERS = ("chalice", "esdeploy")
REQUEST_TIMEOUT = 30.0  # a client gives up after this (counted as a failure)
PHASE_LIMIT = 60.0  # no phase runs longer: clients still going stop at their next request
SILENT_TIMEOUT = 2.0  # the new server's read timeout in phase 3 (the stack's is 30 s)


def serve(kind: str, port: int, read_timeout: float) -> None:
    """The server process: the app on loopback until killed."""
    from app import app

    if kind == "chalice":
        from chalice.config import Config
        from chalice.local import create_local_server

        server = create_local_server(app, Config.create(chalice_stage="local", app_name="esdeploy", chalice_app=app),
                                     LOOPBACK, port)
    else:
        from esdeploy.local.http_server import create_api_server

        server = create_api_server(app, LOOPBACK, port, read_timeout=read_timeout)
    server.serve_forever()


@contextmanager
def server_process(kind: str, read_timeout: float = 30.0) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "ESDEPLOY_API_AUTH": "none", "POWERTOOLS_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--read-timeout", str(read_timeout)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the {kind} server did not start")
        yield port
    finally:
        process.kill()
        process.wait(timeout=30)


def get_health(port: int) -> float | None:
    """One GET /health on a new connection: seconds until the whole answer was read, None on failure."""
    started = time.perf_counter()
    try:
        with socket.create_connection((LOOPBACK, port), timeout=REQUEST_TIMEOUT) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
    except OSError:
        return None
    return time.perf_counter() - started if data.startswith(b"HTTP/1.1 200") else None


def run_clients(clients: int, requests_each: int, work: Callable[[], float | None]) -> tuple[list[float], int, float]:
    """`clients` threads, each calling `work` up to `requests_each` times; (latencies, failures, seconds)."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    start = threading.Barrier(clients)
    stop_at = time.monotonic() + PHASE_LIMIT

    def client() -> None:
        nonlocal failures
        start.wait()
        for _ in range(requests_each):
            if time.monotonic() > stop_at:
                return
            took = work()
            with lock:
                if took is None:
                    failures += 1
                else:
                    latencies.append(took)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PHASE_LIMIT + REQUEST_TIMEOUT + 5)
    return latencies, failures, time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def row(label: str, kind: str, result: tuple[list[float], int, float], extra: str = "") -> str:
    latencies, failures, seconds = result
    ms = [x * 1000 for x in latencies]
    return (f"{label:<16}{kind:<10}{len(ms):>8}{failures:>6}{len(ms) / seconds:>8.0f}{percentile(ms, 0.5):>9.1f}"
            f"{percentile(ms, 0.99):>10.1f}{(max(ms) if ms else float('nan')):>10.1f}  {extra}").rstrip()


def silent_phase(kind: str, requests_each: int) -> str:
    with server_process(kind, read_timeout=SILENT_TIMEOUT) as port:
        silent = [socket.create_connection((LOOPBACK, port), timeout=5) for _ in range(64)]
        try:
            result = run_clients(8, requests_each, functools.partial(get_health, port))
            time.sleep(SILENT_TIMEOUT + 1)
            closed = 0
            for conn in silent:
                conn.setblocking(False)
                with contextlib.suppress(BlockingIOError):  # still open: the server still waits for it
                    closed += conn.recv(1) == b""
            return row("8 + 64 silent", kind, result, f"silent ones closed: {closed}/64")
        finally:
            for conn in silent:
                conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="8,32,64")
    parser.add_argument("--requests", type=int, default=40, help="requests per client in phases 1 and 3")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--read-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.read_timeout)
        return
    load = os.getloadavg()[0]
    print(f"GET /health on 127.0.0.1, a new connection per request; {os.cpu_count()} cores, load {load:.1f}")
    header = ("clients", "server", "answers", "fails", "req/s", "p50 ms", "p99 ms", "max ms")
    print("".join(f"{name:<{width}}" if width > 0 else f"{name:>{-width}}"
                  for name, width in zip(header, (16, 10, -8, -6, -8, -9, -10, -10), strict=True)))
    results: dict[tuple[str, str], float] = {}
    for level in (int(x) for x in args.levels.split(",")):
        for kind in SERVERS:
            with server_process(kind) as port:
                result = run_clients(level, args.requests, functools.partial(get_health, port))
            results[(str(level), kind)] = percentile(result[0], 0.99)
            print(row(str(level), kind, result), flush=True)
    for kind in SERVERS:
        with server_process(kind) as port:
            result = run_clients(128, 1, functools.partial(get_health, port))
        print(row("128 at once", kind, result), flush=True)
    for kind in SERVERS:
        print(silent_phase(kind, args.requests), flush=True)
    print("p99, chalice / esdeploy: " + ", ".join(
        f"{level} clients {results[(level, 'chalice')] / results[(level, 'esdeploy')]:.1f}x"
        for level in args.levels.split(",")
    ))


if __name__ == "__main__":
    main()
