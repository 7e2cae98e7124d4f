"""The embedder: the alias read from SSM as the product writes it, cached, re-read once when its endpoint is gone."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.ssm_mirror import SsmAliasMirror
from chalicelib.domain.answer_size import (
    SYNC_ANSWER_LIMIT_BYTES,
    answer_bytes,
    texts_that_fit,
)
from chalicelib.domain.invoke_rules import MAX_REQUEST_BYTES, MAX_TEXTS_PER_REQUEST
from chalicelib.domain.models import Alias
from esdeploy import EndpointRefusedError, ModelNotDeployedError
from esdeploy.embedder import FIRST_BATCH_DIMENSION, Embedder, EmbedderError
from tests.client.runtime import CountingSsm, StubRuntime, model_error

PREFIX = "/esdeploy/test"
BLUE, GREEN = "esd-m1-aaaa-blue", "esd-m1-aaaa-green"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class World:
    """SSM (moto) with the product's own mirror writing the alias, and the endpoints that exist now."""

    def __init__(self, ssm: Any) -> None:
        self.mirror = SsmAliasMirror(ssm, PREFIX)
        self.ssm = CountingSsm(ssm)
        self.up: set[str] = set()
        self.refusals: dict[str, Any] = {}
        self.runtime = StubRuntime(self.answer)
        self.clock = Clock()
        self.dimension = 2
        self.after_each_answer: Any = None

    def answer(self, name: str, payload: dict[str, Any]) -> Any:
        if name in self.refusals:
            return self.refusals[name]
        if name not in self.up:
            return None
        # A text that is a number comes back as a vector that starts with it: order can be checked.
        vectors = [[float(t) if t.isdigit() else 1.0] + [0.0] * (self.dimension - 1) for t in payload["inputs"]]
        if self.after_each_answer is not None:
            self.after_each_answer()
        return {"embeddings": vectors, "dimension": self.dimension, "served_by": name}

    def swap(self, live: str | None, previous: str | None = None) -> None:
        self.mirror.publish(Alias("m1", live, previous, "t1", datetime.now(UTC)))

    def embedder(self, ttl: float = 10.0, **options: Any) -> Embedder:
        return Embedder("m1", ssm=self.ssm, runtime=self.runtime, ssm_prefix=PREFIX, ttl_seconds=ttl,
                        clock=self.clock, **options)


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World(boto3.client("ssm", region_name="us-east-1"))


def test_it_embeds_with_the_endpoint_the_alias_names(world: World) -> None:
    world.up = {BLUE}
    world.swap(BLUE)
    answer = world.embedder().embed(["hello", "world"], normalize=False)
    assert answer.endpoint_name == BLUE and answer.dimension == 2 and len(answer.vectors) == 2
    assert world.runtime.calls == [(BLUE, {"inputs": ["hello", "world"], "normalize": False})]


def test_the_alias_is_read_once_per_ttl(world: World) -> None:
    world.up = {BLUE, GREEN}
    world.swap(BLUE)
    embedder = world.embedder(ttl=10)
    embedder.embed(["a"])
    world.swap(GREEN, BLUE)
    world.clock.now += 9
    embedder.embed(["b"])  # within the TTL: the cached alias, blue still serves during the bake
    world.clock.now += 2
    embedder.embed(["c"])  # TTL over: read again
    assert world.runtime.endpoints == [BLUE, BLUE, GREEN]
    assert world.ssm.reads == 2


def test_after_a_swap_and_the_old_variants_teardown_the_call_goes_to_the_new_one(world: World) -> None:
    world.up = {BLUE}
    world.swap(BLUE)
    embedder = world.embedder(ttl=3600)
    assert embedder.embed(["before"]).endpoint_name == BLUE
    world.up = {BLUE, GREEN}
    world.swap(GREEN, BLUE)
    world.up = {GREEN}  # bake over: blue torn down, while the embedder still has it cached
    answer = embedder.embed(["after"])
    assert answer.endpoint_name == GREEN
    assert world.runtime.endpoints == [BLUE, BLUE, GREEN]  # refused once, re-resolved, sent again
    assert embedder.re_resolved == 1
    assert embedder.embed(["next"]).endpoint_name == GREEN and world.ssm.reads == 2  # the new name is cached


