"""Races through the real handlers, interleaved at the exact moment: nothing stalls, nothing leaks."""
from __future__ import annotations

from tests.fakes.interleave import Interleave
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World


def test_given_a_deploy_just_accepted_when_a_cancel_races_its_first_step_then_the_cancel_lands(
    world: World,
) -> None:
    """Issue 15: a cancel 100-250 ms after the deploy got 409 "changed since version" when the
    worker's preflight wrote first, and the deploy went live."""
    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    store = world.adapters.store
    world.adapters.store = Interleave(  # type: ignore[assignment]
        store,
        "update",
        lambda: world.pump.run(steps=1),  # the worker's preflight writes first
        when=lambda written: written.cancel_requested or written.status == "canceled",
    )
    answer = world.post(f"/deploy/{task['task_id']}/cancel")
    assert answer.status_code == 200, answer.json_body
    assert world.adapters.store.fired  # type: ignore[attr-defined]
    world.adapters.store = store
    world.pump.run()
    canceled = world.task(task["task_id"])
    assert canceled["status"] == "canceled", canceled
    assert world.get("/models/m1").status_code == 404
    assert world.hosting.endpoint_names() == []
