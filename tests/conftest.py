"""Shared fixtures: settings, in-memory adapters, and moto-backed AWS with our resources."""
from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws

from chalicelib import wiring
from chalicelib.config import Settings, load_settings
from esdeploy.local.embedded_aws import create_resources, keep_dynamodb_atomic
from esdeploy.local.environment import stage_environment
from tests.fakes.artifacts import publish_to_s3
from tests.fakes.memory import (
    InMemoryAlarms,
    InMemoryAliases,
    InMemoryAliasMirror,
    InMemoryArtifacts,
    InMemoryLiveModelSlots,
    InMemoryModelLocks,
    InMemoryModels,
    InMemoryQueue,
    InMemoryScaling,
    InMemoryTaskStore,
    ManualClock,
)
from tests.iam.recorder import Recorder

IAM_RECORDER = pytest.StashKey[Recorder]()

# moto's mock_aws() gives each test a new default boto3 session, and every new botocore session reads
# each service's model files again (0.05 s a client: most of a moto test's set-up). The models are
# data that never change during a run, so the whole run shares one loader.
botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)  # type: ignore[assignment]

# The serving image for the test stage's region (infra/package.sh resolves it per region for dev/prod).
TEST_IMAGE_URI = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
    "2.6.0-transformers4.49.0-gpu-py312-cu124-ubuntu22.04"
)
# Each serving's image per processor in that region (infra/finalize.py writes these for dev/prod).
TEST_TEI_IMAGE_URI = "683313688378.dkr.ecr.us-east-1.amazonaws.com/tei:2.0.1-tei1.8.2-gpu-py310-cu122-ubuntu22.04"
TEST_TEI_CPU_IMAGE_URI = "683313688378.dkr.ecr.us-east-1.amazonaws.com/tei-cpu:2.0.1-tei1.8.2-cpu-py310-ubuntu22.04"
TEST_SERVING_IMAGES = ",".join(
    [
        f"handler-gpu={TEST_IMAGE_URI}",
        f"handler-cpu={TEST_IMAGE_URI.replace('gpu-py312-cu124', 'cpu-py312')}",
        f"tei-gpu={TEST_TEI_IMAGE_URI}",
        f"tei-cpu={TEST_TEI_CPU_IMAGE_URI}",
    ]
)

# The test stage: the variables every stage shares (.chalice/config.json), then its own.
TEST_ENV: dict[str, str] = {
    **stage_environment(None),
    "ESDEPLOY_STAGE": "test",
    "ESDEPLOY_TASKS_TABLE": "esdeploy-test-tasks",
    "ESDEPLOY_MODELS_TABLE": "esdeploy-test-models",
    "ESDEPLOY_REQUESTS_QUEUE": "esdeploy-test-requests",
    "ESDEPLOY_DEPLOY_QUEUE": "esdeploy-test-deploy-tasks",
    "ESDEPLOY_TEARDOWN_QUEUE": "esdeploy-test-teardown-tasks",
    "ESDEPLOY_ARTIFACT_BUCKET": "esdeploy-test-artifacts",
    # moto knows no ml.g5.*: the contract and adapter cases use ml.m5.large.
    "ESDEPLOY_ALLOWED_INSTANCE_TYPES": "ml.g5.xlarge,ml.g5.2xlarge,ml.m5.large",
    "ESDEPLOY_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/esdeploy-test-sagemaker",
    "ESDEPLOY_SSM_PREFIX": "/esdeploy/test",
    "ESDEPLOY_MAX_DEPLOYED_MODELS": "3",
    "ESDEPLOY_DEFAULT_IMAGE_URI": TEST_IMAGE_URI,
    "ESDEPLOY_SERVING_IMAGES": TEST_SERVING_IMAGES,
    # mock_aws answers botocore's requests in-process; the stdlib DynamoDB client would reach for the network.
    # It has its own suite (tests/adapters/test_dynamodb_http.py), the store contract's `dynamodb-stdlib`
    # backend, and the e2e tests, whose local stack uses it.
    "ESDEPLOY_DYNAMODB_CLIENT": "boto3",
}

# app.py names its SQS event sources' queues from the environment at import, as `chalice package` and the local
# stack do for a stage: imported here first, under the test stage's variables, Chalice's queue -> function map
# (app.event_sources, read by esdeploy.local.pollers.queue_functions) names the queues the tests create.
with mock.patch.dict(os.environ, TEST_ENV):
    import app  # noqa: F401


