"""API layer: how tasks and aliases look on the wire (ISO-8601 UTC times, plain JSON)."""
from __future__ import annotations

from typing import Any

from chalicelib.domain.models import Alias, Stage, Task, iso


def task_body(task: Task) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_id": task.task_id,
        "kind": task.kind.value,
        "embedding_model_id": task.embedding_model_id,
        "status": task.status.value,
        "stage": task.stage.value,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "config": task.config,
        "source": task.source,
        "events": [
            {
                "at": iso(e.at),
                "stage": e.stage.value,
                "status": e.status.value,
                **({"detail": e.detail} if e.detail is not None else {}),
            }
            for e in task.events
        ],
    }
    if task.detail is not None:
        body["detail"] = task.detail
    if task.reason is not None:
        body["reason"] = task.reason
    if task.variant is not None:
        body["endpoint_name"] = task.variant
    if task.stage == Stage.AWAITING_PROMOTION and task.is_active and task.deadline_at is not None:
        body["promote_by"] = iso(task.deadline_at)
    return body


def model_body(alias: Alias, candidate: Task | None) -> dict[str, Any]:
    """GET /models/{id}: the alias, and the candidate awaiting promotion (null when none)."""
    return {
        **alias_body(alias),
        "candidate_endpoint_name": candidate.variant if candidate else None,
        "candidate_content_hash": candidate.deploy_config.content_hash if candidate else None,
        "candidate_task_id": candidate.task_id if candidate else None,
        "candidate_promote_by": iso(candidate.deadline_at) if candidate and candidate.deadline_at else None,
    }


def alias_body(alias: Alias) -> dict[str, Any]:
    return {
        "embedding_model_id": alias.embedding_model_id,
        "endpoint_name": alias.live_variant,
        "content_hash": alias.live_content_hash,
        "previous_endpoint_name": alias.previous_variant,
        "previous_content_hash": alias.previous_content_hash if alias.previous_variant else None,
        "task_id": alias.task_id,
        "swapped_at": iso(alias.swapped_at) if alias.swapped_at else None,
        "version": alias.version,
    }
