"""Configuration layer: settings from environment variables, validated once and cached."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Literal

import annotated_types
from pydantic import (
    AliasChoices,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from chalicelib.domain.artifacts import ArtifactLayout
from chalicelib.domain.errors import ConfigurationError
from chalicelib.domain.models import MAX_5XX_ERRORS_PER_MINUTE_RANGE, MAX_MODEL_LATENCY_MS_RANGE
from chalicelib.domain.names import PREFIX_PATTERN
from chalicelib.domain.serving import Processor, Serving, processor_of
from chalicelib.domain.timing import SQS_MAX_DELAY_SECONDS, Timing

# API Gateway ends every request at 29 s (the API function's Lambda timeout is 29 s too). The invoke
# route's endpoint call gets ESDEPLOY_INVOKE_TIMEOUT_SECONDS to answer, once, plus up to 3 s to
# connect; the alias read and a cold start need the rest.
API_GATEWAY_LIMIT_SECONDS = 29
MAX_INVOKE_TIMEOUT_SECONDS = 22
# SageMaker's bounds for a production variant's start-up timeouts (CreateEndpointConfig).
SAGEMAKER_STARTUP_TIMEOUT_RANGE = (60, 3600)
# The deploy worker's Lambda timeout is 180 s; the smoke step also reads the artifact and writes.
MAX_SMOKE_TIMEOUT_SECONDS = 150
SSM_PATH = re.compile(r"/[A-Za-z0-9_.\-/]+")
# The keys of ESDEPLOY_SERVING_IMAGES: a serving and a processor (chalicelib/domain/serving.py).
SERVING_IMAGE_KEYS = tuple(f"{serving.value}-{processor.value}" for serving in Serving for processor in Processor)


def parse_serving_images(text: str) -> dict[str, str]:
    """ESDEPLOY_SERVING_IMAGES, `handler-gpu=URI,tei-cpu=URI,...`: serving-processor -> image URI
    (ValueError naming a malformed entry). `esdeploy doctor` reads a deployed function's the same way."""
    images: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        key, equals, uri = entry.partition("=")
        key, uri = key.strip(), uri.strip()
        if not equals or key not in SERVING_IMAGE_KEYS or not uri:
            raise ValueError(f"entry {entry!r} is not KEY=IMAGE_URI with KEY one of {', '.join(SERVING_IMAGE_KEYS)}")
        images[key] = uri
    return images


