"""API layer: every answer's wire shape, one pydantic model each, built from the domain objects.

These models are the one source of what an answer looks like: the routes serialise through them and
the OpenAPI document (`chalicelib/api/openapi.py`) is generated from them. Fields that are only sent
when there is something to say are left out rather than sent as null (`Absent`); fields that are
always there but may be empty are nullable.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from chalicelib.domain.errors import InvocationError
from chalicelib.domain.models import Alias, DeployConfig, Stage, Task, TaskKind, TaskStatus, iso

# ISO-8601 UTC with microseconds and a Z (`iso()`); a string so the wire form never changes.
Timestamp = Annotated[
    str,
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-12-01T20:50:22.099012Z"]}),
]


class Wire(BaseModel):
    """An answer: `additionalProperties: false` in the document, so a field nobody documented fails
    the schemathesis run instead of reaching callers unannounced."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True, defer_build=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class TaskEventOut(Wire):
    at: Timestamp
    stage: Stage
    status: TaskStatus
    detail: str | SkipJsonSchema[None] = Field(default=None, description="What happened, if worth saying")


class AutoscalingOut(Wire):
    """Application Auto Scaling target tracking on a variant's instance count."""

    min_instances: int = Field(ge=1)
    max_instances: int = Field(ge=1)
    target_invocations_per_instance: int = Field(gt=0, description="Invocations per instance a minute")


class DeployConfigOut(Wire):
    """A deploy's config with every default of the stage filled in."""

    instance_type: str = Field(examples=["ml.g5.xlarge"])
    initial_instance_count: int = Field(ge=1)
    model_data_url: str = Field(examples=["s3://esdeploy-dev-artifacts/models/minilm/3f9a0c1e5b7d2a4c/model.tar.gz"])
    image_uri: str
    bake_seconds: int = Field(ge=0)
    content_hash: str | None = Field(
        description="The pinned artifact's content hash (its manifest's content_sha256); null only on tasks "
        "stored before artifacts were pinned at submit"
    )
    parity_check: Literal["required", "skip"] = Field(
        description="`skip` only when the request said so: the smoke test then checks shapes, not embeddings"
    )
    promotion: Literal["auto", "manual"] = Field(
        default="auto",
        description="`manual`: after the gate the candidate waits in stage awaiting_promotion for "
        "POST /deploy/{task_id}/promote",
    )
    promotion_timeout_seconds: int | SkipJsonSchema[None] = Field(
        default=None, description="With `manual`: how long the candidate waits for its promote, then it is canceled"
    )
    match_live_instance_count: bool = Field(
        default=False,
        description="The request named no instance count: the preflight set `initial_instance_count` to what "
        "the live variant runs",
    )
    autoscaling: AutoscalingOut | SkipJsonSchema[None] = Field(
        default=None, description="Target tracking registered on green before the swap, as the request gave it"
    )
    rollback_alarms: list[str] | SkipJsonSchema[None] = Field(
        default=None, description="The caller's CloudWatch alarms watched during the bake, as the request gave them"
    )
    max_5xx_errors_per_minute: int | SkipJsonSchema[None] = Field(
        default=None, ge=0, description="The request's threshold of esdeploy's 5XX alarm (else the stage's)"
    )
    max_model_latency_ms: int | SkipJsonSchema[None] = Field(
        default=None, ge=1, description="The request's threshold of esdeploy's latency alarm (else the stage's)"
    )
    serving: Literal["handler", "tei"] = Field(
        default="handler",
        description="What runs in the endpoint: esdeploy's handler, or text-embeddings-inference (TEI)",
    )
    dtype: Literal["float16", "float32"] | SkipJsonSchema[None] = Field(
        default=None, description="The precision the request asked for (else the serving's default)"
    )
    dimension: int | SkipJsonSchema[None] = Field(
        default=None, ge=1,
        description="The model's embedding dimension, kept once green answered with it in the smoke test: it "
        "bounds how many texts one invoke answer can carry",
    )


