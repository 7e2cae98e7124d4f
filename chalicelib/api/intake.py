"""API layer: the requests queue's reader — the same validation as HTTP, a logged reason when it fails."""
from __future__ import annotations

import json
import logging

from chalicelib.api.schemas import parse_intake
from chalicelib.domain.commands import Submit
from chalicelib.domain.errors import InvalidRequestError

logger = logging.getLogger(__name__)


def read_intake(text: str) -> Submit:
    """Raises on anything not accepted: the message is redelivered and ends in the requests DLQ,
    where the automation that sent it finds it (and the log line says why)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("message body is not a JSON object")
    try:
        return parse_intake(data)
    except InvalidRequestError as error:
        logger.error(
            "invalid intake message",
            extra={"reason": error.message, "field": error.field,
                   "embedding_model_id": data.get("embedding_model_id") or data.get("model_id")},
        )
        raise
