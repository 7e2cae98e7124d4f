"""Services: automation intake from the requests queue (same validation and idempotency as HTTP)."""
from __future__ import annotations

import logging
from typing import Any

from chalicelib.api.schemas import DeployRequest, parse_intake
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.services.tasks import TaskService

logger = logging.getLogger(__name__)


def handle_intake_message(tasks: TaskService, body: dict[str, Any]) -> None:
    """Raises on anything not accepted, so the message is redelivered and ends in the DLQ;
    a model busy with another task is retried after the visibility timeout the same way."""
    try:
        request = parse_intake(body)
    except InvalidRequestError as error:
        logger.error(
            "invalid intake message",
            extra={"reason": error.message, "field": error.field,
                   "embedding_model_id": body.get("embedding_model_id") or body.get("model_id")},
        )
        raise
    if isinstance(request, DeployRequest):
        task = tasks.submit_deploy(request, source="sqs")
    else:
        task = tasks.submit_delete(request, source="sqs")
    logger.info(
        "intake accepted",
        extra={"task_id": task.task_id, "embedding_model_id": task.embedding_model_id},
    )
