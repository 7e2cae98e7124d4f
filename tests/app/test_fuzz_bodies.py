"""Fuzz: whatever JSON a client sends to the write routes, the answer is 200 or a 4xx that says why.

In-process and fast, with values schemathesis does not draw from the document: NaN, integers past
64 bits, keys of the other routes, deep nesting. tests/e2e/test_contract_fuzz.py runs schemathesis
against the real stack for the document's side."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib import wiring
from tests.fakes.fake_hosting import FakeHosting
from tests.fakes.memory import InMemoryModelLocks, InMemoryQueue

KEYS = ["embedding_model_id", "model_id", "id", "config", "reason", "action", "extra", "inputs", "normalize"]
CONFIG_KEYS = ["instance_type", "initial_instance_count", "model_data_url", "image_uri", "bake_seconds", "gpu"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["m1", "your_model_id", "ml.g5.xlarge", "s3://esdeploy-test-artifacts/models/m1/model.tar.gz"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
configs = st.dictionaries(st.sampled_from(CONFIG_KEYS), values, max_size=4)
nested = st.integers(min_value=1, max_value=3000).map(lambda depth: "[" * depth + "]" * depth)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), st.one_of(values, configs), max_size=5),
    values,
    nested,
)


@pytest.fixture
def client(memory_adapters: wiring.Adapters) -> Any:
    memory_adapters.hosting_factory = FakeHosting  # m1 is not deployed: a good invoke body is a 404
    with Client(app) as test_client:
        yield test_client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/deploy", "/delete", "/models/m1/invoke"]))
def test_write_routes_never_answer_500(
    client: Client, memory_adapters: wiring.Adapters, body: Any, path: str
) -> None:
    try:
        raw = body if isinstance(body, str) and body.startswith("[[") else json.dumps(body)
    except ValueError:
        raw = "{not json"
    answer = client.http.post(path, headers={"Content-Type": "application/json"}, body=raw)
    # 404: an invoke body that passed every check, for a model that is not deployed here
    assert answer.status_code in {200, 400, 404, 409, 413, 422}, (answer.status_code, answer.body)
    payload = json.loads(answer.body)
    if answer.status_code != 200:
        assert isinstance(payload["detail"], str) and payload["detail"]
        assert "Traceback" not in answer.body.decode()
    # Leave the model free for the next example.
    for queue in (memory_adapters.deploy_queue, memory_adapters.teardown_queue):
        assert isinstance(queue, InMemoryQueue)
        queue.drain()
    memory_adapters.locks = InMemoryModelLocks()
