"""The fake's own checks: the scripting the scenario tests rely on (not part of the Hosting contract)."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from chalicelib.domain.errors import InvocationError, RetryableError, TerminalHostingError
from chalicelib.domain.models import EndpointState
from tests.contract.test_hosting_contract import PREFIX, make_spec
from tests.fakes import ALL_PARTS, Answer, FakeHosting, fake_embedding
from tests.fakes.memory import ManualClock


def test_fake_embedding_is_deterministic_and_unit_norm() -> None:
    vector = fake_embedding("hello", 384)

    assert vector == fake_embedding("hello", 384)
    assert vector != fake_embedding("hello!", 384)
    assert len(vector) == 384
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-12)
    with pytest.raises(ValueError, match="dimension"):
        fake_embedding("hello", 0)


def test_an_endpoint_is_creating_for_its_creation_time_then_settles() -> None:
    clock = ManualClock()
    fake = FakeHosting(clock=clock, creation_seconds=600)
    spec = make_spec()
    fake.create_variant(spec)

    creating = fake.describe(spec.name)
    assert (creating.state, creating.platform_status) == (EndpointState.CREATING, "Creating")
    clock.advance(599)
    assert fake.describe(spec.name).state is EndpointState.CREATING
    clock.advance(1)
    settled = fake.describe(spec.name)
    assert (settled.state, settled.platform_status) == (EndpointState.IN_SERVICE, "InService")
    assert fake.count("describe", spec.name) == 3


def test_an_endpoint_keeps_the_outcome_scripted_when_it_was_created() -> None:
    """A failing green scripted after blue went live leaves blue live."""
    clock = ManualClock()
    fake = FakeHosting(clock=clock, creation_seconds=60)
    blue, green = make_spec(task="blue"), make_spec(task="green")
    fake.create_variant(blue)
    fake.script(creation_seconds=300, outcome=EndpointState.FAILED, reason="OOM on load")
    fake.create_variant(green)

    clock.advance(60)
    assert fake.describe(blue.name).state is EndpointState.IN_SERVICE
    assert fake.describe(green.name).state is EndpointState.CREATING
    clock.advance(240)
    failed = fake.describe(green.name)
    assert (failed.state, failed.failure_reason) == (EndpointState.FAILED, "OOM on load")
    assert fake.describe(blue.name).state is EndpointState.IN_SERVICE


def test_a_named_script_wins_over_the_default() -> None:
    clock = ManualClock()
    fake = FakeHosting(clock=clock, creation_seconds=60)
    blue, green = make_spec(task="blue"), make_spec(task="green")
    fake.script(green.name, creation_seconds=300, outcome=EndpointState.FAILED, reason="OOM on load")
    fake.create_variant(blue)
    fake.create_variant(green)

    clock.advance(60)
    assert fake.describe(blue.name).state is EndpointState.IN_SERVICE
    assert fake.describe(green.name).state is EndpointState.CREATING
    clock.advance(240)
    failed = fake.describe(green.name)
    assert (failed.state, failed.failure_reason) == (EndpointState.FAILED, "OOM on load")
    assert len(fake.invoke(blue.name, {"inputs": ["p"]})["embeddings"]) == 1  # the default answer: GOOD
    fake.script(blue.name, answers=[Answer.WRONG_COUNT])
    fake.script(answers=[Answer.GOOD])  # a new default leaves a named script alone
    assert fake.invoke(blue.name, {"inputs": ["p"]})["embeddings"] == []


def test_deleting_an_endpoint_in_progress_is_refused_with_sagemakers_error_and_keeps_every_part() -> None:
    clock = ManualClock()
    fake = FakeHosting(clock=clock, creation_seconds=600)
    spec = make_spec()
    fake.create_variant(spec)

    with pytest.raises(RetryableError, match=r'still Creating or Updating.*in-progress endpoint "arn:aws'):
        fake.delete_variant(spec.name)
    assert sorted(r.kind for r in fake.owned_resources()) == sorted(ALL_PARTS)

    clock.advance(600)
    fake.delete_variant(spec.name)
    assert fake.owned_resources() == []


def test_an_update_in_progress_refuses_a_delete_too() -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.create_variant(spec)
    fake.set_state(spec.name, EndpointState.CREATING)

    assert fake.describe(spec.name).platform_status == "Updating"
    with pytest.raises(RetryableError, match="in-progress"):
        fake.delete_variant(spec.name)
    fake.set_state(spec.name, EndpointState.IN_SERVICE)
    fake.delete_variant(spec.name)
    assert fake.owned_resources() == []


@pytest.mark.parametrize(
    ("answer", "check"),
    [
        (Answer.WRONG_DIMENSION, lambda a: len(a["embeddings"][0]) == 9 and a["dimension"] == 9),
        (Answer.NOT_UNIT_NORM, lambda a: math.isclose(math.fsum(x * x for x in a["embeddings"][0]), 4.0)),
        (Answer.NAN, lambda a: math.isnan(a["embeddings"][0][0])),
        (Answer.WRONG_VECTORS, lambda a: a["embeddings"][0] == [-x for x in fake_embedding("p", 8)]),
        (Answer.WRONG_COUNT, lambda a: a["embeddings"] == []),
    ],
)
def test_bad_answers(answer: Answer, check: object) -> None:
    fake = FakeHosting(dimension=8)
    spec = make_spec()
    fake.create_variant(spec)
    fake.script(answers=[answer])

    result = fake.invoke(spec.name, {"inputs": ["p"]})

    assert callable(check) and check(result)


def test_answers_follow_their_script_then_stay_good() -> None:
    fake = FakeHosting(dimension=4)
    spec = make_spec()
    fake.create_variant(spec)
    fake.script(answers=[Answer.INVOCATION_ERROR, Answer.GOOD])

    with pytest.raises(InvocationError, match="failed the request"):
        fake.invoke(spec.name, {"inputs": ["p"]})
    for _ in range(2):
        assert fake.invoke(spec.name, {"inputs": ["p"]}) == {
            "embeddings": [fake_embedding("p", 4)],
            "model": spec.embedding_model_id,
            "dimension": 4,
            "serving": "handler",
        }


@pytest.mark.parametrize(
    ("payload", "message"),
    # The handler's words (the invoke rules'), no longer the fake's own ("must be a non-empty list").
    [({}, 'missing "inputs"'), ({"inputs": []}, "inputs is an empty list"), ({"inputs": ["a", 3]}, r"inputs\[1\]")],
)
def test_requests_the_serving_handler_refuses_are_refused(payload: dict[str, object], message: str) -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.create_variant(spec)

    with pytest.raises(InvocationError, match=message):
        fake.invoke(spec.name, payload)


def test_invocations_of_endpoints_not_in_service_are_refused() -> None:
    fake = FakeHosting(clock=ManualClock(), creation_seconds=60)
    spec = make_spec()

    with pytest.raises(InvocationError, match="does not exist"):
        fake.invoke(spec.name, {"inputs": ["p"]})
    fake.create_variant(spec)
    with pytest.raises(InvocationError, match="creating, not in service"):
        fake.invoke(spec.name, {"inputs": ["p"]})


def test_faults_on_create_and_delete() -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.fail("create_variant", RetryableError("throttled"))
    other = make_spec(task="other")
    fake.fail("delete_variant", TerminalHostingError("quota"), name=spec.name, times=None)
    fake.delete_variant(other.name)  # another variant is not faulted

    with pytest.raises(RetryableError, match="throttled"):
        fake.create_variant(spec)
    assert fake.owned_resources() == []
    fake.create_variant(spec)
    for _ in range(2):
        with pytest.raises(TerminalHostingError, match="quota"):
            fake.delete_variant(spec.name)
    fake.clear_faults()
    fake.delete_variant(spec.name)

    assert fake.owned_resources() == []
    assert (fake.count("create_variant"), fake.count("delete_variant")) == (2, 4)


def test_a_fault_after_a_part_leaves_a_half_made_variant() -> None:
    fake = FakeHosting()
    spec = make_spec()
    fake.fail("create_variant", RetryableError("lambda timed out"), after="model")

    with pytest.raises(RetryableError):
        fake.create_variant(spec)

    assert [(v.has_model, v.has_endpoint_config, v.has_endpoint) for v in fake.list_variants(PREFIX)] == [
        (True, False, False)
    ]
    fake.create_variant(spec)
    assert fake.part_creations == Counter({"model": 1, "endpoint_config": 1, "endpoint": 1})


def test_a_seeded_leftover_is_listed_with_its_owner_and_may_still_be_creating() -> None:
    clock = ManualClock()
    fake = FakeHosting(clock=clock)
    leftover = make_spec(task="crashed")
    fake.seed(leftover, creating_for=120)

    assert [(r.kind, r.name) for r in fake.owned_resources()] == [(kind, leftover.name) for kind in ALL_PARTS]
    assert [(v.name, v.task_id) for v in fake.list_variants(PREFIX)] == [(leftover.name, "crashed")]
    assert fake.describe(leftover.name).state is EndpointState.CREATING
    assert fake.count("create_variant") == 0 and not fake.part_creations  # planted, not created
    clock.advance(120)
    fake.delete_variant(leftover.name)
    assert fake.owned_resources() == []
