"""Contract suite: FakeHosting, SageMakerHosting (on moto) and LocalHosting keep the same Hosting promises.

Only what all three must agree on is here; the fake's own scripting is checked in tests/fakes, the lifecycle the fake
and LocalHosting share in tests/unit/test_endpoint_lifecycle.py, LocalHosting with real models in tests/serving.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from chalicelib.domain.models import EndpointState
from chalicelib.domain.names import model_name_prefix, variant_name
from chalicelib.domain.serving import Serving
from chalicelib.ports import VariantInfo, VariantSpec
from tests.contract.conftest import INSTANCE_TYPE, HostingHarness
from tests.fakes import fake_embedding

PREFIX = "esd"


def make_spec(model: str = "intfloat/e5-small", task: str = "task-1") -> VariantSpec:
    return VariantSpec(
        name=variant_name(PREFIX, model, task),
        embedding_model_id=model,
        task_id=task,
        model_data_url=f"s3://esdeploy-artifacts/models/{model}/model.tar.gz",
        image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6",
        instance_type=INSTANCE_TYPE,
        initial_instance_count=1,
    )


ALL_THREE = Counter({"model": 1, "endpoint_config": 1, "endpoint": 1})



def test_created_variant_is_in_service(harness: HostingHarness) -> None:
    spec = make_spec()
    harness.hosting.create_variant(spec)

    status = harness.hosting.describe(spec.name)

    assert status.name == spec.name
    assert status.state is EndpointState.IN_SERVICE
    assert status.failure_reason is None


def test_describe_says_how_many_instances_serve(harness: HostingHarness) -> None:
    spec = replace(make_spec(), initial_instance_count=2)
    harness.hosting.create_variant(spec)

    assert harness.hosting.describe(spec.name).instance_count == 2
    assert harness.hosting.describe("esd-nothing-here").instance_count is None


def test_creating_twice_makes_each_part_once(harness: HostingHarness) -> None:
    spec = make_spec()
    harness.hosting.create_variant(spec)
    harness.hosting.create_variant(spec)

    assert harness.creations() == ALL_THREE
    assert [v.name for v in harness.hosting.list_variants(PREFIX)] == [spec.name]


def test_create_finishes_a_half_made_variant_without_remaking_its_parts(harness: HostingHarness) -> None:
    spec = make_spec()
    harness.plant(spec, ["model"])

    harness.hosting.create_variant(spec)

    assert harness.creations() == Counter({"endpoint_config": 1, "endpoint": 1})
    assert harness.hosting.describe(spec.name).state is EndpointState.IN_SERVICE


def test_describe_of_an_unknown_variant_is_missing(harness: HostingHarness) -> None:
    status = harness.hosting.describe("esd-never-made-00000000-00000000")

    assert status.state is EndpointState.MISSING
    assert status.name == "esd-never-made-00000000-00000000"


def test_delete_removes_all_three_parts_and_is_idempotent(harness: HostingHarness) -> None:
    spec = make_spec()
    harness.hosting.create_variant(spec)

    harness.hosting.delete_variant(spec.name)
    harness.hosting.delete_variant(spec.name)

    assert harness.hosting.describe(spec.name).state is EndpointState.MISSING
    assert harness.hosting.list_variants(PREFIX) == []


def test_delete_of_a_variant_that_never_existed_is_fine(harness: HostingHarness) -> None:
    harness.hosting.delete_variant("esd-never-made-00000000-00000000")

    assert harness.hosting.list_variants(PREFIX) == []


@pytest.mark.parametrize("parts", [["model"], ["model", "endpoint_config"]])
def test_delete_of_a_half_made_variant_removes_what_is_there(
    harness: HostingHarness, parts: list[str]
) -> None:
    spec = make_spec()
    harness.plant(spec, parts)

    harness.hosting.delete_variant(spec.name)

    assert harness.hosting.list_variants(PREFIX) == []


def test_list_variants_matches_the_prefix_and_reads_the_owner_tags(harness: HostingHarness) -> None:
    first = make_spec("intfloat/e5-small", "task-1")
    second = make_spec("intfloat/e5-small", "task-2")
    other_model = make_spec("BAAI/bge-small", "task-3")
    for spec in (first, second, other_model):
        harness.hosting.create_variant(spec)
    # Contains the prefix without starting with it: SageMaker's NameContains would match it.
    lookalike = replace(make_spec("x"), name="x" + model_name_prefix(PREFIX, "intfloat/e5-small") + "0")
    harness.plant(lookalike, ["model"])

    found = harness.hosting.list_variants(model_name_prefix(PREFIX, "intfloat/e5-small"))

    assert found == sorted(
        [
            VariantInfo(first.name, "intfloat/e5-small", "task-1", True, True, True),
            VariantInfo(second.name, "intfloat/e5-small", "task-2", True, True, True),
        ],
        key=lambda v: v.name,
    )


def test_list_variants_reports_leftover_parts_with_their_owner(harness: HostingHarness) -> None:
    spec = make_spec()
    harness.plant(spec, ["model", "endpoint_config"])

    (found,) = harness.hosting.list_variants(PREFIX)

    assert found == VariantInfo(
        name=spec.name,
        embedding_model_id=spec.embedding_model_id,
        task_id=spec.task_id,
        has_endpoint=False,
        has_endpoint_config=True,
        has_model=True,
    )


def test_invoke_returns_the_endpoints_json_answer(harness: HostingHarness) -> None:
    spec = make_spec()
    harness.hosting.create_variant(spec)
    texts = ["a probe", "another probe"]
    expected = {
        "embeddings": [fake_embedding(t, 8) for t in texts],
        "model": spec.embedding_model_id,
        "dimension": 8,
    }
    harness.prime_answer(spec.name, expected)

    answer = harness.hosting.invoke(spec.name, {"inputs": texts})

    assert answer == {**expected, "serving": "handler"}


def test_invoke_of_a_tei_variant_reads_its_list_of_vectors(harness: HostingHarness) -> None:
    spec = replace(make_spec(), serving=Serving.TEI)
    harness.hosting.create_variant(spec)
    texts = ["a probe", "another probe"]
    vectors = [fake_embedding(t, 8) for t in texts]
    harness.prime_answer(spec.name, vectors)

    answer = harness.hosting.invoke(spec.name, {"inputs": texts})

    assert answer == {"embeddings": vectors, "dimension": 8, "serving": "tei"}