class Settings(BaseModel):
    """Everything the Lambdas read from their environment: each stage's values are in .chalice/config.json,
    and a setting it leaves out takes the default written here (and only here). Field `x` is read from
    `ESDEPLOY_X` (`region` from AWS_REGION or AWS_DEFAULT_REGION); build it with `load_settings`, which
    reports every bad or missing variable at once.

    A plain pydantic model over the environment's strings, not pydantic-settings: that package (its
    sources import asyncio and every provider) cost about 120 ms of each cold start for a mapping of
    names that the alias generator below already is (bench/coldstart.py, docs/lifecycle.md)."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=AliasGenerator(validation_alias=lambda name: f"ESDEPLOY_{name.upper()}"),
        extra="ignore",
        validate_default=True,
        # The validator is built on the first `load_settings`, not at import: the five read routes' cold
        # start imports this module before its first request needs settings (bench/coldstart.py).
        defer_build=True,
    )

    stage: str = "dev"
    tasks_table: str
    models_table: str
    requests_queue: str
    deploy_queue: str
    teardown_queue: str
    artifact_bucket: str
    artifact_prefix: str = "models/"
    # A comma-separated list, not JSON: the stages write `ml.g5.xlarge,ml.g5.2xlarge`.
    # Both servings run on GPU and CPU types; a small embedding model serves from a CPU type at a fraction of the price.
    allowed_instance_types: tuple[str, ...] = (
        "ml.g5.xlarge", "ml.g5.2xlarge", "ml.c6i.large", "ml.c6i.xlarge", "ml.m5.large", "ml.m5.xlarge"
    )
    # Empty: the first allowed type.
    default_instance_type: str = ""
    max_instance_count: int = Field(4, ge=1, le=100)
    # Resolved for the stage's region when infra/package.sh packages it; None: callers name one.
    default_image_uri: str | None = None
    # Each serving's image per processor, `handler-gpu=URI,handler-cpu=URI,tei-gpu=URI,tei-cpu=URI`, resolved
    # for the stage's region by infra/package.sh (sagemaker-core's tables, offline); a handler image missing
    # here is the default image above.
    serving_images: dict[str, str] = Field(default_factory=dict)
    max_bake_seconds: int = Field(86_400, ge=0, le=14 * 86_400)
    # Bounded by max_bake_seconds too, so it comes after it.
    default_bake_seconds: int = Field(600, ge=0, le=14 * 86_400)
    sagemaker_role_arn: str
    resource_prefix: str = "esd"
    ssm_prefix: str = "esdeploy"
    # The slots are one DynamoDB item (400 KB at most): 1,000 ids of 128 characters fit.
    max_deployed_models: int = Field(10, ge=1, le=1_000)
    poll_initial_seconds: int = Field(30, ge=0, le=SQS_MAX_DELAY_SECONDS)
    poll_max_seconds: int = Field(300, ge=0, le=SQS_MAX_DELAY_SECONDS)
    deploy_deadline_seconds: int = Field(3600, ge=60, le=86_400)
    smoke_min_cosine: float = Field(0.999, ge=0.0, le=1.0)
    smoke_timeout_seconds: int = Field(60, ge=1, le=MAX_SMOKE_TIMEOUT_SECONDS)
    container_startup_timeout_seconds: int = Field(600, ge=SAGEMAKER_STARTUP_TIMEOUT_RANGE[0],
                                                   le=SAGEMAKER_STARTUP_TIMEOUT_RANGE[1])
    model_download_timeout_seconds: int = Field(600, ge=SAGEMAKER_STARTUP_TIMEOUT_RANGE[0],
                                                le=SAGEMAKER_STARTUP_TIMEOUT_RANGE[1])
    max_body_bytes: int = Field(64 * 1024, ge=256, le=6 * 1024 * 1024)
    stale_lock_seconds: int = Field(120, ge=1, le=86_400)
    task_retention_days: int = Field(90, ge=0, le=36_500)
    invoke_timeout_seconds: int = Field(20, ge=1, le=MAX_INVOKE_TIMEOUT_SECONDS)
    early_message_delay_seconds: int = Field(5, ge=1, le=60)
    sweep_max_rekicks: int = Field(100, ge=1, le=10_000)
    intake_retry_seconds: int = Field(60, ge=1, le=SQS_MAX_DELAY_SECONDS)
    intake_max_wait_seconds: int = Field(7200, ge=0, le=86_400)
    # How long a candidate deployed with promotion "manual" waits for its promote (per-deploy
    # config.promotion_timeout_seconds, up to the max), then the task ends canceled.
    max_promotion_timeout_seconds: int = Field(7 * 86_400, ge=60, le=14 * 86_400)
    # A day, or the max when that is shorter; bounded by the max, so it comes after it.
    default_promotion_timeout_seconds: int = Field(
        default_factory=lambda data: min(86_400, data.get("max_promotion_timeout_seconds", 86_400)),
        ge=60, le=14 * 86_400,
    )
    # esdeploy's own alarms on a green variant, created at the swap and watched during the bake
    # (per-deploy config.max_5xx_errors_per_minute / config.max_model_latency_ms override them).
    rollback_max_5xx_errors_per_minute: int = Field(
        5, ge=MAX_5XX_ERRORS_PER_MINUTE_RANGE[0], le=MAX_5XX_ERRORS_PER_MINUTE_RANGE[1]
    )
    rollback_max_model_latency_ms: int = Field(2000, ge=MAX_MODEL_LATENCY_MS_RANGE[0], le=MAX_MODEL_LATENCY_MS_RANGE[1])
    # The hop between two looks at the alarms during a bake (an alarm's EventBridge event wakes
    # the task sooner).
    bake_check_seconds: int = Field(60, ge=1, le=SQS_MAX_DELAY_SECONDS)
    # How the tables reach DynamoDB: "stdlib" (chalicelib/adapters/dynamodb_http.py; boto3's client where
    # `from_environment` says only boto3 can) or "boto3" (the tests: mock_aws answers botocore only).
    dynamodb_client: Literal["stdlib", "boto3"] = "stdlib"
    # Where the functions run (Lambda sets AWS_REGION); None outside AWS and in some tests.
    region: str | None = Field(None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))

    @field_validator("artifact_prefix")
    @classmethod
    def _a_folder(cls, value: str) -> str:
        prefix = value.lstrip("/")
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    @field_validator("allowed_instance_types", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return tuple(t.strip() for t in value.split(",") if t.strip()) if isinstance(value, str) else value

    @field_validator("serving_images", mode="before")
    @classmethod
    def _serving_images(cls, value: object) -> object:
        return parse_serving_images(value) if isinstance(value, str) else value

    @field_validator("allowed_instance_types")
    @classmethod
    def _at_least_one(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("names no instance type")
        return value

    @field_validator("default_instance_type")
    @classmethod
    def _one_of_allowed(cls, value: str, info: ValidationInfo) -> str:
        allowed: tuple[str, ...] = info.data.get("allowed_instance_types", ())
        if not allowed:
            return value  # reported under ESDEPLOY_ALLOWED_INSTANCE_TYPES
        if not value:
            return allowed[0]
        if value not in allowed:
            raise ValueError(f"must be one of ESDEPLOY_ALLOWED_INSTANCE_TYPES ({', '.join(allowed)})")
        return value

    @field_validator("default_bake_seconds")
    @classmethod
    def _within_max_bake(cls, value: int, info: ValidationInfo) -> int:
        max_bake = info.data.get("max_bake_seconds")
        if max_bake is not None and value > max_bake:
            raise ValueError(f"must be between 0 and {max_bake} (ESDEPLOY_MAX_BAKE_SECONDS)")
        return value

    @field_validator("default_promotion_timeout_seconds")
    @classmethod
    def _within_max_promotion(cls, value: int, info: ValidationInfo) -> int:
        most = info.data.get("max_promotion_timeout_seconds")
        if most is not None and value > most:
            raise ValueError(f"must be between 60 and {most} (ESDEPLOY_MAX_PROMOTION_TIMEOUT_SECONDS)")
        return value

    @field_validator("resource_prefix")
    @classmethod
    def _a_name_prefix(cls, value: str) -> str:
        if not PREFIX_PATTERN.fullmatch(value):
            raise ValueError(f"must match {PREFIX_PATTERN.pattern}")
        return value

    @field_validator("ssm_prefix")
    @classmethod
    def _an_ssm_path(cls, value: str) -> str:
        path = "/" + value.strip("/")
        if not SSM_PATH.fullmatch(path):
            raise ValueError(f"makes {path!r}, which is not a valid SSM path")
        return path

    @field_validator("poll_max_seconds")
    @classmethod
    def _not_below_initial(cls, value: int, info: ValidationInfo) -> int:
        initial = info.data.get("poll_initial_seconds")
        if initial is not None and value < initial:
            raise ValueError(f"must not be below ESDEPLOY_POLL_INITIAL_SECONDS ({initial})")
        return value

    def serving_image(self, serving: Serving, processor: Processor) -> str | None:
        """The stage's image for this serving on this processor; for the handler on the default instance
        type's processor, the default image when ESDEPLOY_SERVING_IMAGES names none."""
        found = self.serving_images.get(f"{serving.value}-{processor.value}")
        if found is None and serving is Serving.HANDLER and processor_of(self.default_instance_type) is processor:
            return self.default_image_uri
        return found

    @property
    def artifact_layout(self) -> ArtifactLayout:
        """Where `esdeploy package --upload` puts artifacts and the "latest" pointers a deploy reads."""
        return ArtifactLayout.of(self.artifact_bucket, self.artifact_prefix)

    @property
    def artifact_root_url(self) -> str:
        return self.artifact_layout.root_url

    @property
    def timing(self) -> Timing:
        """The timing settings as the domain's rules read them (chalicelib/domain/timing.py)."""
        return Timing(
            poll_initial_seconds=self.poll_initial_seconds,
            poll_max_seconds=self.poll_max_seconds,
            bake_check_seconds=self.bake_check_seconds,
            deploy_deadline_seconds=self.deploy_deadline_seconds,
            default_promotion_timeout_seconds=self.default_promotion_timeout_seconds,
            early_message_delay_seconds=self.early_message_delay_seconds,
            intake_retry_seconds=self.intake_retry_seconds,
        )

    def poll_delay(self, polls: int) -> int:
        """Seconds before the next look at a creating endpoint (Timing.poll_delay)."""
        return self.timing.poll_delay(polls)

    @property
    def task_retention(self) -> timedelta | None:
        """How long an ended task is kept (DynamoDB's TTL then deletes it); None: forever."""
        return timedelta(days=self.task_retention_days) if self.task_retention_days else None

    @property
    def stall_seconds(self) -> int:
        """An active task not written for this long has lost its message (Timing.stall_seconds)."""
        return self.timing.stall_seconds


