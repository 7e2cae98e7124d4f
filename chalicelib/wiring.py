"""Composition root: the adapters, built once per process; each handler builds only the service it calls."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib.config import Settings, settings
from chalicelib.ports import (
    Alarms,
    Aliases,
    AliasMirror,
    Artifacts,
    Clock,
    Hosting,
    LiveModelSlots,
    ModelLocks,
    Queue,
    QueueMessages,
    Scaling,
    TaskStore,
)
from chalicelib.services.outbox import Outbox, TaskWriter

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ServiceT = TypeVar("ServiceT", bound="DataclassInstance")


def _no_hosting() -> Hosting:
    raise RuntimeError("these adapters have no hosting: pass hosting_factory")


def _no_scaling() -> Scaling:
    raise RuntimeError("these adapters have no scaling: pass scaling_factory")


def _no_alarms() -> Alarms:
    raise RuntimeError("these adapters have no alarms: pass alarms_factory")


@dataclass
class Adapters:
    """Settings and one adapter per port. Build them with `aws_adapters()`, or by hand in tests.

    A service declares the ports it needs as its dataclass fields, and `build` passes each one by
    name, so a handler pays only for what its service uses: GET /models (ModelReads: the aliases)
    never builds the SageMaker clients that ModelActions and the deploy worker need.
    """

    settings: Settings
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    slots: LiveModelSlots
    mirror: AliasMirror
    deploy_queue: Queue
    teardown_queue: Queue
    requests_queue: Queue
    artifacts: Artifacts
    clock: Clock
    # SageMaker clients cost time to build: `hosting` calls this on its first use only.
    hosting_factory: Callable[[], Hosting] = _no_hosting
    # Likewise the Application Auto Scaling client, which only the workers need.
    scaling_factory: Callable[[], Scaling] = _no_scaling
    # And the CloudWatch client (the deploy and teardown workers).
    alarms_factory: Callable[[], Alarms] = _no_alarms

    @cached_property
    def hosting(self) -> Hosting:
        return self.hosting_factory()

    @cached_property
    def alarms(self) -> Alarms:
        return self.alarms_factory()

    @cached_property
    def scaling(self) -> Scaling:
        return self.scaling_factory()

    @cached_property
    def messages(self) -> QueueMessages:
        """The work queues' wire format, imported on a worker's first message (the HTTP function never reads one)."""
        from chalicelib.adapters import queue_messages

        return queue_messages

    @property
    def outbox(self) -> Outbox:
        return self.build(Outbox)

    @property
    def writer(self) -> TaskWriter:
        return self.build(TaskWriter)

    def build(self, service: type[ServiceT]) -> ServiceT:
        return service(**{field.name: getattr(self, field.name) for field in fields(service)})


# Every boto3 client's retries and timeouts; the stdlib DynamoDB client keeps the same.
MAX_ATTEMPTS = 5
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20


def boto3_client(service_name: str) -> Any:
    """A boto3 client with our retries and timeouts (they honour AWS_ENDPOINT_URL, so moto works too).
    boto3 is imported here, on the first client a handler needs: the read routes need none."""
    import boto3
    from botocore.config import Config

    retries = Config(retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                     connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)
    return boto3.client(service_name, config=retries)  # type: ignore[call-overload]


def dynamodb_client(config: Settings) -> Any:
    """The client the tables speak through, in Python values: the stdlib one (chalicelib/adapters/dynamodb_http.py)
    unless ESDEPLOY_DYNAMODB_CLIENT=boto3 or the environment is one only boto3 knows how to reach."""
    if config.dynamodb_client == "stdlib":
        import os

        from chalicelib.adapters.dynamodb_http import from_environment

        stdlib = from_environment(config.region, os.environ, max_attempts=MAX_ATTEMPTS,
                                  connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)
        if stdlib is not None:
            return stdlib
    from chalicelib.adapters.dynamodb_table import speak_python_types

    return speak_python_types(boto3_client("dynamodb"))


def aws_adapters(config: Settings | None = None, hosting_factory: Callable[[], Hosting] | None = None) -> Adapters:
    """The real thing: AWS's APIs through boto3 clients (DynamoDB through the stdlib client where it can), each
    made on first use. Hosting is SageMaker unless `hosting_factory` says otherwise (the local stack's processes,
    a test's fake)."""
    from chalicelib.adapters.dynamodb_models import DynamoAliases, DynamoLiveModelSlots, DynamoModelLocks
    from chalicelib.adapters.dynamodb_table import DocumentTable
    from chalicelib.adapters.dynamodb_tasks import DynamoTaskStore
    from chalicelib.adapters.lazy_clients import OnFirstUse
    from chalicelib.adapters.s3_artifacts import S3Artifacts
    from chalicelib.adapters.sqs_queue import SqsQueue
    from chalicelib.adapters.ssm_mirror import SsmAliasMirror
    from chalicelib.adapters.system_clock import SystemClock
    from chalicelib.metrics import MeteredTaskStore

    config = config or settings()
    # Each client is made when a handler first calls it (chalicelib/adapters/lazy_clients.py).
    dynamodb = OnFirstUse(lambda: dynamodb_client(config))
    sqs = OnFirstUse(lambda: boto3_client("sqs"))
    models_table = OnFirstUse(lambda: DocumentTable(dynamodb, config.models_table))
    tasks_table = OnFirstUse(lambda: DocumentTable(dynamodb, config.tasks_table))

    def sagemaker_hosting() -> Hosting:
        from chalicelib.adapters.sagemaker_hosting import SageMakerHosting, make_sagemaker_clients

        sagemaker, runtime = make_sagemaker_clients()
        return SageMakerHosting(sagemaker, runtime, role_arn=config.sagemaker_role_arn)

    def application_autoscaling() -> Scaling:
        from chalicelib.adapters.application_autoscaling import ApplicationAutoScaling

        return ApplicationAutoScaling(boto3_client("application-autoscaling"))

    def cloudwatch_alarms() -> Alarms:
        from chalicelib.adapters.cloudwatch_alarms import CloudWatchAlarms

        return CloudWatchAlarms(boto3_client("cloudwatch"))

    return Adapters(
        settings=config,
        store=MeteredTaskStore(DynamoTaskStore(tasks_table, config.task_retention)),
        locks=DynamoModelLocks(models_table),
        aliases=DynamoAliases(models_table),
        slots=DynamoLiveModelSlots(models_table),
        mirror=SsmAliasMirror(OnFirstUse(lambda: boto3_client("ssm")), config.ssm_prefix),
        deploy_queue=SqsQueue(sqs, config.deploy_queue),
        teardown_queue=SqsQueue(sqs, config.teardown_queue),
        requests_queue=SqsQueue(sqs, config.requests_queue),
        artifacts=S3Artifacts(OnFirstUse(lambda: boto3_client("s3"))),
        clock=SystemClock(),
        hosting_factory=hosting_factory or sagemaker_hosting,
        scaling_factory=application_autoscaling,
        alarms_factory=cloudwatch_alarms,
    )


_current: Adapters | None = None
_lock = threading.Lock()


def adapters() -> Adapters:
    """The process-wide adapters, built on first use (a warm Lambda reuses them)."""
    global _current
    with _lock:
        if _current is None:
            _current = aws_adapters()
        return _current


def service(kind: type[ServiceT]) -> ServiceT:
    """The service a handler calls, built from the process-wide adapters."""
    return adapters().build(kind)


def use(replacement: Adapters | None) -> None:
    """Swap the adapters (tests, the local stack); None makes the next use build fresh ones."""
    global _current
    with _lock:
        _current = replacement