def config_out(config: DeployConfig) -> DeployConfigOut:
    """The answer's config, mapped from the task's typed config (its storage form is the adapter's)."""
    scaling, alarms = config.autoscaling, config.alarms
    optional: dict[str, Any] = {
        "promotion_timeout_seconds": config.promotion_timeout_seconds,
        "autoscaling": None if scaling is None else AutoscalingOut(
            min_instances=scaling.min_instances,
            max_instances=scaling.max_instances,
            target_invocations_per_instance=scaling.target_invocations_per_instance,
        ),
        "rollback_alarms": list(alarms.names) or None,
        "max_5xx_errors_per_minute": alarms.max_5xx_errors_per_minute,
        "max_model_latency_ms": alarms.max_model_latency_ms,
        "dtype": config.dtype.value if config.dtype is not None else None,
        "dimension": config.dimension,
    }
    return DeployConfigOut(
        instance_type=config.instance_type,
        initial_instance_count=config.initial_instance_count,
        model_data_url=config.model_data_url,
        image_uri=config.image_uri,
        bake_seconds=config.bake_seconds,
        content_hash=config.content_hash,
        parity_check=config.parity_check.value,
        promotion=config.promotion.value,
        match_live_instance_count=config.match_live_instance_count,
        serving=config.serving.value,
        # Absent rather than null: the document's fields that are only sent when set.
        **{name: value for name, value in optional.items() if value is not None},
    )


class NoConfig(Wire):
    """A deletion task has no config: always `{}`."""


class _TaskOut(Wire):
    task_id: str
    embedding_model_id: str
    status: TaskStatus = Field(
        description="Embedding Studio's task status: pending, processing, done, failed, refused, canceled"
    )
    stage: Stage = Field(description="Where the task is, or where it ended")
    created_at: Timestamp
    updated_at: Timestamp
    source: Literal["http", "sqs"] = Field(description="Sent over HTTP, or by automation on the requests queue")
    events: list[TaskEventOut] = Field(description="The task's history, oldest first")
    detail: str | SkipJsonSchema[None] = Field(default=None, description="The latest thing worth saying")


class DeployTaskOut(_TaskOut):
    """A deploy task."""

    kind: Literal["deploy"]
    config: DeployConfigOut
    endpoint_name: str | SkipJsonSchema[None] = Field(
        default=None, description="The green variant's name, once the deploy has chosen it"
    )
    promote_by: Timestamp | SkipJsonSchema[None] = Field(
        default=None, description="While its candidate awaits promotion: when the task ends canceled unpromoted"
    )
    live_at: Timestamp | SkipJsonSchema[None] = Field(
        default=None,
        description="When the alias moved to this deploy's variant (the swap); the bake (stage baking) runs from here",
    )


class DeleteTaskOut(_TaskOut):
    """A deletion task."""

    kind: Literal["delete"]
    config: NoConfig
    reason: str | SkipJsonSchema[None] = Field(default=None, description="The reason the caller gave")


def _common(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "embedding_model_id": task.embedding_model_id,
        "status": task.status,
        "stage": task.stage,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "source": task.source,
        "events": [TaskEventOut(at=iso(e.at), stage=e.stage, status=e.status, detail=e.detail) for e in task.events],
        "detail": task.detail,
    }


def task_out(task: Task) -> DeployTaskOut | DeleteTaskOut:
    if task.kind == TaskKind.DEPLOY:
        return DeployTaskOut(
            **_common(task),
            kind="deploy",
            config=config_out(task.deploy_config),
            endpoint_name=task.variant,
            promote_by=iso(task.promote_by)
            if task.stage == Stage.AWAITING_PROMOTION and task.is_active and task.promote_by is not None
            else None,
            live_at=iso(task.live_at) if task.live_at else None,
        )
    return DeleteTaskOut(**_common(task), kind="delete", config=NoConfig(), reason=task.reason)


def task_body(task: Task) -> dict[str, Any]:
    return task_out(task).body()


class AliasOut(Wire):
    """A model's alias: which variant answers for it now, and which did before (until its teardown)."""

    embedding_model_id: str
    endpoint_name: str | None = Field(description="The live variant")
    content_hash: str | None = Field(description="The content hash of the live variant's artifact")
    previous_endpoint_name: str | None = Field(description="The variant a rollback returns to, during the bake period")
    previous_content_hash: str | None = Field(description="The content hash of the previous variant's artifact")
    task_id: str | None = Field(description="The deploy task that made the live variant live")
    previous_task_id: str | None = Field(description="The deploy task that made the previous variant live")
    swapped_at: Timestamp | None
    version: int = Field(description="Grows by one with every write of the alias")

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")  # nulls are part of this shape