def _problem(error: ErrorDetails) -> str:
    """One line per bad variable, in the words the hand-written parser used."""
    name = str(error["loc"][0]) if error["loc"] else "settings"
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return f"setting {name} is missing: set it in .chalice/config.json"
    if kind in {"int_parsing", "int_from_float"}:
        return f"setting {name}={value!r} is not an integer"
    if kind == "float_parsing":
        return f"setting {name}={value!r} is not a number"
    if kind in {"greater_than_equal", "less_than_equal"}:
        low, high = _bounds(name)
        return f"setting {name}={value} must be between {low} and {high}"
    if kind == "value_error":
        return f"setting {name}={value!r} {error.get('ctx', {}).get('error', error['msg'])}"
    return f"setting {name}={value!r}: {error['msg']}"


def _bounds(variable: str) -> tuple[object, object]:
    field = next(f for f in Settings.model_fields.values() if f.validation_alias == variable)
    low = next(m.ge for m in field.metadata if isinstance(m, annotated_types.Ge))
    high = next(m.le for m in field.metadata if isinstance(m, annotated_types.Le))
    return low, high


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate every setting at once so that a broken stage fails with all names visible."""
    try:
        # A blank value is an unset one: the setting takes its default, or is reported missing.
        return Settings.model_validate({name: value.strip() for name, value in env.items() if value.strip()})
    except ValidationError as exc:
        # A default computed from a bad setting is not called: that setting is reported instead.
        problems = [_problem(error) for error in exc.errors() if error["type"] != "default_factory_not_called"]
        summary = problems[0] if len(problems) == 1 else f"{len(problems)} settings are wrong: " + "; ".join(problems)
        raise ConfigurationError(summary) from None


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
