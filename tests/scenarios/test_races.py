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


def live_green_baking_blue(world: World) -> tuple[str, str]:
    """Blue then green deployed with a long bake, green's bake just over (its task done) and blue's
    teardown not delivered yet: the alias is live=green, previous=blue."""
    world.upload_artifact("m1", manifest_for("m1"))
    names = []
    for _ in range(2):
        task = world.deploy("m1", bake_seconds=3600)
        world.pump.run(until=lambda task=task: world.task(task["task_id"])["status"] == "done")
        names.append(world.task(task["task_id"])["endpoint_name"])
    alias = world.get("/models/m1").json_body
    assert (alias["endpoint_name"], alias["previous_endpoint_name"]) == (names[1], names[0])
    return names[0], names[1]


def bake_end_teardown(world: World, variant: str) -> None:
    """The teardown worker removing the baked-out previous variant (it drops `previous` first)."""
    from chalicelib.domain.messages import TeardownVariant
    from chalicelib.services.teardown_worker import TeardownWorker

    world.adapters.build(TeardownWorker).teardown_variant(TeardownVariant("m1", variant, reason="bake over"))


def test_given_the_bake_end_teardown_clears_previous_when_a_swap_writes_the_alias_then_the_swap_retries(
    world: World,
) -> None:
    """Issue 12: the lost alias race was taken for "the other writer continues"; the task sat in
    `swapping` with the model's lease held until the sweeper, 12+ minutes later."""
    blue, green = live_green_baking_blue(world)
    aliases = world.adapters.aliases
    world.adapters.aliases = Interleave(  # type: ignore[assignment]
        aliases, "swap", lambda: bake_end_teardown(world, blue),
        when=lambda alias, expected_version: alias.live_variant not in (None, blue, green),
    )
    third = world.deploy("m1", bake_seconds=3600)
    # No sweeper runs: the task must get past its swap on its own messages.
    world.pump.run(until=lambda: world.task(third["task_id"])["stage"] == "baking", max_deliveries=20)
    assert world.adapters.aliases.fired  # type: ignore[attr-defined]
    world.adapters.aliases = aliases
    live = world.task(third["task_id"])
    assert (live["status"], live["stage"]) == ("processing", "baking"), live
    alias = world.get("/models/m1").json_body
    assert (alias["endpoint_name"], alias["previous_endpoint_name"]) == (live["endpoint_name"], green)
    held = world.adapters.locks.get("m1")
    assert held is not None and held.task_id == third["task_id"]  # held through the bake, not stuck
    assert blue not in world.hosting.endpoint_names()
    world.pump.run(until=lambda: world.task(third["task_id"])["status"] == "done")
    assert world.adapters.locks.get("m1") is None


def test_given_the_bake_end_teardown_clears_previous_when_a_delete_unaliases_then_the_delete_retries(
    world: World,
) -> None:
    blue, _green = live_green_baking_blue(world)
    aliases = world.adapters.aliases
    world.adapters.aliases = Interleave(  # type: ignore[assignment]
        aliases, "swap", lambda: bake_end_teardown(world, blue),
        when=lambda alias, expected_version: alias.live_variant is None,
    )
    answer = world.post("/delete", {"model_id": "m1", "id": "deletion"})
    assert answer.status_code == 200, answer.json_body
    world.pump.run(until=lambda: world.task("deletion", kind="delete")["status"] == "done", max_deliveries=8)
    assert world.adapters.aliases.fired  # type: ignore[attr-defined]
    world.adapters.aliases = aliases
    deleted = world.task("deletion", kind="delete")
    assert deleted["status"] == "done", deleted
    assert world.hosting.owned_resources() == []
    assert world.adapters.locks.get("m1") is None


def test_given_a_sweep_that_read_the_locks_when_a_green_is_created_before_it_lists_variants_then_the_green_survives(
    world: World,
) -> None:
    """Issue 12: a green whose CreateModel landed between the sweeper's two reads looked orphaned."""
    from tests.scenarios.test_crashes_and_sweeper import sweep

    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    store = world.adapters.store
    # The sweeper has read the task (queued, no variant yet) when the worker creates the green.
    world.adapters.store = Interleave(  # type: ignore[assignment]
        store, "get", lambda: world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting"),
        when=lambda task_id: task_id == task["task_id"], after=True,
    )
    hosting = world.adapters.hosting
    report = sweep(world)
    assert world.adapters.store.fired  # type: ignore[attr-defined]
    world.adapters.store = store
    green = world.task(task["task_id"])["endpoint_name"]
    assert green in world.hosting.endpoint_names()
    assert report["orphans"] == []
    world.pump.run()
    done = world.task(task["task_id"])
    assert done["status"] == "done", done
    assert world.get("/models/m1").json_body["endpoint_name"] == green
    assert hosting.count("delete_variant", green) == 0  # type: ignore[attr-defined]
