"""Fixtures for scenario tests: moto AWS + the real handlers + a fake SageMaker + a warp clock."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.config import Settings
from esdeploy.local.pollers import queue_functions
from tests.fakes.artifacts import minimal_manifest
from tests.fakes.fake_hosting import FakeHosting, fake_embedding
from tests.scenarios.harness import Pump, TimeWarpQueue, WarpClock, World

PROBES = ["first probe text", "second probe, a little longer than the first", "3"]
DIMENSION = 16
# A GPU endpoint takes 5-20 minutes to come up; the warp clock makes the wait free.
ENDPOINT_CREATION_SECONDS = 600


def manifest_for(model_id: str, dimension: int = DIMENSION, version: int = 1) -> dict[str, Any]:
    """A packager-style manifest whose references match what the fake endpoint answers."""
    return minimal_manifest(
        model_id, version, dimension, PROBES, embed=lambda text: fake_embedding(text, dimension)
    )


@pytest.fixture
def world(aws: dict[str, Any], settings: Settings) -> Iterator[World]:
    session = aws["session"]
    sqs = session.client("sqs")
    clock = WarpClock()
    hosting = FakeHosting(dimension=DIMENSION, clock=clock, creation_seconds=ENDPOINT_CREATION_SECONDS)
    base = wiring.aws_adapters(settings, hosting_factory=lambda: hosting)
    base.clock = clock
    base.deploy_queue = TimeWarpQueue(sqs, settings.deploy_queue, clock)
    base.teardown_queue = TimeWarpQueue(sqs, settings.teardown_queue, clock)
    base.requests_queue = TimeWarpQueue(sqs, settings.requests_queue, clock)
    wiring.use(base)
    urls = aws["queues"]
    handlers = {urls.url_of(queue): function for queue, function in queue_functions(app).items()}
    with Client(app) as client:
        world = World(
            client=client,
            adapters=base,
            hosting=hosting,
            clock=clock,
            pump=Pump(client=client, sqs=sqs, clock=clock, handlers=handlers),
            sqs=sqs,
            urls=urls,
            s3=session.client("s3"),
        )
        yield world
        # Whatever a scenario did, once its queues are drained no SageMaker resource may be left
        # that neither an alias nor an active task owns.
        world.hosting.clear_faults()
        world.pump.run()
        world.assert_no_leaks()
    wiring.use(None)
