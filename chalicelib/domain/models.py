"""Domain layer: tasks, their statuses, stages and history, endpoint states, and the model alias."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from chalicelib.domain.serving import Dtype, Serving


class TaskKind(StrEnum):
    DEPLOY = "deploy"
    DELETE = "delete"


class TaskStatus(StrEnum):
    """A task's public status: Embedding Studio's enum."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.REFUSED, TaskStatus.CANCELED}
)


class Stage(StrEnum):
    """Where a task is; finer than the status. A failed task keeps the stage it failed in."""

    QUEUED = "queued"
    # deploy
    PREFLIGHT = "preflight"
    CREATING = "creating"
    WAITING = "waiting"
    VERIFYING = "verifying"
    # only with config.promotion "manual": green is InService and checked, the alias is unmoved
    AWAITING_PROMOTION = "awaiting_promotion"
    SWAPPING = "swapping"
    # green is live, blue still up for a rollback in one write; esdeploy's alarms (and the deploy's
    # config.rollback_alarms) are watched until the bake ends
    BAKING = "baking"
    # delete
    UNALIASING = "unaliasing"
    TEARING_DOWN = "tearing_down"
    # both
    FINISHED = "finished"


# Stages in which a deploy's green variant may exist: a fault or a cancel hands it to teardown.
STAGES_WITH_GREEN = frozenset(
    {Stage.CREATING, Stage.WAITING, Stage.VERIFYING, Stage.AWAITING_PROMOTION, Stage.SWAPPING, Stage.BAKING}
)


class AlarmState(StrEnum):
    """A CloudWatch alarm's state, as DescribeAlarms and the state-change event spell it."""

    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


@dataclass(frozen=True)
class AlarmReading:
    """One watched alarm as it stands: its state, since when, and CloudWatch's reason."""

    name: str
    state: AlarmState
    reason: str = ""
    since: datetime | None = None


# Bounds of a deploy's alarm config and of the stage's defaults (chalicelib/config.py).
MAX_ROLLBACK_ALARMS = 10
ALARM_NAME_MAX = 255  # CloudWatch's limit for an alarm name
MAX_5XX_ERRORS_PER_MINUTE_RANGE = (0, 100_000)
MAX_MODEL_LATENCY_MS_RANGE = (1, 600_000)


@dataclass(frozen=True)
class AlarmThresholds:
    """What esdeploy's own two alarms of a variant fire on (per minute)."""

    max_5xx_errors_per_minute: int
    max_model_latency_ms: int


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(at: datetime) -> str:
    """ISO-8601 UTC with microseconds and a Z, so strings sort in time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class TaskEvent:
    at: datetime
    stage: Stage
    status: TaskStatus
    detail: str | None = None


class ParityCheck(StrEnum):
    """Whether the smoke test must compare the green's answers with the manifest's reference
    embeddings. `skip` is a caller's explicit choice for an artifact without references."""

    REQUIRED = "required"
    SKIP = "skip"


class Promotion(StrEnum):
    """Who moves the alias once green passed the gate: the worker at once (`auto`), or a person or
    a reindex job through POST /deploy/{task_id}/promote (`manual`: the reindex window)."""

    AUTO = "auto"
    MANUAL = "manual"


@dataclass(frozen=True)
class ScalingPolicy:
    """Target tracking on a variant's instance count (Application Auto Scaling on AWS): between
    `min_instances` and `max_instances`, aiming at this many invocations per instance a minute."""

    min_instances: int
    max_instances: int
    # Whole invocations per instance a minute (a DynamoDB map holds no floats).
    target_invocations_per_instance: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "target_invocations_per_instance": self.target_invocations_per_instance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingPolicy:
        return cls(
            min_instances=int(data["min_instances"]),
            max_instances=int(data["max_instances"]),
            target_invocations_per_instance=int(data["target_invocations_per_instance"]),
        )

    def describe(self) -> str:
        return (
            f"{self.min_instances}-{self.max_instances} instances at "
            f"{self.target_invocations_per_instance} invocations per instance a minute"
        )


