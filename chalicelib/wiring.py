"""Composition root: builds the adapters and services once; tests and the local stack swap them."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from chalicelib.config import Settings, settings
from chalicelib.ports import (
    Aliases,
    AliasMirror,
    Artifacts,
    Clock,
    Hosting,
    ModelLocks,
    Queue,
    TaskStore,
)
from chalicelib.services.dead_letters import DeadLetterService
from chalicelib.services.deployer import Deployer
from chalicelib.services.models import ModelActions, ModelReads
from chalicelib.services.outbox import Outbox, TaskWriter
from chalicelib.services.remover import Remover
from chalicelib.services.sweeper import Sweeper
from chalicelib.services.tasks import TaskService


@dataclass
class Container:
    """Every adapter the services use. Build one with `aws_container()` or by hand in tests."""

    settings: Settings
    store: TaskStore
    locks: ModelLocks
    aliases: Aliases
    mirror: AliasMirror
    deploy_queue: Queue
    teardown_queue: Queue
    artifacts: Artifacts
    clock: Clock
    # SageMaker clients cost time to build: only the functions that talk to SageMaker build them.
    hosting_factory: Callable[[], Hosting] | None = None
    _hosting: Hosting | None = field(default=None, repr=False)

    @property
    def hosting(self) -> Hosting:
        if self._hosting is None:
            if self.hosting_factory is None:
                raise RuntimeError("this container has no hosting: set hosting_factory or _hosting")
            self._hosting = self.hosting_factory()
        return self._hosting

    @property
    def outbox(self) -> Outbox:
        return Outbox(deploy_queue=self.deploy_queue, teardown_queue=self.teardown_queue)

    @property
    def writer(self) -> TaskWriter:
        return TaskWriter(store=self.store, locks=self.locks, outbox=self.outbox, clock=self.clock)

    @property
    def tasks(self) -> TaskService:
        return TaskService(
            settings=self.settings, store=self.store, locks=self.locks, outbox=self.outbox, writer=self.writer,
            clock=self.clock,
        )

    @property
    def deployer(self) -> Deployer:
        return Deployer(
            settings=self.settings, store=self.store, aliases=self.aliases, mirror=self.mirror, writer=self.writer,
            artifacts=self.artifacts, hosting=self.hosting, clock=self.clock,
        )

    @property
    def remover(self) -> Remover:
        return Remover(
            resource_prefix=self.settings.resource_prefix, store=self.store, aliases=self.aliases,
            mirror=self.mirror, outbox=self.outbox, writer=self.writer, hosting=self.hosting, clock=self.clock,
        )

    @property
    def model_reads(self) -> ModelReads:
        return ModelReads(aliases=self.aliases)

    @property
    def model_actions(self) -> ModelActions:
        return ModelActions(
            store=self.store, locks=self.locks, aliases=self.aliases, mirror=self.mirror, outbox=self.outbox,
            hosting=self.hosting, clock=self.clock,
        )

    @property
    def dead_letters(self) -> DeadLetterService:
        return DeadLetterService(store=self.store, writer=self.writer)

    @property
    def sweeper(self) -> Sweeper:
        return Sweeper(
            resource_prefix=self.settings.resource_prefix, stall_seconds=2 * self.settings.poll_max_seconds + 120,
            store=self.store, locks=self.locks, aliases=self.aliases, outbox=self.outbox, hosting=self.hosting,
            clock=self.clock,
        )


def aws_container(config: Settings | None = None) -> Container:
    """The real thing: boto3 clients (they honour AWS_ENDPOINT_URL, so moto works too)."""
    import boto3
    from botocore.config import Config

    from chalicelib.adapters.dynamodb_models import DynamoAliases, DynamoModelLocks
    from chalicelib.adapters.dynamodb_tasks import DynamoTaskStore
    from chalicelib.adapters.s3_artifacts import S3Artifacts
    from chalicelib.adapters.sqs_queue import SqsQueue
    from chalicelib.adapters.ssm_mirror import SsmAliasMirror
    from chalicelib.adapters.system_clock import SystemClock
    from chalicelib.metrics import MeteredTaskStore

    config = config or settings()
    retries = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)
    dynamodb = boto3.resource("dynamodb", config=retries)
    sqs = boto3.client("sqs", config=retries)
    models_table = dynamodb.Table(config.models_table)

    def hosting() -> Hosting:
        from chalicelib.adapters.sagemaker_hosting import SageMakerHosting, make_sagemaker_clients

        sagemaker, runtime = make_sagemaker_clients()
        return SageMakerHosting(sagemaker, runtime, role_arn=config.sagemaker_role_arn)

    return Container(
        settings=config,
        store=MeteredTaskStore(DynamoTaskStore(dynamodb.Table(config.tasks_table))),
        locks=DynamoModelLocks(models_table),
        aliases=DynamoAliases(models_table),
        mirror=SsmAliasMirror(boto3.client("ssm", config=retries), config.ssm_prefix),
        deploy_queue=SqsQueue(sqs, config.deploy_queue),
        teardown_queue=SqsQueue(sqs, config.teardown_queue),
        artifacts=S3Artifacts(boto3.client("s3", config=retries)),
        clock=SystemClock(),
        hosting_factory=hosting,
    )


_current: Container | None = None
_lock = threading.Lock()


def container() -> Container:
    """The process-wide container, built on first use (a warm Lambda reuses it)."""
    global _current
    with _lock:
        if _current is None:
            _current = aws_container()
        return _current


def use(replacement: Container | None) -> None:
    """Swap the container (tests, the local stack); None makes the next use build a fresh one."""
    global _current
    with _lock:
        _current = replacement
