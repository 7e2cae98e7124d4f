"""Benchmark: the AWS calls one successful blue/green deployment makes, and the polls of a slow one.

Runs the real services and adapters (DynamoDB, SQS, S3, SSM and SageMaker on moto, in process)
through submit -> deploy v1 -> deploy v2 -> teardown of v1, counting every AWS API call our
code makes, per stage. The SQS receive/delete that Lambda's event source mapping does are not
ours and are not counted. Then it computes, from the worker's own backoff, how many
DescribeEndpoint polls a 10-minute endpoint creation costs.

Run: .venv/bin/python bench/api_calls.py
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ENV = {
    "ESDEPLOY_STAGE": "bench",
    "ESDEPLOY_TASKS_TABLE": "bench-tasks", "ESDEPLOY_MODELS_TABLE": "bench-models",
    "ESDEPLOY_REQUESTS_QUEUE": "bench-requests", "ESDEPLOY_DEPLOY_QUEUE": "bench-deploy-tasks",
    "ESDEPLOY_TEARDOWN_QUEUE": "bench-teardown-tasks", "ESDEPLOY_ARTIFACT_BUCKET": "bench-artifacts",
    # moto knows no ml.g5.*; the instance type changes no call.
    "ESDEPLOY_ALLOWED_INSTANCE_TYPES": "ml.m5.large", "ESDEPLOY_DEFAULT_INSTANCE_TYPE": "ml.m5.large",
    "ESDEPLOY_DEFAULT_IMAGE_URI": "763104351884.dkr.ecr.us-east-1.amazonaws.com/hf:latest",
    "ESDEPLOY_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/bench",
    "ESDEPLOY_POLL_INITIAL_SECONDS": "0", "ESDEPLOY_POLL_MAX_SECONDS": "0", "ESDEPLOY_DEFAULT_BAKE_SECONDS": "0",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_METRICS_DISABLED": "true",
    # The calls are counted on botocore's events, under mock_aws: DynamoDB's too.
    "ESDEPLOY_DYNAMODB_CLIENT": "boto3",
}
PROBES = ["alpha", "beta", "gamma"]
VECTORS = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]


class CallCounter:
    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.phase: str | None = None

    def install(self) -> None:
        import botocore.client

        original = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 - private, untyped
        counter = self

        def counted(client: Any, operation: str, params: Any) -> Any:
            if counter.phase is not None:
                counter.calls[(counter.phase, client.meta.service_model.service_name, operation)] += 1
            return original(client, operation, params)

        setattr(botocore.client.BaseClient, "_make_api_call", counted)  # noqa: B010

    @contextmanager
    def counting(self, phase: str) -> Iterator[None]:
        self.phase = phase
        try:
            yield
        finally:
            self.phase = None


def run_deployments(counter: CallCounter) -> None:
    import boto3
    import requests
    from moto import mock_aws

    from chalicelib import wiring
    from chalicelib.adapters.queue_messages import read_deploy_tasks, read_teardown_tasks
    from chalicelib.adapters.sagemaker_hosting import SageMakerHosting, make_sagemaker_clients
    from chalicelib.api.schemas import parse_deploy
    from chalicelib.config import load_settings
    from chalicelib.services.deploy_worker import DeployWorker
    from chalicelib.services.tasks import TaskService
    from chalicelib.services.teardown_worker import TeardownWorker
    from esdeploy.local.embedded_aws import create_resources

    settings = load_settings(os.environ)
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        urls = create_resources(session, os.environ)
        upload_model(session.client("s3"), settings.artifact_root_url, Path(tempfile.mkdtemp(prefix="bench-")))
        clients = make_sagemaker_clients("us-east-1")
        hosting = SageMakerHosting(clients.control, clients.runtime, role_arn=settings.sagemaker_role_arn)
        adapters = wiring.aws_adapters(settings, hosting_factory=lambda: hosting)
        sqs = session.client("sqs")

        def prime_smoke_answer() -> None:
            body = json.dumps({"embeddings": VECTORS, "model": "m1", "dimension": 4})
            requests.post(
                "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
                json={"region": "us-east-1", "results": [{"Body": body, "ContentType": "application/json"}]},
                timeout=5,
            ).raise_for_status()

        def drain() -> None:
            while True:
                handled = False
                for url, run in (
                    (urls.deploy, lambda text: adapters.build(DeployWorker).handle(read_deploy_tasks(text))),
                    (urls.teardown, lambda text: adapters.build(TeardownWorker).handle(read_teardown_tasks(text))),
                ):
                    for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                        body = json.loads(message["Body"])
                        phase = body.get("action", "?")
                        if phase == "advance":
                            task = adapters.store.get(body["task_id"])
                            phase = f"stage {task.stage.value}" if task else phase
                        with counter.counting(phase):
                            run(message["Body"])
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                        handled = True
                if not handled:
                    return

        for version in ("v1", "v2"):
            prime_smoke_answer()
            with counter.counting("submit (POST /deploy)"):
                task = adapters.build(TaskService).submit(parse_deploy({"embedding_model_id": "m1"}))
            drain()
            done = adapters.store.get(task.task_id)
            assert done is not None and done.status.value == "done", (version, done and done.detail)


def upload_model(s3: Any, destination: str, folder: Path) -> None:
    """What `esdeploy package --upload` leaves: a tarball with its manifest first, then the latest pointer."""
    from rich.console import Console

    from esdeploy.s3upload import upload_artifact

    content_hash = "0" * 64
    manifest = {"format": "esdeploy-manifest/1", "model_id": "m1", "content_sha256": content_hash,
                "probe_texts": PROBES, "reference_embeddings": VECTORS, "dimension": 4, "normalize": True}
    data = json.dumps(manifest).encode()
    archive, beside = folder / "model.tar.gz", folder / "manifest.json"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    beside.write_bytes(data)
    upload_artifact(archive, beside, destination, "m1", content_hash, s3_client=s3, console=Console(quiet=True))
    shutil.rmtree(folder, ignore_errors=True)


def polls_for(creation_seconds: int, initial: int, maximum: int) -> tuple[int, int]:
    """Polls until an endpoint that takes `creation_seconds` is seen InService, and how late."""
    from chalicelib.config import load_settings

    settings = load_settings({**ENV, "ESDEPLOY_POLL_INITIAL_SECONDS": str(initial),
                              "ESDEPLOY_POLL_MAX_SECONDS": str(maximum)})
    elapsed, polls = initial, 1  # the first describe comes poll_initial after CreateEndpoint
    while elapsed < creation_seconds:
        elapsed += settings.poll_delay(polls)
        polls += 1
    return polls, elapsed - creation_seconds


def main() -> None:
    os.environ.update(ENV)
    counter = CallCounter()
    counter.install()
    run_deployments(counter)
    by_phase: dict[str, Counter[str]] = {}
    for (phase, service, operation), count in counter.calls.items():
        by_phase.setdefault(phase, Counter())[f"{service}.{operation}"] += count
    total = sum(counter.calls.values())
    print("AWS calls made by esdeploy for two deployments of one model (v1, then v2 replacing v1):")
    for phase, calls in sorted(by_phase.items()):
        print(f"  {phase:<24} {sum(calls.values()):>3}  " + ", ".join(f"{k} x{v}" for k, v in sorted(calls.items())))
    print(f"  {'total':<24} {total:>3}  ({total / 2:.1f} per deployment, polls excluded: moto is InService at once)")
    print()
    print("DescribeEndpoint polls for an endpoint that takes 10 minutes to create:")
    for initial, maximum in ((30, 300), (30, 120), (15, 60)):
        polls, late = polls_for(600, initial, maximum)
        print(f"  initial {initial:>3} s, cap {maximum:>3} s: {polls:>2} polls; without the EventBridge wake-up "
              f"InService is noticed up to {late} s late (with it: at once)")


if __name__ == "__main__":
    main()
