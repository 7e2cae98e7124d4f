"""Benchmark: the Lambda's cold start (`import app`) and its first request, next to `import chalice, boto3`.

Each sample is a fresh interpreter, and the three are interleaved so that machine noise hits each
alike. "first request" is what a cold API function does before it answers `GET /deploy/{task_id}`:
import app, then Chalice's Lambda entry point with API Gateway's event, which builds the service, its
DynamoDB table and client, and makes the one GetItem (answered by a DynamoDB stand-in on loopback,
so the network is not measured). The functions' environment is the prod stage's (.chalice/config.json),
so the client is the one a deployed function builds (the stdlib DynamoDB client).
Ratios are against the baseline's fastest run, of the fastest run of
each (noise only ever adds), with medians beside them.

Every module is read from bytecode, ours as much as the libraries': a first, uncounted interpreter per
snippet writes it to a private cache (PYTHONPYCACHEPREFIX). Without it the comparison is unfair where
PYTHONDONTWRITEBYTECODE is set (it is on our machines): pip compiled the libraries at install, while
app's own modules were compiled from source at every start (~0.1 s). A Lambda package ships no bytecode
unless it is built with it (docs/testing.md).

Run: .venv/bin/python bench/coldstart.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from esdeploy.local.environment import stage_environment

ROOT = Path(__file__).resolve().parent.parent
# What a deployed API function's environment holds: the prod stage's variables (.chalice/config.json), the
# image that infra/package.sh resolves, and what Lambda itself sets.
ENV = {
    **stage_environment("prod"),
    "ESDEPLOY_DEFAULT_IMAGE_URI": "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "bench",
    "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def request_snippet(resource: str, path: str, params: dict[str, str], status: int) -> str:
    """Python that imports app and answers one API Gateway GET as a cold Lambda would, asserting its status."""
    event = {
        "resource": resource, "path": path, "httpMethod": "GET", "headers": {"Host": "x"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": params or None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": resource, "httpMethod": "GET", "stage": "api",
                           "requestId": "r1", "identity": {"sourceIp": "127.0.0.1"}},
    }
    return f"""
import app
class Context:
    function_name, function_version, memory_limit_in_mb = "api_handler", "1", 512
    invoked_function_arn, aws_request_id = "arn:aws:lambda:us-east-1:123456789012:function:x", "r1"
    def get_remaining_time_in_millis(self):
        return 29000
answer = app.app({event!r}, Context())
assert answer["statusCode"] == {status}, answer
"""


# The route the bench times: a task that is not there (one GetItem).
FIRST_REQUEST = request_snippet("/deploy/{task_id}", "/deploy/t1", {"task_id": "t1"}, 404)
SNIPPETS = {
    "chalice + boto3": "import chalice, boto3",
    "import app": "import app",
    "first request": FIRST_REQUEST,
}


class DynamoDbStandIn(BaseHTTPRequestHandler):
    """Answers as an empty table does: GetItem finds nothing, Query and Scan find no items."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        body = b'{"Items": [], "Count": 0, "ScannedCount": 0}' if operation in {"Query", "Scan"} else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def sample(code: str, endpoint: str, bytecode: str) -> float:
    program = f"import time\nstart = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(ENV, AWS_ENDPOINT_URL=endpoint, PYTHONPYCACHEPREFIX=bytecode)
    out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"sample failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), DynamoDbStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    times: dict[str, list[float]] = {name: [] for name in SNIPPETS}
    with tempfile.TemporaryDirectory(prefix="coldstart-bytecode-") as bytecode:
        try:
            for code in SNIPPETS.values():
                sample(code, endpoint, bytecode)  # writes the bytecode; not counted
            for _ in range(args.repeats):
                for name, code in SNIPPETS.items():
                    times[name].append(sample(code, endpoint, bytecode))
        finally:
            server.shutdown()
    fastest = min(times["chalice + boto3"])
    baseline_median = statistics.median(times["chalice + boto3"])
    rows = [
        {"what": name, "fastest_ms": round(min(values) * 1000, 1),
         "median_ms": round(statistics.median(values) * 1000, 1),
         "x_baseline_fastest": round(min(values) / fastest, 2),
         "x_baseline_median": round(statistics.median(values) / baseline_median, 2)}
        for name, values in times.items()
    ]
    if args.json:
        print(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2))
        return
    print(f"{args.repeats} fresh interpreters each, interleaved")
    print(f"{'':<18}{'fastest ms':>11}{'median ms':>11}{'x fastest':>11}{'x median':>10}")
    for row in rows:
        print(f"{row['what']:<18}{row['fastest_ms']:>11.1f}{row['median_ms']:>11.1f}"
              f"{row['x_baseline_fastest']:>11.2f}{row['x_baseline_median']:>10.2f}")


if __name__ == "__main__":
    main()
