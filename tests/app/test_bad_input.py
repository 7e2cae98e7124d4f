"""Bad input is the caller's error, never ours: hostile bodies, invoke mistakes, the endpoint's own
refusals, a slow endpoint, SageMaker's limits (issues 15 and 11: 3.7, 3.8)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.adapters.sagemaker_hosting import RUNTIME_CONFIG, SageMakerHosting
from chalicelib.api.schemas import IMAGE_URI_MAX
from chalicelib.config import API_GATEWAY_LIMIT_SECONDS, MAX_INVOKE_TIMEOUT_SECONDS, load_settings
from chalicelib.domain.answer_size import SYNC_ANSWER_LIMIT_BYTES, texts_that_fit
from chalicelib.domain.errors import EndpointRefusedError
from chalicelib.domain.invoke_rules import MAX_TEXT_CHARS as INVOKE_MAX_TEXT_CHARS
from chalicelib.domain.invoke_rules import MAX_TEXTS_PER_REQUEST as INVOKE_MAX_TEXTS
from chalicelib.domain.models import Alias, Stage
from chalicelib.domain.names import variant_name
from chalicelib.ports import VariantSpec
from tests.fakes.artifacts import minimal_manifest, publish_in_memory
from tests.fakes.fake_hosting import Answer, FakeHosting, fake_embedding
from tests.unit.state_machine import PROBES, deploy_at, live_deploy

ROOT = Path(__file__).resolve().parents[2]
JSON = {"Content-Type": "application/json"}
NESTED = "[" * 1000 + "]" * 1000  # about 2 KB


def post(client: Client, path: str, body: Any) -> Any:
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.http.post(path, headers=JSON, body=raw)


@pytest.fixture
def live(memory_adapters: wiring.Adapters) -> Iterator[tuple[Client, FakeHosting, str]]:
    """Model `m1` live on a fake endpoint."""
    hosting = FakeHosting(dimension=4)
    endpoint = variant_name(memory_adapters.settings.resource_prefix, "m1", "t1")
    hosting.create_variant(
        VariantSpec(endpoint, "m1", "t1", "s3://bucket/m1/model.tar.gz", "image", "ml.g5.xlarge", 1)
    )
    memory_adapters.hosting_factory = lambda: hosting
    memory_adapters.aliases.swap(Alias("m1", endpoint, None, "t1", memory_adapters.clock.now()), expected_version=0)
    with Client(app) as client:
        yield client, hosting, endpoint


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/deploy", NESTED),
        ("/delete", NESTED),
        ("/models/m1/invoke", NESTED),
        ("/deploy", '{"model_id": "m1", "config": ' + NESTED + "}"),
        ("/models/m1/invoke", '{"inputs": ' + NESTED + "}"),
    ],
)
def test_deeply_nested_brackets_are_a_400_not_a_500(live: Any, path: str, body: str) -> None:
    client, hosting, _ = live
    answer = post(client, path, body)
    assert answer.status_code == 400, answer.body
    assert answer.json_body == {
        "detail": "request body nests arrays or objects too deeply to read; no request of this API nests "
        "more than 3 levels",
        "field": "body",
    }
    assert hosting.count("invoke") == 0


@pytest.mark.parametrize(
    ("body", "detail", "field"),
    [
        ({"inputs": ["x"] * 10_000}, f"too many texts: 10000 > {INVOKE_MAX_TEXTS}; split the request", "inputs"),
        ({"inputs": []}, "inputs is an empty list; send at least one text", "inputs"),
        ({"inputs": ["fine", 3]}, "inputs[1] is a number, not a string", "inputs"),
        ({"inputs": [None]}, "inputs[0] is null, not a string", "inputs"),
        ({"inputs": {"text": "x"}}, "inputs must be a string or a list of strings, not an object", "inputs"),
        ({"inputs": ["x" * (INVOKE_MAX_TEXT_CHARS + 1)]},
         f"inputs[0] has {INVOKE_MAX_TEXT_CHARS + 1} characters, over the limit of {INVOKE_MAX_TEXT_CHARS}", "inputs"),
        ({"inputs": ["x"], "normalise": True}, "unknown field `normalise`", "normalise"),
        ({"inputs": ["x"], "truncate": "no"}, "field `truncate`: Input should be a valid boolean", "truncate"),
        ({"text": "x"}, "field `inputs` is required", "inputs"),
    ],
)
def test_invoke_mistakes_are_422_naming_them_and_never_reach_the_endpoint(
    live: Any, body: dict[str, Any], detail: str, field: str
) -> None:
    client, hosting, _ = live
    answer = post(client, "/models/m1/invoke", body)
    assert (answer.status_code, answer.json_body) == (422, {"detail": detail, "field": field})
    assert hosting.count("invoke") == 0


@pytest.mark.parametrize(
    ("raw", "where"),
    [('{"inputs": ["ok", "a\\ud800b"]}', "inputs[1] holds a lone surrogate (U+D800) at character 1"),
     ('{"inputs": "\\udfff"}', "inputs holds a lone surrogate (U+DFFF) at character 0")],
)
def test_a_lone_surrogate_is_refused_before_it_crashes_the_tokenizer(live: Any, raw: str, where: str) -> None:
    client, hosting, _ = live
    answer = post(client, "/models/m1/invoke", raw)
    assert answer.status_code == 422
    assert answer.json_body["detail"] == f"{where}, which is not Unicode text"
    assert hosting.count("invoke") == 0


def test_the_endpoints_own_refusal_is_passed_on_as_a_422_with_its_words(live: Any) -> None:
    """What only the endpoint can know (here: a text over the model's token window with truncate: false)."""
    client, hosting, endpoint = live

    def refuse(name: str, _payload: dict[str, Any]) -> dict[str, Any]:
        raise EndpointRefusedError(name, 400, "inputs[0] is 600 tokens, over the model's limit of 256")

    hosting.script(None, answers=[refuse])
    answer = post(client, "/models/m1/invoke", {"inputs": ["word " * 600], "truncate": False})
    assert answer.status_code == 422
    assert answer.json_body == {
        "detail": f"endpoint {endpoint} refused the request (400): "
        "inputs[0] is 600 tokens, over the model's limit of 256"
    }


def test_the_endpoints_own_failure_is_a_502(live: Any) -> None:
    client, hosting, _ = live
    hosting.script(None, answers=[Answer.INVOCATION_ERROR])
    failed = post(client, "/models/m1/invoke", {"inputs": ["x"]})
    assert failed.status_code == 502 and "failed the request" in failed.json_body["detail"]
    hosting.script(None, answers=[lambda _name, _payload: {"vectors": [[1.0]]}])
    odd = post(client, "/models/m1/invoke", {"inputs": ["x"]})
    assert odd.status_code == 502 and "`embeddings`" in odd.json_body["detail"]


def test_a_good_invoke_sends_the_endpoint_only_what_the_caller_set(live: Any) -> None:
    client, hosting, endpoint = live
    seen: list[dict[str, Any]] = []

    def record(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {"embeddings": [[1.0, 0.0, 0.0, 0.0]], "model": "m1", "dimension": 4}

    hosting.script(None, answers=[record])
    answer = post(client, "/models/m1/invoke", {"inputs": "hello", "normalize": True})
    assert answer.status_code == 200
    assert answer.json_body == {"embeddings": [[1.0, 0.0, 0.0, 0.0]], "model": "m1", "dimension": 4,
                                "endpoint_name": endpoint, "serving": "handler"}
    assert seen == [{"inputs": "hello", "normalize": True}]


def test_invoke_limits_are_the_serving_handlers() -> None:
    """The API checks what the endpoint's handler would refuse: the same numbers (its defaults).

    Read in a fresh interpreter without the override variables: reloading `serving.inference` here
    would give its error classes new identities under the other tests' feet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESDEPLOY_SERVING_")}
    probe = "from serving import inference; print(inference.MAX_TEXTS, inference.MAX_TEXT_CHARS)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert (int(out[0]), int(out[1])) == (INVOKE_MAX_TEXTS, INVOKE_MAX_TEXT_CHARS)


# ---- 3.8: SageMaker's limits at the API -------------------------------------------------------


LARGE_DIMENSION = 2048  # a model whose 256 answers would be about 12 MB


@pytest.fixture
def large_model(memory_adapters: wiring.Adapters) -> Iterator[tuple[Client, FakeHosting]]:
    """Model `m1` deployed by the workers with a 2048-dimensional artifact: its alias keeps the
    dimension its green answered with."""
    dimension = LARGE_DIMENSION
    manifest = minimal_manifest("m1", 1, dimension, PROBES, embed=lambda text: fake_embedding(text, dimension))
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m1", manifest)
    hosting = FakeHosting(dimension=dimension)
    memory_adapters.hosting_factory = lambda: hosting
    live_deploy(memory_adapters, "m1")
    alias = memory_adapters.aliases.get("m1")
    assert alias is not None and alias.live_dimension == dimension
    with Client(app) as client:
        yield client, hosting


def test_an_invoke_whose_answer_would_pass_6_mb_is_a_413_saying_how_many_texts_fit(
    large_model: tuple[Client, FakeHosting],
) -> None:
    client, hosting = large_model
    fit = texts_that_fit(LARGE_DIMENSION)
    calls = hosting.count("invoke")
    answer = post(client, "/models/m1/invoke", {"inputs": ["some text"] * INVOKE_MAX_TEXTS})
    assert answer.status_code == 413, answer.json_body
    assert answer.json_body["field"] == "inputs"
    detail = answer.json_body["detail"]
    assert f"{INVOKE_MAX_TEXTS} texts would make an answer of about" in detail
    assert f"{LARGE_DIMENSION}-dimensional" in detail and f"send at most {fit} texts per request" in detail
    assert hosting.count("invoke") == calls  # the endpoint was never asked
    fits = post(client, "/models/m1/invoke", {"inputs": ["some text"] * fit})
    assert fits.status_code == 200, fits.json_body
    assert len(fits.json_body["embeddings"]) == fit and len(fits.body) <= SYNC_ANSWER_LIMIT_BYTES


def test_a_rollback_bounds_the_invoke_by_the_dimension_of_the_variant_it_makes_live(
    memory_adapters: wiring.Adapters,
) -> None:
    hosting = FakeHosting(dimension=4)
    prefix = memory_adapters.settings.resource_prefix
    blue, green = variant_name(prefix, "m1", "t1"), variant_name(prefix, "m1", "t2")
    for name, task in ((blue, "t1"), (green, "t2")):
        hosting.create_variant(VariantSpec(name, "m1", task, "s3://bucket/m1/model.tar.gz", "image", "ml.g5.xlarge", 1))
    memory_adapters.hosting_factory = lambda: hosting
    memory_adapters.aliases.swap(
        Alias("m1", green, blue, "t2", memory_adapters.clock.now(), live_dimension=4096, previous_dimension=384),
        expected_version=0,
    )
    texts = {"inputs": ["x"] * INVOKE_MAX_TEXTS}
    with Client(app) as client:
        assert post(client, "/models/m1/invoke", texts).status_code == 413  # 4096 dimensions: 60 fit
        assert post(client, "/models/m1/rollback", {}).status_code == 200
        assert post(client, "/models/m1/invoke", texts).status_code == 200  # 384 dimensions: all 256 fit


def test_a_candidate_is_bounded_by_its_own_dimension(
    memory_adapters: wiring.Adapters, large_model: tuple[Client, FakeHosting]
) -> None:
    client, _hosting = large_model
    deploy_at(memory_adapters, Stage.AWAITING_PROMOTION, "m1", promotion="manual")
    fit = texts_that_fit(LARGE_DIMENSION)
    body = {"inputs": ["x"] * (fit + 1), "target": "candidate"}
    answer = post(client, "/models/m1/invoke", body)
    assert answer.status_code == 413 and f"send at most {fit} texts" in answer.json_body["detail"]


def test_an_image_uri_over_sagemakers_255_characters_is_a_422_naming_the_field(memory_adapters: Any) -> None:
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m1")
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com/"
    image = registry + "r" * (IMAGE_URI_MAX + 1 - len(registry) - len(":1")) + ":1"
    assert len(image) == IMAGE_URI_MAX + 1 == 256
    with Client(app) as client:
        answer = post(client, "/deploy", {"model_id": "m1", "config": {"image_uri": image}})
        assert answer.status_code == 422
        assert answer.json_body == {
            "detail": "field `config.image_uri`: String should have at most 255 characters",
            "field": "config.image_uri",
        }
        longest = registry + "r" * (IMAGE_URI_MAX - len(registry) - len(":1")) + ":1"
        # A stage whose serving repository has so long a name: the execution role may pull only from it.
        memory_adapters.settings = memory_adapters.settings.model_copy(
            update={"default_image_uri": longest.removesuffix(":1") + ":0"}
        )
        fits = post(client, "/deploy", {"model_id": "m1", "config": {"image_uri": longest}})
        assert fits.status_code == 200


# ---- 3.7: the invoke route stays under API Gateway's 29 s ---------------------------------------


class SlowRuntime:
    """A SageMaker Runtime on loopback that takes `delay` seconds to answer; counts what it got."""

    def __init__(self, delay: float) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("content-length", "0")))
                time.sleep(delay)
                body = json.dumps({"embeddings": [[1.0]], "model": "m1", "dimension": 1}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller gave up, as it should

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_endpoint(aws_adapters: wiring.Adapters) -> Iterator[tuple[SlowRuntime, str]]:
    """The real SageMaker adapter, its runtime client pointed at a slow endpoint on loopback (moto
    lets a call to an address it does not serve through); a 1 s budget."""
    memory_adapters = aws_adapters
    runtime = SlowRuntime(delay=4.0)
    client = boto3.client(
        "sagemaker-runtime", endpoint_url=runtime.url, region_name="us-east-1", config=RUNTIME_CONFIG,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    hosting = SageMakerHosting(boto3.client("sagemaker", region_name="us-east-1"), client, role_arn="arn")
    memory_adapters.settings = memory_adapters.settings.model_copy(update={"invoke_timeout_seconds": 1})
    memory_adapters.hosting_factory = lambda: hosting
    endpoint = variant_name(memory_adapters.settings.resource_prefix, "m1", "t1")
    memory_adapters.aliases.swap(Alias("m1", endpoint, None, "t1", memory_adapters.clock.now()), expected_version=0)
    yield runtime, endpoint
    runtime.close()


def test_a_slow_endpoint_is_a_504_within_the_budget_and_asked_once(slow_endpoint: tuple[SlowRuntime, str]) -> None:
    runtime, endpoint = slow_endpoint
    with Client(app) as client:
        answer = post(client, "/models/m1/invoke", {"inputs": ["x"]})
    assert answer.status_code == 504, answer.body
    assert answer.json_body == {"detail": f"endpoint {endpoint} did not answer in 1 s"}
    assert runtime.requests == 1, "a retry would double the wait past API Gateway's 29 s"


def test_the_invoke_budget_fits_api_gateways_29_seconds() -> None:
    """Setting at its maximum + the bounded client's connect timeout, and the API function's own
    timeout: all under the gateway's limit, with time left for the alias read and a cold start."""
    hosting = SageMakerHosting(
        boto3.client("sagemaker", region_name="us-east-1"),
        boto3.client("sagemaker-runtime", region_name="us-east-1", config=RUNTIME_CONFIG),
        role_arn="arn",
    )
    bounded = hosting._runtime_within(MAX_INVOKE_TIMEOUT_SECONDS).meta.config
    assert bounded.retries["total_max_attempts"] == 1
    worst = bounded.connect_timeout + bounded.read_timeout
    assert worst <= API_GATEWAY_LIMIT_SECONDS - 4
    stage = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert stage["lambda_functions"]["api_handler"]["lambda_timeout"] <= API_GATEWAY_LIMIT_SECONDS
    with pytest.raises(Exception, match="ESDEPLOY_INVOKE_TIMEOUT_SECONDS"):
        load_settings({**_required(), "ESDEPLOY_INVOKE_TIMEOUT_SECONDS": str(MAX_INVOKE_TIMEOUT_SECONDS + 1)})
    assert load_settings(_required()).invoke_timeout_seconds == 20


def _required() -> dict[str, str]:
    from tests.conftest import TEST_ENV

    return dict(TEST_ENV)
