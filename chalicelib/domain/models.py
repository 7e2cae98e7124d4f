"""Domain layer: tasks, their statuses, stages and history, endpoint states, and the model alias."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

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


# The stages a task passes through, in order: the server's, and the tool's progress board and waits read them.
DEPLOY_STAGES = (
    Stage.QUEUED, Stage.PREFLIGHT, Stage.CREATING, Stage.WAITING, Stage.VERIFYING, Stage.SWAPPING, Stage.BAKING,
    Stage.FINISHED,
)
DELETE_STAGES = (Stage.QUEUED, Stage.UNALIASING, Stage.TEARING_DOWN, Stage.FINISHED)


def stage_order(kind: TaskKind, promotion: Promotion = Promotion.AUTO) -> tuple[Stage, ...]:
    """The stages a task of `kind` goes through, in order: a manual promotion waits before the swap."""
    if kind is TaskKind.DELETE:
        return DELETE_STAGES
    if promotion is Promotion.AUTO:
        return DEPLOY_STAGES
    swap = DEPLOY_STAGES.index(Stage.SWAPPING)
    return (*DEPLOY_STAGES[:swap], Stage.AWAITING_PROMOTION, *DEPLOY_STAGES[swap:])


def stages_before(stage: Stage, kind: TaskKind = TaskKind.DEPLOY) -> tuple[Stage, ...]:
    """The stages a task of `kind` passes through before `stage`."""
    order = stage_order(kind, Promotion.MANUAL)
    return order[: order.index(stage)]


@dataclass(frozen=True)
class ScalingPolicy:
    """Target tracking on a variant's instance count (Application Auto Scaling on AWS): between
    `min_instances` and `max_instances`, aiming at this many invocations per instance a minute."""

    min_instances: int
    max_instances: int
    # Whole invocations per instance a minute (a DynamoDB map holds no floats).
    target_invocations_per_instance: int

    def describe(self) -> str:
        return (
            f"{self.min_instances}-{self.max_instances} instances at "
            f"{self.target_invocations_per_instance} invocations per instance a minute"
        )


@dataclass(frozen=True)
class RollbackAlarms:
    """What a deploy's bake watches besides esdeploy's own two alarms on green (config.rollback_alarms),
    and its thresholds for those two (None: the stage's ESDEPLOY_ROLLBACK_MAX_* settings)."""

    names: tuple[str, ...] = ()
    max_5xx_errors_per_minute: int | None = None
    max_model_latency_ms: int | None = None

    def thresholds(self, stage: AlarmThresholds) -> AlarmThresholds:
        """esdeploy's two alarms on green: this deploy's thresholds, else the stage's."""
        errors, latency = self.max_5xx_errors_per_minute, self.max_model_latency_ms
        return AlarmThresholds(
            max_5xx_errors_per_minute=stage.max_5xx_errors_per_minute if errors is None else errors,
            max_model_latency_ms=stage.max_model_latency_ms if latency is None else latency,
        )


@dataclass(frozen=True)
class DeployConfig:
    """A deploy request's config after validation, with every default filled in and the artifact
    pinned: `model_data_url` is the exact key and `content_hash` its manifest's content_sha256.
    The one shape of a deploy's config from the request to the answer; its storage form lives in
    the DynamoDB adapter only (adapters/dynamodb_tasks.py)."""

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
    alarms: RollbackAlarms = RollbackAlarms()
    # What runs in the endpoint (handler or TEI); the artifact must have been packaged for it.
    serving: Serving = Serving.HANDLER
    # None: the serving's own default (float16 on a GPU, float32 on a CPU).
    dtype: Dtype | None = None
    # The model's embedding dimension (its manifest's), set once green answered with it in the smoke
    # test; None before that, and on tasks stored before it was kept.
    dimension: int | None = None


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
    # A deploy's config (None for a delete): typed and immutable; a step that settles a value
    # (the preflight's instance count) writes a new one.
    deploy: DeployConfig | None = None
    reason: str | None = None
    detail: str | None = None
    events: list[TaskEvent] = field(default_factory=list)
    source: str = "http"
    # Optimistic locking: the store only writes if the stored version is still this one.
    version: int = 0
    # Worker bookkeeping (deploy): the green variant's name, and how often the worker looked at
    # it: `polls` at a creating endpoint (its backoff), `hops` while awaiting a promote or baking.
    variant: str | None = None
    polls: int = 0
    hops: int = 0
    # The deploy deadline (set at the preflight, again at a promote): not live by then, it fails.
    deadline_at: datetime | None = None
    # While a candidate awaits promotion: when its promotion window ends (then it is canceled).
    promote_by: datetime | None = None
    # Set by POST /deploy/{id}/cancel with a write of its own that every step reads (the store's
    # `request_cancel`): a cancel never waits for the worker's writes, and wins until the swap.
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
    # Who wrote this version: a worker step writes the id of the queue message it handled (a fresh
    # token outside a queue); a request (submit, cancel, promote) writes None. A redelivered message
    # that finds its own write sends that write's next message again (`next_at`, when it is due).
    step_token: str | None = None
    next_at: datetime | None = None

    @classmethod
    def new(
        cls,
        *,
        task_id: str,
        kind: TaskKind,
        embedding_model_id: str,
        request_hash: str,
        at: datetime,
        deploy: DeployConfig | None = None,
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
            deploy=deploy,
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
        """The config of a deploy task (a delete task has none: ValueError)."""
        if self.deploy is None:
            raise ValueError(f"{self.kind.value} task {self.task_id} has no deploy config")
        return self.deploy

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
        return replace(self, events=list(self.events))


class EndpointState(StrEnum):
    """What the services need to know of an endpoint; adapters map the platform's statuses here."""

    CREATING = "creating"  # still coming up (or updating): poll again later
    IN_SERVICE = "in_service"
    FAILED = "failed"
    DELETING = "deleting"
    MISSING = "missing"


@dataclass(frozen=True)
class VariantStatus:
    """A variant's endpoint as the platform describes it (Hosting.describe)."""

    name: str
    state: EndpointState
    failure_reason: str | None = None
    platform_status: str | None = None
    # How many instances serve it now (SageMaker's CurrentInstanceCount); None when not known.
    instance_count: int | None = None


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
    written before it was kept): what bounds how many texts one answer can carry. Its transitions are
    its methods: each returns the alias to write, or None when there is nothing to change
    (services/alias_writes.py writes it conditionally, and reads and decides again on a conflict)."""

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

    @classmethod
    def none(cls, embedding_model_id: str) -> Alias:
        """A model with no alias stored (version 0): nothing live, nothing previous."""
        return cls(embedding_model_id, None, None, None, None)

    def make_live(
        self, green: str, task_id: str, content_hash: str | None, dimension: int | None, at: datetime
    ) -> Alias | None:
        """The swap: `green` live, the live variant (if any) previous, each with its content hash, task
        and dimension; None when green is live already (a redelivered swap)."""
        if self.live_variant == green:
            return None
        return replace(
            self,
            live_variant=green,
            previous_variant=self.live_variant,
            task_id=task_id,
            swapped_at=at,
            live_content_hash=content_hash,
            previous_content_hash=self.live_content_hash,
            previous_task_id=self.task_id,
            live_dimension=dimension,
            previous_dimension=self.live_dimension,
        )

    def roll_back(self, at: datetime, live: str, previous: str | None = None) -> Alias | None:
        """The previous variant live again (with its content hash, task and dimension), none previous:
        only while `live` is the live variant (and `previous`, when given, the previous one); None otherwise."""
        if self.live_variant != live or not self.previous_variant:
            return None
        if previous is not None and self.previous_variant != previous:
            return None
        return replace(
            self,
            live_variant=self.previous_variant,
            previous_variant=None,
            task_id=self.previous_task_id,  # the task of the variant live again, not the rolled-back one
            swapped_at=at,
            live_content_hash=self.previous_content_hash,
            previous_content_hash=None,
            previous_task_id=None,
            live_dimension=self.previous_dimension,
            previous_dimension=None,
        )

    def drop_previous(self, variant: str) -> Alias | None:
        """A rollback to `variant` stops being offered (it is about to be torn down); None unless it
        is the previous variant."""
        if self.live_variant == variant or self.previous_variant != variant:
            return None
        return replace(
            self, previous_variant=None, previous_content_hash=None, previous_task_id=None, previous_dimension=None
        )

    def clear(self, task_id: str, at: datetime) -> Alias | None:
        """No variant live or previous (a delete: clients stop resolving the model); None when it
        names none already."""
        if not (self.live_variant or self.previous_variant):
            return None
        return Alias(self.embedding_model_id, None, None, task_id, at, version=self.version)
