"""A Lambda may die between any two calls: every step must resume on redelivery without leaks."""
from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.models import EndpointState
from tests.fakes.fake_hosting import ALL_PARTS
from tests.scenarios.conftest import manifest_for
from tests.scenarios.harness import World


class Crash(Exception):
    """The process died right after this call returned."""


class CrashAfter:
    """Proxy that lets the `nth` call of `method` happen, then raises as if the Lambda died."""

    def __init__(self, target: Any, method: str, nth: int) -> None:
        self._target = target
        self._method = method
        self._left = nth
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name != self._method or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._left -= 1
            if self._left == 0:
                self.crashed = True
                raise Crash(f"crash after {name}")
            return result

        return call


CRASH_POINTS = [
    ("store", "update"),
    ("store", "create"),
    ("locks", "release"),
    ("aliases", "swap"),
    ("mirror", "publish"),
    ("deploy_queue", "send"),
    ("teardown_queue", "send"),
    ("hosting", "create_variant"),
    ("hosting", "delete_variant"),
]


@pytest.mark.parametrize("nth", [1, 2, 4, 6])
@pytest.mark.parametrize(("port", "method"), CRASH_POINTS)
def test_a_crash_between_steps_resumes_without_leaks(world: World, port: str, method: str, nth: int) -> None:
    world.hosting.script(None, states=[EndpointState.CREATING, EndpointState.IN_SERVICE])
    world.upload_artifact("m1", manifest_for("m1"))
    proxy = CrashAfter(getattr(world.adapters, port), method, nth)
    setattr(world.adapters, port, proxy)

    def submit(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = world.post(path, body)
        if answer.status_code == 500:
            # The crash hit the HTTP request itself; the client retries the same request (same id).
            answer = world.post(path, body)
        assert answer.status_code == 200, answer.json_body
        return answer.json_body

    def settle() -> None:
        world.pump.run()
        # A message lost with a crashed Lambda is found by the scheduled sweeper.
        world.clock.advance(world.adapters.settings.stall_seconds + 1)
        sweep(world)
        world.pump.run()

    submit("/deploy", {"embedding_model_id": "m1", "id": "blue", "config": {"bake_seconds": 60}})
    settle()
    green = submit("/deploy", {"embedding_model_id": "m1", "id": "green", "config": {"bake_seconds": 60}})
    settle()
    assert world.task("blue")["status"] == "done", world.task("blue")

    green_task = world.task(green["task_id"])
    assert green_task["status"] == "done", green_task
    assert world.get("/models/m1").json_body["endpoint_name"] == green_task["endpoint_name"]
    assert world.hosting.endpoint_names() == [green_task["endpoint_name"]]
    assert world.hosting.part_creations["endpoint"] == 2  # a crash never makes a second endpoint
    world.assert_no_leaks()

    submit("/delete", {"embedding_model_id": "m1", "id": "deletion"})
    settle()
    assert world.task("deletion", kind="delete")["status"] == "done"
    assert world.hosting.owned_resources() == []
    assert proxy.crashed or nth > 1


def sweep(world: World) -> dict[str, Any]:
    event = {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
             "resources": [], "detail": {}}
    return world.client.lambda_.invoke("sweeper", event).payload


def test_sweeper_rekicks_a_task_whose_message_was_lost(world: World) -> None:
    world.hosting.script(None, states=[EndpointState.CREATING, EndpointState.IN_SERVICE])
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
