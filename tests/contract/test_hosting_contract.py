"""Contract suite: FakeHosting and SageMakerHosting (on moto) keep the same Hosting promises."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest

from chalicelib.domain.errors import InvocationError, RetryableError, TerminalHostingError
from chalicelib.domain.models import EndpointState
from chalicelib.domain.names import model_name_prefix, variant_name
from chalicelib.ports import VariantInfo, VariantSpec
from tests.contract.conftest import INSTANCE_TYPE, HostingHarness
from tests.fakes import Answer, FakeHosting, fake_embedding

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


# -- the contract: both implementations ---------------------------------------------------------


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

    assert answer == expected


# -- FakeHosting's scripting: scenario tests rely on it ----------------------------------------


def test_fake_embedding_is_deterministic_and_unit_norm() -> None:
    vector = fake_embedding("hello", 384)

    assert vector == fake_embedding("hello", 384)
    assert vector != fake_embedding("hello!", 384)
    assert len(vector) == 384
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-12)
    with pytest.raises(ValueError, match="dimension"):
        fake_embedding("hello", 0)


def test_fake_states_follow_the_script_and_the_last_one_sticks() -> None:
    fake = FakeHosting()
    fake.script(None, states=[EndpointState.CREATING, EndpointState.CREATING, EndpointState.IN_SERVICE])
    spec = make_spec()
    fake.create_variant(spec)

    seen = [fake.describe(spec.name).state for _ in range(4)]

    assert seen == [EndpointState.CREATING] * 2 + [EndpointState.IN_SERVICE] * 2
    assert fake.calls["describe"] == 4
    assert fake.count("describe", spec.name) == 4


def test_fake_named_script_wins_and_each_variant_consumes_its_own_copy_of_the_default() -> None:
    fake = FakeHosting(states=[EndpointState.CREATING, EndpointState.IN_SERVICE])
    blue, green = make_spec(task="blue"), make_spec(task="green")
    fake.script(green.name, states=[EndpointState.CREATING, EndpointState.FAILED], reason="OOM on load")
    fake.create_variant(blue)
    fake.create_variant(green)

    assert fake.describe(blue.name).state is EndpointState.CREATING
    assert fake.describe(green.name).state is EndpointState.CREATING
    assert fake.describe(blue.name).state is EndpointState.IN_SERVICE
    failed = fake.describe(green.name)
    assert (failed.state, failed.failure_reason) == (EndpointState.FAILED, "OOM on load")


def test_fake_set_state_applies_now_and_missing_removes_the_endpoint_only() -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.create_variant(spec)

    fake.set_state(spec.name, EndpointState.FAILED, reason="capacity")
    assert fake.describe(spec.name).failure_reason == "capacity"

    fake.set_state(spec.name, EndpointState.MISSING)
    assert fake.describe(spec.name).state is EndpointState.MISSING
    assert [r.kind for r in fake.resources()] == ["model", "endpoint_config"]


@pytest.mark.parametrize(
    ("answer", "check"),
    [
        (Answer.WRONG_DIMENSION, lambda a: len(a["embeddings"][0]) == 9 and a["dimension"] == 9),
        (Answer.NOT_UNIT_NORM, lambda a: math.isclose(math.fsum(x * x for x in a["embeddings"][0]), 4.0)),
        (Answer.NAN, lambda a: math.isnan(a["embeddings"][0][0])),
        (Answer.WRONG_VECTORS, lambda a: a["embeddings"][0] == [-x for x in fake_embedding("p", 8)]),
        (Answer.WRONG_MODEL, lambda a: a["model"] != "intfloat/e5-small"),
        (Answer.WRONG_COUNT, lambda a: a["embeddings"] == []),
    ],
)
def test_fake_bad_answers(answer: Answer, check: object) -> None:
    fake = FakeHosting(dimension=8)
    spec = make_spec()
    fake.create_variant(spec)
    fake.script(spec.name, answers=[answer])

    result = fake.invoke(spec.name, {"inputs": ["p"]})

    assert callable(check) and check(result)


def test_fake_answers_follow_their_script_then_stay_good() -> None:
    fake = FakeHosting(dimension=4)
    spec = make_spec()
    fake.create_variant(spec)
    fake.script(None, answers=[Answer.RETRYABLE_ERROR, Answer.INVOCATION_ERROR, Answer.GOOD])

    with pytest.raises(RetryableError, match="busy"):
        fake.invoke(spec.name, {"inputs": ["p"]})
    with pytest.raises(InvocationError, match="failed the request"):
        fake.invoke(spec.name, {"inputs": ["p"]})
    assert fake.invoke(spec.name, {"inputs": ["p"]}) == {
        "embeddings": [fake_embedding("p", 4)],
        "model": spec.embedding_model_id,
        "dimension": 4,
    }


def test_fake_custom_answer_function() -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.create_variant(spec)
    fake.script(spec.name, answers=[lambda name, payload: {"echo": payload, "name": name}])

    assert fake.invoke(spec.name, {"inputs": ["p"]}) == {"echo": {"inputs": ["p"]}, "name": spec.name}


@pytest.mark.parametrize(
    ("payload", "message"),
    [({}, 'missing "inputs"'), ({"inputs": []}, "non-empty"), ({"inputs": ["a", 3]}, r"inputs\[1\]")],
)
def test_fake_refuses_requests_the_serving_handler_refuses(payload: dict[str, object], message: str) -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.create_variant(spec)

    with pytest.raises(InvocationError, match=message):
        fake.invoke(spec.name, payload)


def test_fake_refuses_invocations_of_endpoints_not_in_service() -> None:
    fake = FakeHosting(states=[EndpointState.CREATING])
    spec = make_spec()

    with pytest.raises(InvocationError, match="does not exist"):
        fake.invoke(spec.name, {"inputs": ["p"]})
    fake.create_variant(spec)
    with pytest.raises(InvocationError, match="creating, not in service"):
        fake.invoke(spec.name, {"inputs": ["p"]})


def test_fake_faults_on_create_and_delete() -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.fail("create_variant", RetryableError("throttled"))
    fake.fail("delete_variant", TerminalHostingError("quota"), name=spec.name, times=None)

    with pytest.raises(RetryableError, match="throttled"):
        fake.create_variant(spec)
    assert fake.resources() == []
    fake.create_variant(spec)
    for _ in range(2):
        with pytest.raises(TerminalHostingError, match="quota"):
            fake.delete_variant(spec.name)
    fake.clear_faults()
    fake.delete_variant(spec.name)

    assert fake.resources() == []
    assert fake.calls == Counter({"create_variant": 2, "delete_variant": 3})


def test_fake_fault_after_a_part_leaves_a_half_made_variant() -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.fail("create_variant", RetryableError("lambda timed out"), after="model")

    with pytest.raises(RetryableError):
        fake.create_variant(spec)

    assert [(v.has_model, v.has_endpoint_config, v.has_endpoint) for v in fake.list_variants(PREFIX)] == [
        (True, False, False)
    ]
    fake.create_variant(spec)
    assert fake.part_creations == ALL_THREE


def test_fake_owned_resources_ignore_foreign_ones_and_deleting_endpoints_linger() -> None:
    fake = FakeHosting(deleting_describes=2)
    ours, foreign = make_spec(task="ours"), make_spec(task="foreign")
    fake.create_variant(ours)
    fake.seed(foreign, tags={})

    fake.delete_variant(ours.name)

    assert [(r.kind, r.name) for r in fake.owned_resources()] == [("endpoint", ours.name)]
    assert fake.describe(ours.name).state is EndpointState.DELETING
    assert fake.describe(ours.name).state is EndpointState.DELETING
    assert fake.describe(ours.name).state is EndpointState.MISSING
    assert fake.owned_resources() == []
    assert {r.name for r in fake.resources()} == {foreign.name}
