"""A cold API function answers its read routes without importing boto3: the stdlib DynamoDB client serves them."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Building any of these is what the stdlib client spares a read route's first request (bench/coldstart.py).
HEAVY_MODULES = ("boto3", "botocore.session", "botocore.client", "urllib3", "pydantic_settings")
READ_ROUTES = [
    ("/deploy/{task_id}", "/deploy/t1", {"task_id": "t1"}, 404),
    ("/deploy-status/{embedding_model_id}", "/deploy-status/m1", {"embedding_model_id": "m1"}, 404),
    ("/delete/{task_id}", "/delete/t1", {"task_id": "t1"}, 404),
    ("/delete-status/{embedding_model_id}", "/delete-status/m1", {"embedding_model_id": "m1"}, 404),
    ("/models", "/models", {}, 200),
    ("/models/{embedding_model_id}", "/models/m1", {"embedding_model_id": "m1"}, 404),
]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coldstart_bench", ROOT / "bench" / "coldstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


@pytest.fixture(scope="module")
def dynamodb_stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BENCH.DynamoDbStandIn)
    threading.Thread(target=server.serve_forever, name="dynamodb-stand-in", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _first_request(snippet: str, endpoint: str, extra: dict[str, str] | None = None) -> list[str]:
    """The heavy modules a fresh interpreter holds after answering `snippet`'s request."""
    report = f"import json, sys\nprint(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))"
    program = snippet + "\n" + report
    # A Lambda's environment: no developer's AWS or esdeploy settings, and no proxy (with one, boto3 is built).
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("AWS_", "ESDEPLOY_")) and not name.lower().endswith("_proxy")}
    env.update(BENCH.ENV, AWS_ENDPOINT_URL=endpoint, **(extra or {}))
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(("resource", "path", "params", "status"), READ_ROUTES, ids=[r[1] for r in READ_ROUTES])
def test_a_read_routes_first_request_imports_no_boto3(
    dynamodb_stand_in: str, resource: str, path: str, params: dict[str, str], status: int
) -> None:
    snippet = BENCH.request_snippet(resource, path, params, status)
    assert _first_request(snippet, dynamodb_stand_in) == []


def test_with_the_boto3_client_chosen_the_same_request_builds_boto3(dynamodb_stand_in: str) -> None:
    """The check above can see boto3: choosing it (ESDEPLOY_DYNAMODB_CLIENT=boto3) loads it."""
    loaded = _first_request(BENCH.FIRST_REQUEST, dynamodb_stand_in, {"ESDEPLOY_DYNAMODB_CLIENT": "boto3"})
    assert {"boto3", "botocore.client", "urllib3"} <= set(loaded)


def test_credentials_only_in_a_profile_fall_back_to_boto3(dynamodb_stand_in: str, tmp_path: Path) -> None:
    """A laptop's profile, not a Lambda's environment: boto3 finds those credentials, so boto3 is built."""
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"), "AWS_ACCESS_KEY_ID": "",
           "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}
    assert "boto3" in _first_request(BENCH.FIRST_REQUEST, dynamodb_stand_in, env)