@pytest.fixture(autouse=True)
def iam_checked_calls(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    """Every AWS call an app.py handler makes is evaluated against the IAM policies we ship
    (tests/iam). Autouse fixtures come first, so this one also sees calls made while other
    fixtures tear down (a scenario drains its queues there)."""
    with Recorder().installed() as recorder:
        request.node.stash[IAM_RECORDER] = recorder
        yield recorder
    report = recorder.take_report()
    if report:
        pytest.fail(report, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A denied call fails the test itself, with the IAM report (the product's own reaction to
    the AccessDenied, if any, is chained below it)."""
    try:
        return (yield)
    finally:
        recorder = item.stash.get(IAM_RECORDER, None)
        report = recorder.take_report() if recorder else None
        if report:
            raise AssertionError(report)


@pytest.fixture
def test_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return dict(TEST_ENV)


@pytest.fixture
def settings(test_env: dict[str, str]) -> Settings:
    return load_settings(test_env)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def memory_adapters(settings: Settings, clock: ManualClock) -> Iterator[wiring.Adapters]:
    """Every port in memory; hosting is added by the tests that need it."""
    models = InMemoryModels()
    adapters = wiring.Adapters(
        settings=settings,
        store=InMemoryTaskStore(settings.task_retention),
        locks=InMemoryModelLocks(models),
        aliases=InMemoryAliases(models),
        slots=InMemoryLiveModelSlots(),
        mirror=InMemoryAliasMirror(),
        deploy_queue=InMemoryQueue("deploy-tasks"),
        teardown_queue=InMemoryQueue("teardown-tasks"),
        requests_queue=InMemoryQueue("requests"),
        artifacts=InMemoryArtifacts(),
        clock=clock,
        scaling_factory=InMemoryScaling,
        alarms_factory=lambda: InMemoryAlarms(clock),
    )
    wiring.use(adapters)
    yield adapters
    wiring.use(None)


@pytest.fixture
def aws(test_env: dict[str, str], settings: Settings) -> Iterator[dict[str, Any]]:
    """moto in-process, as strict as the local stack's: infra/template.yaml's tables, queues (and
    DLQs) and bucket, created by moto's CloudFormation, and DynamoDB's atomic conditional writes."""
    keep_dynamodb_atomic()
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        urls = create_resources(session, test_env)
        yield {"session": session, "queues": urls}


@pytest.fixture
def aws_adapters(aws: dict[str, Any], settings: Settings) -> Iterator[wiring.Adapters]:
    adapters = wiring.aws_adapters(settings)
    wiring.use(adapters)
    yield adapters
    wiring.use(None)


@pytest.fixture
def upload(aws: dict[str, Any], settings: Settings) -> Callable[..., str]:
    """`upload("m1")`: what `esdeploy package --upload` leaves in the moto bucket; returns the archive URL."""
    s3 = aws["session"].client("s3")

    def upload_model(model_id: str, manifest: dict[str, Any] | None = None, **options: Any) -> str:
        return publish_to_s3(s3, settings.artifact_root_url, model_id, manifest, **options)

    return upload_model


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback HTTP server that accepts requests and never answers them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


# The folders whose files take longest, first. pytest-xdist's loadfile hands each worker whole files as it
# frees up, in collection order under `--no-loadscope-reorder` (the Makefile's; by default it puts the files
# with the most tests first, so the e2e modules, few tests each but minutes long, came last and one worker
# ran the final one alone for over a minute). Order inside a file is unchanged.
LONGEST_FIRST = ("e2e", "serving", "scenarios")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        parts = item.path.relative_to(config.rootpath).parts
        folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
        return LONGEST_FIRST.index(folder) if folder in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests stay together and in order


# The schemathesis run (tests/e2e/test_contract_fuzz.py) puts its numbers on its test report; this
# hook lives here, not in tests/e2e, because under pytest-xdist only the controller writes the
# summary and it never loads the conftest files of folders that its workers collect.
FUZZ_REPORT = "contract fuzz"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The schemathesis run's numbers where `make test` shows them, -s or not, with or without -n."""
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == FUZZ_REPORT and getattr(report, "when", "call") == "call"
    ]
    for line in lines:
        terminalreporter.write_sep("-", FUZZ_REPORT)
        terminalreporter.write_line(line)