def alias_out(alias: Alias) -> AliasOut:
    return AliasOut(
        embedding_model_id=alias.embedding_model_id,
        endpoint_name=alias.live_variant,
        content_hash=alias.live_content_hash,
        previous_endpoint_name=alias.previous_variant,
        previous_content_hash=alias.previous_content_hash if alias.previous_variant else None,
        task_id=alias.task_id,
        previous_task_id=alias.previous_task_id if alias.previous_variant else None,
        swapped_at=iso(alias.swapped_at) if alias.swapped_at else None,
        version=alias.version,
    )


def alias_body(alias: Alias) -> dict[str, Any]:
    return alias_out(alias).body()


class ModelOut(AliasOut):
    """One model: its alias, and the candidate of a deploy awaiting promotion (all null when none)."""

    candidate_endpoint_name: str | None = Field(description="The candidate awaiting promotion")
    candidate_content_hash: str | None = Field(description="The content hash of the candidate's artifact")
    candidate_task_id: str | None = Field(description="The deploy task to promote (or cancel)")
    candidate_promote_by: Timestamp | None = Field(description="When that task ends canceled unpromoted")


def model_out(alias: Alias, candidate: Task | None) -> ModelOut:
    return ModelOut(
        **alias_out(alias).model_dump(),
        candidate_endpoint_name=candidate.variant if candidate else None,
        candidate_content_hash=candidate.deploy_config.content_hash if candidate else None,
        candidate_task_id=candidate.task_id if candidate else None,
        candidate_promote_by=iso(candidate.promote_by) if candidate and candidate.promote_by else None,
    )


def model_body(alias: Alias, candidate: Task | None) -> dict[str, Any]:
    """GET /models/{id}: the alias, and the candidate awaiting promotion (null when none)."""
    return model_out(alias, candidate).body()


class ModelsOut(Wire):
    models: list[ModelOut] = Field(
        description="Every model with a live variant or a candidate awaiting promotion, as GET /models/{id} shows it"
    )

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def models_body(views: list[tuple[Alias, Task | None]]) -> dict[str, Any]:
    """GET /models: each model as GET /models/{id} shows it."""
    return ModelsOut(models=[model_out(alias, candidate) for alias, candidate in views]).body()


class InvokeOut(Wire):
    """The live variant's answer, and which variant gave it."""

    embeddings: list[list[float]] = Field(description="One vector per input, in input order")
    model: str = Field(description="The model id the endpoint's manifest names (the alias's, for TEI)")
    dimension: int = Field(ge=1)
    endpoint_name: str = Field(description="The variant that answered")
    serving: Literal["handler", "tei"] = Field(description="Which serving answered (its answer shape says)")
    target: Literal["candidate"] | SkipJsonSchema[None] = Field(
        default=None, description="Sent when the candidate awaiting promotion answered"
    )
    task_id: str | SkipJsonSchema[None] = Field(
        default=None, description="With `target`: the deploy task whose candidate answered"
    )


def invoke_body(answer: dict[str, Any]) -> dict[str, Any]:
    """The endpoint's answer in our shape; one that is not (a handler we did not package) is the
    endpoint's failure, a 502, never a 500 of ours."""
    known = {name: answer.get(name) for name in InvokeOut.model_fields}
    try:
        return InvokeOut.model_validate(known).body()
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise InvocationError(
            f"endpoint {answer.get('endpoint_name')} answered an embedding without a usable `{where}` "
            f"({problem['msg']}); it must answer {{\"embeddings\", \"model\", \"dimension\"}} "
            "as serving/inference.py does"
        ) from None


class HealthOut(Wire):
    status: Literal["ok"]
    service: Literal["esdeploy"]
    version: str = Field(description="esdeploy's version: the same as `esdeploy --version` and this document's")


class ErrorOut(Wire):
    """Every error answer: a `detail` a person can act on, and the request `field` it concerns."""

    detail: str
    field: str | SkipJsonSchema[None] = Field(
        default=None, description="The request field at fault, e.g. config.image_uri"
    )


class BusyErrorOut(Wire):
    """409 when another deploy or delete of the model is still pending or processing."""

    detail: str
    active_task_id: str
    active_task_kind: TaskKind
