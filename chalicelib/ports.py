"""Ports: the interfaces the services need; adapters (AWS, in-memory, local) implement them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.messages import DeadLetter, Delivery, DeployTasksMessage, TeardownTasksMessage, WorkMessage
from chalicelib.domain.models import (
    AlarmReading,
    AlarmThresholds,
    Alias,
    ModelLock,
    ScalingPolicy,
    Task,
    TaskKind,
    VariantStatus,
)
from chalicelib.domain.serving import Dtype, Serving


class TaskStore(Protocol):
    """Tasks by id and newest-by-model; every update is conditional on the version read. A task
    written in a final status comes back with `expires_at` (`Task.expiry` of the store's
    retention); an active one never has it."""

    def create(self, task: Task) -> Task:
        """Store a new task (version becomes 1). TaskAlreadyExistsError if the id is taken."""
        ...

    def get(self, task_id: str) -> Task | None: ...

    def newest_for_model(self, embedding_model_id: str, kind: TaskKind) -> Task | None:
        """The most recently created task of that kind for that model, as it is now, even while
        a secondary index has not caught up with a task created a moment ago."""
        ...

    def update(self, task: Task) -> Task:
        """Write `task` if the stored version is still `task.version`; returns it with the
        version bumped. ConcurrentUpdateError if someone else wrote in between."""
        ...

    def request_cancel(self, task_id: str, at: datetime, detail: str) -> Task | None:
        """Record a cancel on an active deploy in one write of its own, whatever version is stored:
        `cancel_requested`, an event with `detail`, the version bumped (so a step that read the task
        before the cancel loses its write) and the step token cleared. Returns the task as stored
        afterwards; unchanged when it had ended or had its cancel already; None when there is none."""
        ...

    def note_rekick(self, task: Task, at: datetime) -> bool:
        """Record on the task that the sweeper re-sent its next step at `at`, if the stored version
        is still `task.version` (the version stays: the step's own messages remain valid). False
        when the task moved on meanwhile (it was not stalled)."""
        ...


class ModelLocks(Protocol):
    """The per-model lease that allows one active deploy/delete per model."""

    def acquire(self, lock: ModelLock, replace_task_id: str | None = None) -> ModelLock | None:
        """Take the lease with a conditional write. Succeeds when nobody holds it, when
        `lock.task_id` already holds it, or when `replace_task_id` (a stale holder) still does.
        Returns None on success, or the lock that is held by someone else."""
        ...

    def get(self, embedding_model_id: str) -> ModelLock | None: ...

    def release(self, embedding_model_id: str, task_id: str, forget: bool = False) -> None:
        """Drop the lease if `task_id` holds it; a no-op otherwise. With `forget`, a model whose
        alias names no variant (deleted, or never live) goes with it: its alias reads as None."""
        ...

    def list_held(self) -> list[ModelLock]:
        """Every held lease: one per active task (the sweeper's work list)."""
        ...


class Aliases(Protocol):
    """The one record per model that says which variant is live; changed only conditionally."""

    def get(self, embedding_model_id: str) -> Alias | None: ...

    def swap(self, alias: Alias, expected_version: int) -> Alias:
        """Write `alias` if the stored alias version is `expected_version` (0: none stored).
        Returns the written alias (version bumped); AliasConflictError otherwise."""
        ...

    def list_live(self) -> list[Alias]:
        """Every model that has a live variant, in model id order. Read through an index that may
        lag a moment behind a swap: for listing, never for a decision (read `get` for that)."""
        ...


class LiveModelSlots(Protocol):
    """The live-model cap, kept with one conditional write: a model holds a slot from the
    preflight of a deploy until it is neither live nor being deployed. Green variants in flight
    count, so concurrent deploys of new models cannot pass the cap together."""

    def reserve(self, embedding_model_id: str, task_id: str, cap: int) -> list[str] | None:
        """Take the model's slot for `task_id` (a model that holds one keeps it, whatever the cap).
        None on success; when `cap` other models hold every slot, those models, sorted."""
        ...

    def release(self, embedding_model_id: str, task_id: str | None = None) -> None:
        """Free the model's slot if `task_id` reserved it last (None: whoever did); else a no-op."""
        ...

    def holders(self) -> dict[str, str]:
        """Every model that holds a slot, with the task that reserved it last."""
        ...


class Queue(Protocol):
    """One SQS queue (or a stand-in): send a message, optionally delayed."""

    def send(self, message: WorkMessage, delay_seconds: int = 0) -> str:
        """Returns the message id; raises DispatchError when the message was not sent."""
        ...


class QueueMessages(Protocol):
    """How a handler reads what its queue delivers: the work queues' wire format, which only adapters know.
    A body no reader understands is UnreadableMessageError (logged and acknowledged: no retry can help)."""

    def read_deploy_tasks(self, text: str) -> DeployTasksMessage: ...

    def read_teardown_tasks(self, text: str) -> TeardownTasksMessage: ...

    def read_dead_letter(self, text: str) -> DeadLetter:
        """Any message of ours, SageMaker's or CloudWatch's: a dead-letter queue holds whatever its queue held."""
        ...

    def delivery_of(self, record: Mapping[str, Any]) -> Delivery:
        """Which delivery a Lambda SQS record is: its message id and receive count."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class Artifacts(Protocol):
    """Model artifacts in object storage (layout: chalicelib.domain.artifacts)."""

    def read_pointer(self, url: str) -> Any | None:
        """The JSON of a model's "latest" pointer, or None when there is none.
        ArtifactRefusedError when it is not JSON."""
        ...

    def read_manifest(self, model_data_url: str) -> dict[str, Any] | None:
        """The `manifest.json` INSIDE the artifact (its first member, as the packager writes it),
        or None when there is no artifact at that URL. ArtifactRefusedError when the artifact
        has no readable manifest: no copy beside it is trusted."""
        ...


@dataclass(frozen=True)
class VariantSpec:
    """Everything needed to create one green variant (model + endpoint config + endpoint)."""

    name: str
    embedding_model_id: str
    task_id: str
    model_data_url: str
    image_uri: str
    instance_type: str
    initial_instance_count: int
    # Bounds on the container's start-up, so that a crashing container fails the endpoint early
    # rather than billing until the deploy deadline; None leaves the platform's own default.
    startup_timeout_seconds: int | None = None
    download_timeout_seconds: int | None = None
    # What runs in the container (its image is `image_uri`), and the precision asked for (None: its default).
    serving: Serving = Serving.HANDLER
    dtype: Dtype | None = None


@dataclass(frozen=True)
class VariantInfo:
    """A variant found on the platform, with the tags that say who owns it."""

    name: str
    embedding_model_id: str | None
    task_id: str | None
    has_endpoint: bool
    has_endpoint_config: bool
    has_model: bool


class Hosting(Protocol):
    """Where variants run: SageMaker on AWS, local processes on one machine, a fake in tests."""

    def create_variant(self, spec: VariantSpec) -> None:
        """Create model, endpoint config and endpoint named `spec.name`; parts that exist
        already are found, not duplicated. RetryableError / TerminalHostingError on faults."""
        ...

    def describe(self, name: str) -> VariantStatus: ...

    def invoke(self, name: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        """Send one JSON embedding request; the answer decoded, whichever serving gave it:
        `{"embeddings", "dimension", "serving"}` and `model` when the serving names it.
        InvocationError if the answer is not usable. With `timeout_seconds`: InvocationTimeoutError when
        no answer came in that time."""
        ...

    def delete_variant(self, name: str) -> None:
        """Delete endpoint, then endpoint config, then model; what is gone already is fine."""
        ...

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        """Every variant (or leftover part of one) whose name starts with `name_prefix`."""
        ...


class Scaling(Protocol):
    """Autoscaling of a variant's instance count (Application Auto Scaling target tracking)."""

    def policy_of(self, variant: str) -> ScalingPolicy | None:
        """The target-tracking policy registered on the variant; None when it has none."""
        ...

    def apply(self, variant: str, policy: ScalingPolicy) -> None:
        """Register the variant as a scalable target and put the policy on it; running it again
        changes nothing."""
        ...

    def remove(self, variant: str) -> None:
        """Remove the policy and the registration; what is gone already is fine."""
        ...


@dataclass(frozen=True)
class VariantAlarms:
    """What esdeploy's own alarms of one variant watch, and whose they are (their tags)."""

    variant: str
    embedding_model_id: str
    task_id: str
    thresholds: AlarmThresholds


class Alarms(Protocol):
    """Alarms on a variant's metrics (CloudWatch on AWS): esdeploy's own two per variant, and the
    caller's that a deploy lists, read by name."""

    def put_variant_alarms(self, alarms: VariantAlarms) -> tuple[str, ...]:
        """Create or update the variant's two alarms (`variant_alarm_names`); returns their names.
        Running it again changes nothing."""
        ...

    def read(self, names: tuple[str, ...]) -> dict[str, AlarmReading]:
        """The alarms of these names as they stand; a name with no alarm is left out."""
        ...

    def delete_variant_alarms(self, variant: str) -> None:
        """Delete the variant's two alarms; what is gone already is fine."""
        ...


class AliasMirror(Protocol):
    """A read-only copy of each alias for other clients and the console (SSM on AWS)."""

    def publish(self, alias: Alias) -> None:
        """Name the alias's live variant; an alias with none removes the model's copy."""
        ...

    def remove(self, embedding_model_id: str) -> None: ...

    def published(self, embedding_model_id: str) -> str | None:
        """The variant the copy names now (what `embedder()` resolves); None when there is none."""
        ...
