"""Configuration layer: settings from environment variables, validated once and cached."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TypeVar

from chalicelib.domain.artifacts import ArtifactLayout
from chalicelib.domain.errors import ConfigurationError
from chalicelib.domain.names import PREFIX_PATTERN

SQS_MAX_DELAY_SECONDS = 900
# API Gateway ends every request at 29 s (the API function's Lambda timeout is 29 s too). The invoke
# route's endpoint call gets ESDEPLOY_INVOKE_TIMEOUT_SECONDS to answer, once, plus up to 3 s to
# connect; the alias read and a cold start need the rest.
API_GATEWAY_LIMIT_SECONDS = 29
MAX_INVOKE_TIMEOUT_SECONDS = 22
# SageMaker's bounds for a production variant's start-up timeouts (CreateEndpointConfig).
SAGEMAKER_STARTUP_TIMEOUT_RANGE = (60, 3600)
# The deploy worker's Lambda timeout is 180 s; the smoke step also reads the artifact and writes.
MAX_SMOKE_TIMEOUT_SECONDS = 150


@dataclass(frozen=True)
class Settings:
    """Everything the Lambdas read from their environment: each stage's values are in .chalice/config.json,
    and a setting it leaves out takes the default written here (and only here)."""

    stage: str
    tasks_table: str
    models_table: str
    requests_queue: str
    deploy_queue: str
    teardown_queue: str
    artifact_bucket: str
    artifact_prefix: str
    allowed_instance_types: tuple[str, ...]
    default_instance_type: str
    max_instance_count: int
    # Resolved for the stage's region when infra/package.sh packages it; None: callers name one.
    default_image_uri: str | None
    default_bake_seconds: int
    max_bake_seconds: int
    sagemaker_role_arn: str
    resource_prefix: str
    ssm_prefix: str
    max_deployed_models: int
    poll_initial_seconds: int
    poll_max_seconds: int
    deploy_deadline_seconds: int
    smoke_min_cosine: float
    smoke_timeout_seconds: int
    container_startup_timeout_seconds: int
    model_download_timeout_seconds: int
    max_body_bytes: int
    stale_lock_seconds: int
    task_retention_days: int
    invoke_timeout_seconds: int
    early_message_delay_seconds: int
    sweep_max_rekicks: int
    intake_retry_seconds: int
    intake_max_wait_seconds: int
    # How long a candidate deployed with promotion "manual" waits for its promote (per-deploy
    # config.promotion_timeout_seconds, up to the max), then the task ends canceled.
    default_promotion_timeout_seconds: int
    max_promotion_timeout_seconds: int
    # Where the functions run (Lambda sets AWS_REGION); None outside AWS and in some tests.
    region: str | None = None

    @property
    def artifact_layout(self) -> ArtifactLayout:
        """Where `esdeploy package --upload` puts artifacts and the "latest" pointers a deploy reads."""
        return ArtifactLayout.of(self.artifact_bucket, self.artifact_prefix)

    @property
    def artifact_root_url(self) -> str:
        return self.artifact_layout.root_url

    def poll_delay(self, polls: int) -> int:
        """Seconds before the next look at a creating endpoint: from the first delay, x1.5 per poll, capped."""
        delay = self.poll_initial_seconds * (1.5 ** max(polls - 1, 0))
        return int(min(delay, self.poll_max_seconds))

    @property
    def task_retention(self) -> timedelta | None:
        """How long an ended task is kept (DynamoDB's TTL then deletes it); None: forever."""
        return timedelta(days=self.task_retention_days) if self.task_retention_days else None

    @property
    def stall_seconds(self) -> int:
        """An active task not written for this long has lost its message (the sweeper re-sends it):
        twice the longest poll delay, plus two minutes for a worker's retries."""
        return 2 * self.poll_max_seconds + 120


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"setting {name} is missing: set it in .chalice/config.json")
    return value


NumberT = TypeVar("NumberT", int, float)


