"""The endpoint lifecycle the local hosting and the fake share (esdeploy/local/endpoint_lifecycle.py): the rules the
local hosting relies on when the serving process, not a script, says how a creation ended."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import InvocationError, RetryableError
from chalicelib.domain.models import EndpointState
from esdeploy.local.endpoint_lifecycle import MODEL, Endpoints
from tests.contract.test_hosting_contract import make_spec
from tests.fakes.memory import ManualClock


def endpoints() -> tuple[Endpoints, ManualClock]:
    clock = ManualClock()
    return Endpoints(clock, region="us-east-1", account="123456789012"), clock


def test_an_endpoint_whose_process_has_not_said_is_creating_past_its_creation_time_and_refuses_a_delete() -> None:
    hosted, clock = endpoints()
    spec = make_spec()
    lifecycle, made = hosted.create(spec, creation_seconds=30)  # outcome told later
    assert made == ["model", "endpoint_config", "endpoint"]

    clock.advance(3600)  # its time is long up, but the model has not loaded
    assert hosted.describe(spec.name).state is EndpointState.CREATING
    with pytest.raises(RetryableError, match="Cannot update in-progress endpoint"):
        hosted.delete(spec.name)
    with pytest.raises(InvocationError, match="refused the request: it is creating, not in service"):
        hosted.serving(spec.name)

    assert hosted.settle(lifecycle, EndpointState.IN_SERVICE, None)
    status = hosted.describe(spec.name)
    assert (status.state, status.platform_status, status.instance_count) == (EndpointState.IN_SERVICE, "InService", 1)
    assert hosted.delete(spec.name) is lifecycle
    assert hosted.describe(spec.name).state is EndpointState.MISSING


def test_an_outcome_known_early_is_said_only_once_the_creation_time_is_up() -> None:
    hosted, clock = endpoints()
    spec = make_spec()
    lifecycle, _ = hosted.create(spec, creation_seconds=30)

    hosted.settle(lifecycle, EndpointState.IN_SERVICE, None)  # loaded in 1 s; a GPU endpoint would take minutes
    assert hosted.describe(spec.name).state is EndpointState.CREATING
    clock.advance(30)
    assert hosted.describe(spec.name).state is EndpointState.IN_SERVICE


def test_a_failure_is_final_and_a_process_ending_after_it_served_is_one() -> None:
    hosted, _ = endpoints()
    failed, serving = make_spec(task="failed"), make_spec(task="serving")
    failed_life, _ = hosted.create(failed, creation_seconds=0)
    serving_life, _ = hosted.create(serving, creation_seconds=0)

    assert hosted.settle(failed_life, EndpointState.FAILED, "could not load the model")
    assert not hosted.settle(failed_life, EndpointState.IN_SERVICE, None)  # a late "ready" changes nothing
    status = hosted.describe(failed.name)
    assert (status.state, status.failure_reason) == (EndpointState.FAILED, "could not load the model")

    hosted.settle(serving_life, EndpointState.IN_SERVICE, None)
    assert hosted.settle(serving_life, EndpointState.FAILED, "serving process exited with -9")
    assert hosted.describe(serving.name).failure_reason == "serving process exited with -9"


def test_a_deleted_variant_is_not_brought_back_by_its_late_outcome_and_a_create_finds_what_exists() -> None:
    hosted, _ = endpoints()
    spec = make_spec()
    hosted.plant(spec, [MODEL])
    lifecycle, made = hosted.create(spec, creation_seconds=0, outcome=(EndpointState.IN_SERVICE, None))
    assert made == ["endpoint_config", "endpoint"] and hosted.part_creations[MODEL] == 0
    assert hosted.create(spec, creation_seconds=0)[1] == []  # redelivered: found, not duplicated

    hosted.delete(spec.name)
    assert not hosted.settle(lifecycle, EndpointState.FAILED, "process ended by the delete")
    assert hosted.describe(spec.name).state is EndpointState.MISSING and hosted.list_variants("") == []
