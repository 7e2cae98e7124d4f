"""Domain layer: what callers ask for, as types; the HTTP schemas and the intake reader build them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib.domain.models import ScalingPolicy


@dataclass(frozen=True)
class DeployConfigRequest:
    """A deploy's `config` as the caller sent it: None takes the stage's default at submit."""

    instance_type: str | None = None
    initial_instance_count: int | None = None
    model_data_url: str | None = None
    image_uri: str | None = None
    bake_seconds: int | None = None
    parity_check: str | None = None
    promotion: str | None = None
    promotion_timeout_seconds: int | None = None
    # As sent (it has no defaults): the stage's bounds are checked at submit.
    autoscaling: ScalingPolicy | None = None
    rollback_alarms: tuple[str, ...] | None = None
    max_5xx_errors_per_minute: int | None = None
    max_model_latency_ms: int | None = None
    serving: str | None = None
    dtype: str | None = None

    def given(self) -> dict[str, Any]:
        """Only what the caller set: what makes two requests the same (a replay) or not."""
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class SubmitDeploy:
    """Deploy a model. `client_task_id`: the caller's `id`; sending it again replays the task."""

    embedding_model_id: str
    client_task_id: str | None = None
    config: DeployConfigRequest = field(default_factory=DeployConfigRequest)
    source: str = "http"


@dataclass(frozen=True)
class SubmitDelete:
    """Delete every variant of a model and its alias."""

    embedding_model_id: str
    client_task_id: str | None = None
    reason: str | None = None
    source: str = "http"


@dataclass(frozen=True)
class PromoteDeploy:
    """Swap the alias to the candidate of a deploy that awaits promotion (config.promotion manual)."""

    task_id: str
    source: str = "http"


Submit = SubmitDeploy | SubmitDelete
IntakeCommand = Submit | PromoteDeploy
