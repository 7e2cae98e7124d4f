"""API layer: the requests queue's reader — the same validation as HTTP, a logged reason when it fails."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from chalicelib.api.schemas import parse_intake
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.messages import IntakeRequest

logger = logging.getLogger(__name__)

# Fields of the envelope that say how long a request for a busy model waits, not what it asks for.
WAITING_FIELDS = ("deadline", "attempt")


def read_intake(text: str) -> IntakeRequest:
    """Raises on anything not accepted: the message is redelivered and ends in the requests DLQ,
    where the automation that sent it finds it (and the log line says why)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("message body is not a JSON object")
    try:
        fields = {key: value for key, value in data.items() if key not in WAITING_FIELDS}
        return IntakeRequest(
            command=parse_intake(fields),
            deadline=_deadline(data.get("deadline")),
            attempt=_attempt(data.get("attempt", 0)),
        )
    except InvalidRequestError as error:
        logger.error(
            "invalid intake message",
            extra={"reason": error.message, "field": error.field,
                   "embedding_model_id": data.get("embedding_model_id") or data.get("model_id")},
        )
        raise


def _deadline(value: object) -> datetime | None:
    """Until when a request for a busy model may wait: ISO-8601 with a time zone, e.g. 2026-05-04T12:00:00Z."""
    if value is None:
        return None
    try:
        deadline = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        deadline = None
    if deadline is None or deadline.tzinfo is None:
        raise InvalidRequestError(
            f"deadline {value!r} is not an ISO-8601 time with a time zone (e.g. 2026-05-04T12:00:00Z)",
            field="deadline",
        )
    return deadline.astimezone(UTC)


def _attempt(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError("attempt must be a whole number", field="attempt")
    return value
