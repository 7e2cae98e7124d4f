"""Services: the JSON messages that travel on the deploy-tasks and teardown-tasks queues."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.domain.models import Task, TaskKind, iso

ADVANCE = "advance"
DELETE_MODEL = "delete_model"
TEARDOWN_VARIANT = "teardown_variant"
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"


def start(task: Task) -> dict[str, Any]:
    """The message that starts a task on its worker queue (also how the sweeper re-kicks a delete)."""
    return {
        "action": ADVANCE if task.kind == TaskKind.DEPLOY else DELETE_MODEL,
        "task_id": task.task_id,
        "embedding_model_id": task.embedding_model_id,
    }


def advance(task: Task) -> dict[str, Any]:
    """`version` pins the message to the task state it was sent for: an older message (a
    duplicate, or a poll overtaken by a state-change event) finds a newer version and stops."""
    return {
        "action": ADVANCE,
        "task_id": task.task_id,
        "embedding_model_id": task.embedding_model_id,
        "version": task.version,
    }


def teardown_variant(
    embedding_model_id: str, variant: str, reason: str, not_before: datetime | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "action": TEARDOWN_VARIANT,
        "embedding_model_id": embedding_model_id,
        "variant": variant,
        "reason": reason,
    }
    if not_before is not None:
        message["not_before"] = iso(not_before)
    if task_id is not None:
        message["task_id"] = task_id
    return message


def is_endpoint_event(body: dict[str, Any]) -> bool:
    return body.get("detail-type") == ENDPOINT_STATE_CHANGE and isinstance(body.get("detail"), dict)


def endpoint_event(
    endpoint_name: str, status: str, tags: dict[str, str], failure_reason: str | None = None
) -> dict[str, Any]:
    """The shape EventBridge delivers for SageMaker endpoint state changes (local stack uses it)."""
    detail: dict[str, Any] = {"EndpointName": endpoint_name, "EndpointStatus": status, "Tags": tags}
    if failure_reason:
        detail["FailureReason"] = failure_reason
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": ENDPOINT_STATE_CHANGE,
        "detail": detail,
    }