def _bounded(
    env: Mapping[str, str], name: str, default: NumberT, low: NumberT, high: NumberT, parse: Callable[[str], NumberT]
) -> NumberT:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError as exc:
        noun = "an integer" if parse is int else "a number"
        raise ConfigurationError(f"setting {name}={raw!r} is not {noun}") from exc
    if not low <= value <= high:
        raise ConfigurationError(f"setting {name}={value} must be between {low} and {high}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return _bounded(env, name, default, low, high, int)


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _bounded(env, name, default, low, high, float)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate every setting at once so that a broken stage fails with all names visible."""
    prefix = env.get("ESDEPLOY_ARTIFACT_PREFIX", "models/").strip().lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    instance_types = tuple(
        t.strip()
        for t in env.get("ESDEPLOY_ALLOWED_INSTANCE_TYPES", "ml.g5.xlarge,ml.g5.2xlarge").split(",")
        if t.strip()
    )
    default_type = env.get("ESDEPLOY_DEFAULT_INSTANCE_TYPE", instance_types[0] if instance_types else "")
    if not instance_types or default_type not in instance_types:
        raise ConfigurationError(
            "setting ESDEPLOY_DEFAULT_INSTANCE_TYPE must be one of ESDEPLOY_ALLOWED_INSTANCE_TYPES"
        )
    resource_prefix = env.get("ESDEPLOY_RESOURCE_PREFIX", "esd").strip()
    if not PREFIX_PATTERN.fullmatch(resource_prefix):
        raise ConfigurationError(
            f"setting ESDEPLOY_RESOURCE_PREFIX={resource_prefix!r} must match {PREFIX_PATTERN.pattern}"
        )
    ssm_prefix = "/" + env.get("ESDEPLOY_SSM_PREFIX", "esdeploy").strip().strip("/")
    if not re.fullmatch(r"/[A-Za-z0-9_.\-/]+", ssm_prefix):
        raise ConfigurationError(f"setting ESDEPLOY_SSM_PREFIX={ssm_prefix!r} is not a valid SSM path")
    poll_initial = _integer(env, "ESDEPLOY_POLL_INITIAL_SECONDS", 30, 0, SQS_MAX_DELAY_SECONDS)
    poll_max = _integer(env, "ESDEPLOY_POLL_MAX_SECONDS", 300, 0, SQS_MAX_DELAY_SECONDS)
    if poll_max < poll_initial:
        raise ConfigurationError(
            "setting ESDEPLOY_POLL_MAX_SECONDS must not be below ESDEPLOY_POLL_INITIAL_SECONDS"
        )
    max_bake = _integer(env, "ESDEPLOY_MAX_BAKE_SECONDS", 86_400, 0, 14 * 86_400)
    max_promotion = _integer(env, "ESDEPLOY_MAX_PROMOTION_TIMEOUT_SECONDS", 7 * 86_400, 60, 14 * 86_400)
    return Settings(
        stage=env.get("ESDEPLOY_STAGE", "dev"),
        tasks_table=_required(env, "ESDEPLOY_TASKS_TABLE"),
        models_table=_required(env, "ESDEPLOY_MODELS_TABLE"),
        requests_queue=_required(env, "ESDEPLOY_REQUESTS_QUEUE"),
        deploy_queue=_required(env, "ESDEPLOY_DEPLOY_QUEUE"),
        teardown_queue=_required(env, "ESDEPLOY_TEARDOWN_QUEUE"),
        artifact_bucket=_required(env, "ESDEPLOY_ARTIFACT_BUCKET"),
        artifact_prefix=prefix,
        allowed_instance_types=instance_types,
        default_instance_type=default_type,
        max_instance_count=_integer(env, "ESDEPLOY_MAX_INSTANCE_COUNT", 4, 1, 100),
        default_image_uri=env.get("ESDEPLOY_DEFAULT_IMAGE_URI", "").strip() or None,
        default_bake_seconds=_integer(env, "ESDEPLOY_DEFAULT_BAKE_SECONDS", 600, 0, max_bake),
        max_bake_seconds=max_bake,
        sagemaker_role_arn=_required(env, "ESDEPLOY_SAGEMAKER_ROLE_ARN"),
        resource_prefix=resource_prefix,
        ssm_prefix=ssm_prefix,
        # The slots are one DynamoDB item (400 KB at most): 1,000 ids of 128 characters fit.
        max_deployed_models=_integer(env, "ESDEPLOY_MAX_DEPLOYED_MODELS", 10, 1, 1_000),
        poll_initial_seconds=poll_initial,
        poll_max_seconds=poll_max,
        deploy_deadline_seconds=_integer(env, "ESDEPLOY_DEPLOY_DEADLINE_SECONDS", 3600, 60, 86_400),
        smoke_min_cosine=_number(env, "ESDEPLOY_SMOKE_MIN_COSINE", 0.999, 0.0, 1.0),
        smoke_timeout_seconds=_integer(env, "ESDEPLOY_SMOKE_TIMEOUT_SECONDS", 60, 1, MAX_SMOKE_TIMEOUT_SECONDS),
        container_startup_timeout_seconds=_integer(
            env, "ESDEPLOY_CONTAINER_STARTUP_TIMEOUT_SECONDS", 600, *SAGEMAKER_STARTUP_TIMEOUT_RANGE
        ),
        model_download_timeout_seconds=_integer(
            env, "ESDEPLOY_MODEL_DOWNLOAD_TIMEOUT_SECONDS", 600, *SAGEMAKER_STARTUP_TIMEOUT_RANGE
        ),
        max_body_bytes=_integer(env, "ESDEPLOY_MAX_BODY_BYTES", 64 * 1024, 256, 6 * 1024 * 1024),
        stale_lock_seconds=_integer(env, "ESDEPLOY_STALE_LOCK_SECONDS", 120, 1, 86_400),
        task_retention_days=_integer(env, "ESDEPLOY_TASK_RETENTION_DAYS", 90, 0, 36_500),
        invoke_timeout_seconds=_integer(env, "ESDEPLOY_INVOKE_TIMEOUT_SECONDS", 20, 1, MAX_INVOKE_TIMEOUT_SECONDS),
        early_message_delay_seconds=_integer(env, "ESDEPLOY_EARLY_MESSAGE_DELAY_SECONDS", 5, 1, 60),
        sweep_max_rekicks=_integer(env, "ESDEPLOY_SWEEP_MAX_REKICKS", 100, 1, 10_000),
        intake_retry_seconds=_integer(env, "ESDEPLOY_INTAKE_RETRY_SECONDS", 60, 1, SQS_MAX_DELAY_SECONDS),
        intake_max_wait_seconds=_integer(env, "ESDEPLOY_INTAKE_MAX_WAIT_SECONDS", 7200, 0, 86_400),
        default_promotion_timeout_seconds=_integer(
            env, "ESDEPLOY_DEFAULT_PROMOTION_TIMEOUT_SECONDS", min(86_400, max_promotion), 60, max_promotion
        ),
        max_promotion_timeout_seconds=max_promotion,
        region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip() or None,
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read on first use (not at import, so cold start stays cheap)."""
    return load_settings(os.environ)


def handler_queue_name(kind: str) -> str:
    """Queue names for Chalice's SQS decorators, which are evaluated at import and package time."""
    names = {
        "requests": "ESDEPLOY_REQUESTS_QUEUE",
        "deploy": "ESDEPLOY_DEPLOY_QUEUE",
        "teardown": "ESDEPLOY_TEARDOWN_QUEUE",
    }
    stage = os.environ.get("ESDEPLOY_STAGE", "dev")
    default = {"requests": "requests", "deploy": "deploy-tasks", "teardown": "teardown-tasks"}[kind]
    return os.environ.get(names[kind], f"esdeploy-{stage}-{default}")


def dead_letter_name(queue_name: str) -> str:
    """The DLQ of a queue: the same name with `-dlq` (infra/ and the local stack agree)."""
    return f"{queue_name}-dlq"


def dead_letter_queue_name(kind: str) -> str:
    return dead_letter_name(handler_queue_name(kind))