def test_a_rollback_that_tears_down_the_cached_variant_is_followed_too(world: World) -> None:
    world.up = {BLUE, GREEN}
    world.swap(GREEN, BLUE)
    embedder = world.embedder(ttl=3600)
    assert embedder.embed(["x"]).endpoint_name == GREEN
    world.swap(BLUE)
    world.up = {BLUE}
    assert embedder.embed(["x"]).endpoint_name == BLUE


def test_a_refusal_while_the_alias_still_names_the_endpoint_is_raised_not_retried(world: World) -> None:
    world.swap(BLUE)  # the alias names an endpoint that does not answer: nothing to move to
    embedder = world.embedder()
    with pytest.raises(EndpointRefusedError, match=f"{BLUE}.*ValidationError.*not found") as raised:
        embedder.embed(["x"])
    assert raised.value.code == "ValidationError"
    assert world.runtime.endpoints == [BLUE]
    assert embedder.re_resolved == 0


def test_a_model_error_is_the_models_not_the_aliases(world: World) -> None:
    world.swap(BLUE)
    world.refusals[BLUE] = model_error(BLUE, 400, "input too long")
    embedder = world.embedder()
    with pytest.raises(EndpointRefusedError, match=r"ModelError.*input too long") as raised:
        embedder.embed(["x"])
    assert raised.value.code == "ModelError" and raised.value.endpoint_name == BLUE
    assert world.ssm.reads == 1  # no second look at the alias


def test_a_deleted_model_says_so_and_names_the_parameter(world: World) -> None:
    world.up = {BLUE}
    world.swap(BLUE)
    embedder = world.embedder(ttl=3600)
    embedder.embed(["x"])
    world.swap(None)  # a delete removes the parameter
    world.up = set()
    with pytest.raises(ModelNotDeployedError, match=f"`m1` is not deployed.*{PREFIX}/models/m1/endpoint"):
        embedder.embed(["x"])


def test_a_model_never_deployed_is_not_deployed(world: World) -> None:
    with pytest.raises(ModelNotDeployedError):
        world.embedder().embed(["x"])
    assert world.runtime.calls == []


@pytest.mark.parametrize("texts", [[], "a string, not a list"])
def test_texts_must_be_a_non_empty_list(world: World, texts: Any) -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        world.embedder().embed(texts)


def tei_answer(name: str, payload: dict[str, Any]) -> Any:
    """TEI: a bare list of vectors, one per input; more than 32 inputs is its 413 (a ModelError through SageMaker)."""
    inputs = payload["inputs"]
    if len(inputs) > 32:
        return model_error(name, 413, '{"error":"batch size > maximum allowed batch size 32"}')
    return [[float(text.split()[-1]), 1.0] for text in inputs]


def test_a_batch_goes_to_tei_in_requests_of_32_and_comes_back_in_order(world: World) -> None:
    world.swap(BLUE)
    world.runtime = StubRuntime(lambda name, payload: tei_answer(name, payload) if name == BLUE else None)
    texts = [f"text {i}" for i in range(70)]

    answer = world.embedder().embed(texts)

    # At most 32 a request; the first one is sized for the largest dimension assumed (30 of 8192 fit 6 MB).
    assert [len(payload["inputs"]) for _, payload in world.runtime.calls] == [30, 32, 8]
    assert world.runtime.endpoints == [BLUE, BLUE, BLUE]
    assert [vector[0] for vector in answer.vectors] == [float(i) for i in range(70)]
    assert (answer.serving, answer.dimension, answer.endpoint_name) == ("tei", 2, BLUE)


def test_a_variant_gone_mid_batch_sends_the_whole_batch_again_to_the_new_one(world: World) -> None:
    """A handler blue answers the first request, is torn down, the alias names a TEI green: every vector of
    the answer comes from green, never half from each (two versions' vectors are not comparable)."""
    world.swap(GREEN, BLUE)
    served: list[str] = []

    def answer(name: str, payload: dict[str, Any]) -> Any:
        if name == BLUE and not served:
            served.append(name)
            return {"embeddings": [[9.0, 9.0] for _ in payload["inputs"]], "dimension": 2}
        return tei_answer(name, payload) if name == GREEN else None

    world.runtime = StubRuntime(answer)
    embedder = world.embedder(ttl=3600)
    embedder._cached = (BLUE, world.clock.now)  # it read the alias before the swap

    result = embedder.embed([f"text {i}" for i in range(40)])

    assert world.runtime.endpoints == [BLUE, BLUE, GREEN, GREEN]  # refused on blue, then the batch blue answered
    assert result.endpoint_name == GREEN and result.serving == "tei"
    assert [vector[0] for vector in result.vectors] == [float(i) for i in range(40)]


