"""The sweeper on moto: stalled tasks re-kicked, orphaned variants handed to teardown.

Crashes after every write are in test_crash_matrix.py (in-memory ports, replayed per crash point)."""
from __future__ import annotations

import json
from typing import Any

from tests.fakes.fake_hosting import ALL_PARTS
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World


def sweep(world: World) -> dict[str, Any]:
    event = {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
             "resources": [], "detail": {}}
    return world.client.lambda_.invoke("sweeper", event).payload


def test_sweeper_rekicks_a_task_whose_message_was_lost(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    task = world.deploy("m1")
    world.pump.run(until=lambda: world.task(task["task_id"])["stage"] == "waiting")
    world.sqs.purge_queue(QueueUrl=world.urls.deploy)  # the poll message is gone
    world.pump.run()
    assert world.task(task["task_id"])["stage"] == "waiting"
    assert sweep(world) == {"rekicked": [], "orphans": []}  # not stalled yet
    world.clock.advance(world.adapters.settings.stall_seconds + 1)
    assert sweep(world)["rekicked"] == [task["task_id"]]
    world.pump.run()
    assert world.task(task["task_id"])["status"] == "done"


def test_sweeper_hands_orphans_to_teardown_and_spares_owned_variants(world: World) -> None:
    world.upload_artifact("m1", manifest_for("m1"))
    done = world.deploy("m1")
    world.pump.run()
    live = world.task(done["task_id"])["endpoint_name"]
    from chalicelib.ports import VariantSpec

    orphan = VariantSpec("esd-leftover-00000000-11111111", "leftover", "crashed-task", "s3://x", "img",
                         "ml.g5.xlarge", 1)
    world.hosting.seed(orphan, parts=ALL_PARTS[:2])
    report = sweep(world)
    assert report == {"rekicked": [], "orphans": ["esd-leftover-00000000-11111111"]}
    world.pump.run()
    assert [r.name for r in world.hosting.owned_resources()] == [live] * 3
    teardown = [d for d in world.pump.deliveries if d.body.get("reason") == "orphan sweep"]
    assert json.dumps(teardown[0].body["variant"]) == '"esd-leftover-00000000-11111111"'


def test_the_sweeper_hands_a_creating_orphan_to_teardown_which_waits_for_it_to_settle(world: World) -> None:
    from chalicelib.ports import VariantSpec

    orphan = VariantSpec("esd-leftover-00000000-22222222", "leftover", "crashed-task", "s3://x", "img",
                         "ml.g5.xlarge", 1)
    world.hosting.seed(orphan, creating_for=1800)  # its task crashed right after CreateEndpoint
    assert sweep(world)["orphans"] == [orphan.name]
    world.pump.run()
    assert world.hosting.count("delete_variant", orphan.name) > 1  # refused while Creating, then done
    assert world.hosting.owned_resources() == []
    assert not any(d.handler.endswith("dead_letters") for d in world.pump.deliveries)
