"""Items nobody can read (a hand edit in the console, an older version's write) beside good ones, on moto.

Issue 24: one lease item without `lock_kind` stopped every scheduled sweep (KeyError), so no stuck task
was re-kicked and no orphan torn down, for every model. Each reader of many items now reports such an
item once (a warning naming table, key and fault, and the `UnreadableItems` metric) and goes on.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.ports import VariantSpec
from tests.fakes.fake_hosting import ALL_PARTS
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World
from tests.scenarios.test_alarms import emitted, metric_alarm
from tests.scenarios.test_crashes_and_sweeper import sweep

GOOD_LEASE = {"lock_task_id": "t-held", "lock_kind": "deploy", "lock_acquired_at": "2026-01-01T00:00:00.000000Z"}
GOOD_ALIAS = {"alias_version": 3, "live_variant": "esd-x-1", "listed": "live", "alias_task_id": "t-old",
              "swapped_at": "2026-01-01T00:00:00.000000Z"}
# Each a model item of its own: every lease field missing in turn, then wrong types; then alias faults.
BAD_MODEL_ITEMS: dict[str, tuple[dict[str, Any], str]] = {
    "bad-no-kind": ({k: v for k, v in GOOD_LEASE.items() if k != "lock_kind"}, "`lock_kind` is missing"),
    "bad-no-since": ({k: v for k, v in GOOD_LEASE.items() if k != "lock_acquired_at"},
                     "`lock_acquired_at` is missing"),
    "bad-kind": ({**GOOD_LEASE, "lock_kind": "upgrade"}, "`lock_kind` is 'upgrade', not one of deploy, delete"),
    "bad-kind-type": ({**GOOD_LEASE, "lock_kind": Decimal(5)}, "`lock_kind` is a number, not a string"),
    "bad-task-id": ({**GOOD_LEASE, "lock_task_id": Decimal(7)}, "`lock_task_id` is a number, not a string"),
    "bad-since": ({**GOOD_LEASE, "lock_acquired_at": "yesterday"}, "`lock_acquired_at` is 'yesterday', not a time"),
    "bad-alias-version": ({**GOOD_ALIAS, "alias_version": "three"}, "`alias_version` is 'three', not a whole number"),
    "bad-live-variant": ({**GOOD_ALIAS, "live_variant": {"name": "esd-x-1"}}, "`live_variant` is a map, not a string"),
    "bad-swapped-at": ({**GOOD_ALIAS, "swapped_at": "now"}, "`swapped_at` is 'now', not a time"),
}
LEASE_FAULTS = [model for model, (item, _) in BAD_MODEL_ITEMS.items() if "lock_task_id" in item]
ALIAS_FAULTS = [model for model in BAD_MODEL_ITEMS if model not in LEASE_FAULTS]


def models_table(world: World) -> Any:
    return world.adapters.aliases._table  # type: ignore[attr-defined]


def tasks_table(world: World) -> Any:
    return world.adapters.store._inner._table  # type: ignore[attr-defined]


def put_bad_model_items(world: World) -> None:
    for model, (item, _) in BAD_MODEL_ITEMS.items():
        models_table(world).put_item(Item={"embedding_model_id": model, **item})


@pytest.fixture(autouse=True)
def repaired(world: World) -> Iterator[None]:
    """After each case an operator deletes the hand-edited items (the world's own leak check reads them)."""
    yield
    for model in [*BAD_MODEL_ITEMS, "bad-task"]:
        models_table(world).delete_item(Key={"embedding_model_id": model})
    tasks_table(world).delete_item(Key={"task_id": "t-bad"})


def skipped(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped an item that cannot be read")]


def stalled_deploy(world: World, model: str) -> str:
    """A deploy whose next message was lost while its endpoint came up (the sweeper must re-kick it)."""
    world.upload_artifact(model, manifest_for(model))
    task = world.deploy(model)
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting")
    world.sqs.purge_queue(QueueUrl=world.urls.deploy)
    return str(task["task_id"])


def orphan(world: World, name: str) -> str:
    world.hosting.seed(VariantSpec(name, "leftover", "crashed-task", "s3://x", "img", "ml.g5.xlarge", 1),
                       parts=ALL_PARTS[:2])
    return name


def test_the_sweep_reports_each_unreadable_item_once_and_does_its_work_on_the_rest(
    world: World, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    stalled = stalled_deploy(world, "m1")
    leaked = orphan(world, "esd-leftover-00000000-11111111")
    put_bad_model_items(world)
    # A lease whose task item lost its status, beside them: that model waits, the others do not.
    models_table(world).put_item(Item={"embedding_model_id": "bad-task", **{**GOOD_LEASE, "lock_task_id": "t-bad"}})
    tasks_table(world).put_item(Item={"task_id": "t-bad", "kind": "deploy", "embedding_model_id": "bad-task"})
    world.clock.advance(world.adapters.settings.stall_seconds + 1)
    capsys.readouterr()
    caplog.set_level(logging.WARNING)

    report = sweep(world)

    assert report == {"rekicked": [stalled], "orphans": [leaked]}
    lines = skipped(caplog)
    for model in LEASE_FAULTS:
        [line] = [line for line in lines if f"`{model}`" in line]
        assert BAD_MODEL_ITEMS[model][1] in line and "esdeploy-test-models" in line, line
    [task_line] = [line for line in lines if "`t-bad`" in line]
    assert "attribute `status` is missing" in task_line and "repair or delete it" in task_line
    assert len(lines) == len(LEASE_FAULTS) + 1  # each once: no item is read twice, none is left unsaid
    # Counted where its alarm reads (infra/template.yaml), once per item.
    assert list(emitted(capsys.readouterr().out)).count(metric_alarm("UnreadableItemsAlarm")) == len(lines)
    world.pump.run()
    assert world.task(stalled)["status"] == "done"


def test_a_green_whose_models_lease_cannot_be_read_is_not_taken_for_an_orphan(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the lease the sweeper cannot see the green's owner: the green's own task says it is in use."""
    task = stalled_deploy(world, "m1")
    green = world.task(task)["endpoint_name"]
    models_table(world).update_item(Key={"embedding_model_id": "m1"}, UpdateExpression="REMOVE lock_kind")

    report = sweep(world)

    assert green not in report["orphans"]
    assert any("`m1`" in line and "`lock_kind` is missing" in line for line in skipped(caplog))
    models_table(world).update_item(Key={"embedding_model_id": "m1"}, UpdateExpression="SET lock_kind = :deploy",
                                    ExpressionAttributeValues={":deploy": "deploy"})  # repaired


def test_get_models_lists_the_readable_live_models_and_reports_the_rest(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    world.deploy("m1")
    world.pump.run()
    put_bad_model_items(world)
    caplog.set_level(logging.WARNING)

    answer = world.get("/models")

    assert answer.status_code == 200
    assert [m["embedding_model_id"] for m in answer.json_body["models"]] == ["m1"]
    lines = skipped(caplog)
    for model in ALIAS_FAULTS:
        assert sum(f"`{model}`" in line and BAD_MODEL_ITEMS[model][1] in line for line in lines) == 1, lines


def test_a_malformed_slot_is_reported_and_the_others_still_count(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    world.deploy("m1")
    world.pump.run()
    models_table(world).update_item(
        Key={"embedding_model_id": "#live-model-slots"}, UpdateExpression="SET slots.#m = :bad",
        ExpressionAttributeNames={"#m": "hand-edited"}, ExpressionAttributeValues={":bad": Decimal(1)},
    )
    caplog.set_level(logging.WARNING)

    assert world.adapters.slots.holders() == {"m1": world.adapters.aliases.get("m1").task_id}  # type: ignore[union-attr]
    assert any("the slot of model `hand-edited` holds a" in line for line in skipped(caplog))
    assert sweep(world)["orphans"] == []


def test_reading_one_unreadable_task_is_a_500_that_names_it(world: World) -> None:
    tasks_table(world).put_item(Item={"task_id": "t-bad", "kind": "deploy", "embedding_model_id": "m1",
                                      "status": "processing", "stage": "waiting"})

    answer = world.get("/deploy/t-bad")

    assert answer.status_code == 500
    detail = json.dumps(answer.json_body)
    assert "`t-bad`" in detail and "attribute `created_at` is missing" in detail and "Traceback" not in detail