def test_an_answer_of_neither_serving_is_an_embedder_error(world: World) -> None:
    world.swap(BLUE)
    world.runtime = StubRuntime(lambda name, payload: {"error": "nope"})
    with pytest.raises(EmbedderError, match="no usable embeddings: neither serving answers like this"):
        world.embedder().embed(["x"])


def batch_sizes(world: World) -> list[int]:
    return [len(payload["inputs"]) for _, payload in world.runtime.calls]


def test_a_large_models_batch_is_split_so_that_every_answer_fits_6_mb(world: World) -> None:
    """The first batch is sized for the largest dimension assumed (its answer says the model's), the
    next ones by the model's own: 60 vectors of 4096 values a request, never an answer over 6 MB (a
    caller that knows its model is served by the handler lifts the 32 texts TEI takes)."""
    world.up = {BLUE}
    world.swap(BLUE)
    world.dimension = 4096
    texts = [str(i) for i in range(200)]
    answer = world.embedder(max_texts_per_request=MAX_TEXTS_PER_REQUEST).embed(texts)
    assert [vector[0] for vector in answer.vectors] == [float(i) for i in range(200)]
    assert answer.dimension == 4096 and answer.endpoint_name == BLUE
    assert batch_sizes(world) == [texts_that_fit(FIRST_BATCH_DIMENSION), 60, 60, 200 - 30 - 120]
    assert all(answer_bytes(size, 4096) <= SYNC_ANSWER_LIMIT_BYTES for size in batch_sizes(world))


def test_a_small_models_batches_are_as_large_as_the_endpoint_takes(world: World) -> None:
    world.up = {BLUE}
    world.swap(BLUE)
    embedder = world.embedder(max_texts_per_request=MAX_TEXTS_PER_REQUEST)
    embedder.embed([str(i) for i in range(600)])
    assert batch_sizes(world) == [30, MAX_TEXTS_PER_REQUEST, MAX_TEXTS_PER_REQUEST, 600 - 30 - 2 * 256]
    embedder.embed([str(i) for i in range(256)])  # the dimension is known now: one request
    assert batch_sizes(world)[-1] == 256


def test_long_texts_are_split_so_that_each_request_fits_what_the_endpoint_takes(world: World) -> None:
    world.up = {BLUE}
    world.swap(BLUE)
    long_text = "x" * 200_000
    world.embedder().embed([long_text] * 12)
    assert batch_sizes(world) == [5, 5, 2]  # 5 x 200 KB fit the endpoint's 1 MiB request limit
    assert all(len(json.dumps({"inputs": payload["inputs"]})) <= MAX_REQUEST_BYTES
               for _, payload in world.runtime.calls)


def test_when_the_alias_moves_between_batches_every_batch_goes_to_the_new_endpoint(world: World) -> None:
    """Vectors of two variants (perhaps two versions of the model) must never come back mixed."""
    world.up = {BLUE, GREEN}
    world.swap(BLUE)
    embedder = world.embedder(ttl=10, max_texts_per_request=MAX_TEXTS_PER_REQUEST)

    def swap_after_the_first_answer() -> None:
        world.after_each_answer = None
        world.swap(GREEN, BLUE)
        world.clock.now += 11  # the cached alias expires before the next batch

    world.after_each_answer = swap_after_the_first_answer
    answer = embedder.embed([str(i) for i in range(100)])
    assert answer.endpoint_name == GREEN and len(answer.vectors) == 100
    assert [vector[0] for vector in answer.vectors] == [float(i) for i in range(100)]
    assert world.runtime.endpoints == [BLUE, GREEN, GREEN]  # the batch blue answered, again on green
    assert batch_sizes(world) == [30, 70, 30]