@dataclass(frozen=True)
class DeployConfig:
    """A deploy request's config after validation, with every default filled in and the artifact
    pinned: `model_data_url` is the exact key and `content_hash` its manifest's content_sha256."""

    instance_type: str
    initial_instance_count: int
    model_data_url: str
    image_uri: str
    bake_seconds: int
    # None only on tasks stored before artifacts were pinned at submit.
    content_hash: str | None = None
    parity_check: ParityCheck = ParityCheck.REQUIRED
    promotion: Promotion = Promotion.AUTO
    # No count in the request: the preflight sets `initial_instance_count` to what the live
    # variant runs now, so a blue scaled up under load is not replaced by one instance.
    match_live_instance_count: bool = False
    # None: green carries over the live variant's policy, if it has one.
    autoscaling: ScalingPolicy | None = None
    # With manual promotion: how long a candidate waits for its promote before the task is canceled.
    promotion_timeout_seconds: int | None = None
    # CloudWatch alarms of the caller's, watched during the bake beside esdeploy's own two.
    rollback_alarms: tuple[str, ...] = ()
    # None: the stage's ESDEPLOY_ROLLBACK_MAX_* settings at the swap.
    max_5xx_errors_per_minute: int | None = None
    max_model_latency_ms: int | None = None
    # What runs in the endpoint (handler or TEI); the artifact must have been packaged for it.
    serving: Serving = Serving.HANDLER
    # None: the serving's own default (float16 on a GPU, float32 on a CPU).
    dtype: Dtype | None = None
    # The model's embedding dimension (its manifest's), set once green answered with it in the smoke
    # test; None before that, and on tasks stored before it was kept.
    dimension: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_type": self.instance_type,
            "initial_instance_count": self.initial_instance_count,
            "model_data_url": self.model_data_url,
            "content_hash": self.content_hash,
            "image_uri": self.image_uri,
            "bake_seconds": self.bake_seconds,
            "parity_check": self.parity_check.value,
            "promotion": self.promotion.value,
            "match_live_instance_count": self.match_live_instance_count,
            "autoscaling": self.autoscaling.as_dict() if self.autoscaling else None,
            **(
                {"promotion_timeout_seconds": self.promotion_timeout_seconds}
                if self.promotion_timeout_seconds is not None
                else {}
            ),
            **({"rollback_alarms": list(self.rollback_alarms)} if self.rollback_alarms else {}),
            **(
                {"max_5xx_errors_per_minute": self.max_5xx_errors_per_minute}
                if self.max_5xx_errors_per_minute is not None
                else {}
            ),
            **({"max_model_latency_ms": self.max_model_latency_ms} if self.max_model_latency_ms is not None else {}),
            "serving": self.serving.value,
            **({"dtype": self.dtype.value} if self.dtype is not None else {}),
            **({"dimension": self.dimension} if self.dimension is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeployConfig:
        content_hash = data.get("content_hash")
        return cls(
            instance_type=str(data["instance_type"]),
            initial_instance_count=int(data["initial_instance_count"]),
            model_data_url=str(data["model_data_url"]),
            image_uri=str(data["image_uri"]),
            bake_seconds=int(data["bake_seconds"]),
            content_hash=str(content_hash) if content_hash else None,
            parity_check=ParityCheck(data.get("parity_check", ParityCheck.REQUIRED.value)),
            promotion=Promotion(data.get("promotion", Promotion.AUTO.value)),
            match_live_instance_count=bool(data.get("match_live_instance_count", False)),
            autoscaling=ScalingPolicy.from_dict(data["autoscaling"]) if data.get("autoscaling") else None,
            promotion_timeout_seconds=(
                int(data["promotion_timeout_seconds"]) if data.get("promotion_timeout_seconds") is not None else None
            ),
            rollback_alarms=tuple(str(name) for name in data.get("rollback_alarms") or ()),
            max_5xx_errors_per_minute=_optional_int(data.get("max_5xx_errors_per_minute")),
            max_model_latency_ms=_optional_int(data.get("max_model_latency_ms")),
            # Tasks stored before servings existed ran the handler.
            serving=Serving(data.get("serving", Serving.HANDLER.value)),
            dtype=Dtype(data["dtype"]) if data.get("dtype") else None,
            dimension=_optional_int(data.get("dimension")),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class Task:
    """One deploy or delete request and everything that happened to it."""

    task_id: str
    kind: TaskKind
    embedding_model_id: str
    status: TaskStatus
    stage: Stage
    created_at: datetime
    updated_at: datetime
    request_hash: str
    config: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None
    events: list[TaskEvent] = field(default_factory=list)
    source: str = "http"
    # Optimistic locking: the store only writes if the stored version is still this one.
    version: int = 0
    # Worker bookkeeping (deploy): the green variant's name, polls so far, the deadline.
    variant: str | None = None
    polls: int = 0
    deadline_at: datetime | None = None
    cancel_requested: bool = False
    # Set by POST /deploy/{id}/promote on a task awaiting promotion; the worker then swaps.
    promote_requested: bool = False
    # When the alias moved to green (the swap); the bake runs from here.
    live_at: datetime | None = None
    # Written during the bake when a watched alarm fired, before the alias goes back to blue: the
    # step that moves it (and its redelivery after a crash) ends the task failed with this detail.
    rollback_detail: str | None = None
    # When the sweeper last re-sent this task's next step (once per stall window).
    rekicked_at: datetime | None = None
    # When the store may forget the task (DynamoDB's TTL): the store sets it on a task written in
    # a final status, from `expiry()`; an active task never has one.
    expires_at: datetime | None = None

    @classmethod
    def new(
        cls,
        *,
        task_id: str,
        kind: TaskKind,
        embedding_model_id: str,
        request_hash: str,
        at: datetime,
        config: dict[str, Any] | None = None,
        reason: str | None = None,
        source: str = "http",
    ) -> Task:
        task = cls(
            task_id=task_id,
            kind=kind,
            embedding_model_id=embedding_model_id,
            status=TaskStatus.PENDING,
            stage=Stage.QUEUED,
            created_at=at,
            updated_at=at,
            request_hash=request_hash,
            config=dict(config or {}),
            reason=reason,
            source=source,
        )
        task.events.append(TaskEvent(at=at, stage=Stage.QUEUED, status=TaskStatus.PENDING,
                                     detail=f"{kind.value} task accepted via {source}"))
        return task

    @property
    def is_active(self) -> bool:
        return not self.status.is_terminal

    @property
    def ended_at(self) -> datetime | None:
        """When the task reached its final status (the first event that says so); None while active."""
        if self.is_active:
            return None
        return next((e.at for e in self.events if e.status.is_terminal), self.updated_at)

    def expiry(self, retention: timedelta | None) -> datetime | None:
        """`expires_at` for this task as it stands: its end plus `retention`, in whole seconds
        (DynamoDB's TTL attribute is epoch seconds); None while active or when kept forever."""
        ended = self.ended_at
        if ended is None or retention is None:
            return None
        return (ended + retention).replace(microsecond=0)

    @property
    def deploy_config(self) -> DeployConfig:
        return DeployConfig.from_dict(self.config)

    @property
    def bake_ends_at(self) -> datetime | None:
        """When a deploy's bake ends: its swap plus config.bake_seconds; None before the swap."""
        if self.live_at is None:
            return None
        return self.live_at + timedelta(seconds=self.deploy_config.bake_seconds)

    def record(
        self,
        *,
        at: datetime,
        stage: Stage | None = None,
        status: TaskStatus | None = None,
        detail: str | None = None,
    ) -> Task:
        """Move the task and append the matching event; the caller persists it."""
        if self.status.is_terminal and status is not None and status != self.status:
            raise ValueError(f"task {self.task_id} is already {self.status.value}")
        self.stage = stage or self.stage
        self.status = status or self.status
        if detail is not None:
            self.detail = detail
        self.updated_at = at
        self.events.append(TaskEvent(at=at, stage=self.stage, status=self.status, detail=detail))
        return self

    def copy(self) -> Task:
        return replace(self, events=list(self.events), config=dict(self.config))


class EndpointState(StrEnum):
    """What the services need to know of an endpoint; adapters map the platform's statuses here."""

    CREATING = "creating"  # still coming up (or updating): poll again later
    IN_SERVICE = "in_service"
    FAILED = "failed"
    DELETING = "deleting"
    MISSING = "missing"


@dataclass(frozen=True)
class ModelLock:
    """Who holds a model's one-active-operation lease."""

    embedding_model_id: str
    task_id: str
    kind: TaskKind
    acquired_at: datetime


@dataclass(frozen=True)
class Alias:
    """The record that says which variant of a model is live (and which was before), and the
    content hash of the artifact each of them serves, and its embedding dimension (None on aliases
    written before it was kept): what bounds how many texts one answer can carry."""

    embedding_model_id: str
    live_variant: str | None
    previous_variant: str | None
    task_id: str | None
    swapped_at: datetime | None
    version: int = 0
    live_content_hash: str | None = None
    previous_content_hash: str | None = None
    # The deploy task that made the previous variant live: the alias's `task_id` again after a rollback.
    previous_task_id: str | None = None
    live_dimension: int | None = None
    previous_dimension: int | None = None
