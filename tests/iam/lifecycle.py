"""Test support: the product's lifecycle through the real handlers and the real SageMakerHosting.

The scenario suite runs on tests/fakes/fake_hosting.py, so the SageMaker calls the adapter makes
are never seen there. Here the same Lambda entry points run against moto's SageMaker through
`wiring.aws_adapters()` (the adapters the Lambdas build), so every SageMaker, DynamoDB, SQS,
S3 and SSM call of each function reaches the IAM recorder (tests/iam/recorder.py).
moto is InService at once, refuses `ml.g5.*` and answers invocations from a queue we fill;
the scenarios lean on exactly that and nothing else.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from chalice.test import Client

from app import app
from chalicelib import wiring
from chalicelib.config import Settings
from esdeploy.local.pollers import queue_functions
from tests.fakes.artifacts import minimal_manifest, publish_to_s3
from tests.fakes.fake_hosting import fake_embedding
from tests.scenarios.harness import Pump, TimeWarpQueue, WarpClock

INSTANCE_TYPE = "ml.m5.large"  # one moto accepts and the test settings allow
REFUSED_INSTANCE_TYPE = "ml.g5.xlarge"  # allowed by the settings, refused by moto's SageMaker
DIMENSION = 8
MOTO_RESULTS_API = "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results"
SCHEDULED_EVENT = {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
                   "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
                   "resources": [], "detail": {}}


def manifest(model_id: str, probes: list[str], version: int = 1) -> dict[str, Any]:
    return minimal_manifest(model_id, version, DIMENSION, probes, embed=lambda text: fake_embedding(text, DIMENSION))


class ColdStartPump(Pump):
    """Each delivery runs as a cold Lambda would, resolving its queue URLs again, so every
    function's own GetQueueUrl calls are seen (not only the first function's)."""

    world: SageMakerWorld | None = None

    def _deliver(self, url: str, message: dict[str, Any]) -> bool:
        assert self.world is not None
        self.world.cold_start()
        return super()._deliver(url, message)


@dataclass
class SageMakerWorld:
    client: Client
    settings: Settings
    session: Any
    clock: WarpClock
    urls: Any
    pump: ColdStartPump = field(init=False)
    probes: dict[str, list[str]] = field(default_factory=dict)
    uploads: int = 0

    def __post_init__(self) -> None:
        self.sqs = self.session.client("sqs")
        self.s3 = self.session.client("s3")
        self.sagemaker = self.session.client("sagemaker")  # the test's own: its calls are not the product's
        # The adapters the Lambdas build (real SageMakerHosting), with the scenario suite's
        # time-warp clock and queues so that delays are not waited out.
        self.adapters = wiring.aws_adapters(self.settings)
        self.adapters.clock = self.clock
        self.cold_start()
        wiring.use(self.adapters)
        handlers = {self.urls.url_of(queue): function for queue, function in queue_functions(app).items()}
        self.pump = ColdStartPump(client=self.client, sqs=self.sqs, clock=self.clock, handlers=handlers)
        self.pump.world = self

    def cold_start(self) -> None:
        self.adapters.deploy_queue = TimeWarpQueue(self.sqs, self.settings.deploy_queue, self.clock)
        self.adapters.teardown_queue = TimeWarpQueue(self.sqs, self.settings.teardown_queue, self.clock)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        self.cold_start()
        return self.client.http.post(path, headers={"Content-Type": "application/json"}, body=json.dumps(body or {}))

    def get(self, path: str) -> Any:
        self.cold_start()
        return self.client.http.get(path)

    def task(self, task_id: str, kind: str = "deploy") -> dict[str, Any]:
        return self.get(f"/{kind}/{task_id}").json_body

    def upload(self, model_id: str) -> str:
        """A new artifact version with its own probe texts: moto's runtime keeps the first answer it
        gave for a request body (whatever the endpoint), so each smoke test must send a new one.
        Uploaded as `esdeploy package --upload` does (its own key, then latest.json); returns its URL."""
        version = self.uploads = self.uploads + 1
        probes = [f"{model_id} probe {version}", f"another {model_id} probe, a little longer"]
        self.probes[model_id] = probes
        return publish_to_s3(self.s3, self.settings.artifact_root_url, model_id, manifest(model_id, probes, version))

    def answer_next_invocation(self, model_id: str, texts: list[str] | None = None, good: bool = True) -> None:
        """Queue the answer to the next new request body (the smoke test's probes by default)."""
        vectors = [fake_embedding(t, DIMENSION) for t in (texts or self.probes[model_id])]
        if not good:
            vectors = [[-x for x in v] for v in vectors]
        body = {"embeddings": vectors, "model": model_id, "dimension": DIMENSION}
        result = {"Body": json.dumps(body), "ContentType": "application/json"}
        requests.post(MOTO_RESULTS_API, json={"region": "us-east-1", "results": [result]}, timeout=5).raise_for_status()

    def deploy(self, model_id: str, task_id: str | None = None, **config: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"embedding_model_id": model_id,
                                "config": {"instance_type": INSTANCE_TYPE, **config}}
        if task_id:
            body["id"] = task_id
        answer = self.post("/deploy", body)
        assert answer.status_code == 200, answer.json_body
        return answer.json_body

    def run_until(self, done: Callable[[], bool] | None = None) -> None:
        self.pump.run(until=done)

    def sweep(self) -> dict[str, Any]:
        self.cold_start()
        return self.client.lambda_.invoke("sweeper", SCHEDULED_EVENT).payload

    def resource_names(self) -> dict[str, list[str]]:
        prefix = f"{self.settings.resource_prefix}-"
        return {
            "models": sorted(m["ModelName"] for m in self.sagemaker.list_models()["Models"]
                             if m["ModelName"].startswith(prefix)),
            "configs": sorted(c["EndpointConfigName"] for c in self.sagemaker.list_endpoint_configs()["EndpointConfigs"]
                              if c["EndpointConfigName"].startswith(prefix)),
            "endpoints": sorted(e["EndpointName"] for e in self.sagemaker.list_endpoints()["Endpoints"]
                                if e["EndpointName"].startswith(prefix)),
        }

    def assert_no_leaks(self) -> None:
        """Once the queues are drained no task holds a model, and every SageMaker resource of ours
        is the live or the previous variant of an alias."""
        assert self.adapters.locks.list_held() == [], "a task still holds its model after the queues drained"
        aliased = {v for a in self.adapters.aliases.list_live() for v in (a.live_variant, a.previous_variant) if v}
        leaked = {kind: sorted(set(names) - aliased) for kind, names in self.resource_names().items()}
        assert not any(leaked.values()), f"SageMaker resources nobody owns: {leaked}"
