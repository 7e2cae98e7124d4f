"""API layer: the one table that maps domain errors to HTTP status codes and bodies."""
from __future__ import annotations

from typing import Any

from chalicelib.api.schemas import BodyTooLargeError, MalformedBodyError
from chalicelib.domain.errors import (
    ConcurrentUpdateError,
    DispatchError,
    EsdeployError,
    IdempotencyConflictError,
    InvalidRequestError,
    InvalidStateError,
    InvocationError,
    ModelBusyError,
    ModelNotFoundError,
    RetryableError,
    TaskNotFoundError,
)

# Most specific first: the first matching class decides.
_STATUS: tuple[tuple[type[EsdeployError], int], ...] = (
    (MalformedBodyError, 400),
    (BodyTooLargeError, 413),
    (InvalidRequestError, 422),
    (TaskNotFoundError, 404),
    (ModelNotFoundError, 404),
    (IdempotencyConflictError, 409),
    (ModelBusyError, 409),
    (InvalidStateError, 409),
    (ConcurrentUpdateError, 409),
    (InvocationError, 502),
    (DispatchError, 503),
    (RetryableError, 503),
)


def error_answer(error: EsdeployError) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for a domain error; never a stack trace."""
    status = next((code for cls, code in _STATUS if isinstance(error, cls)), 500)
    body: dict[str, Any] = {"detail": str(error) if status != 500 else "Internal error"}
    if isinstance(error, InvalidRequestError) and error.field:
        body["field"] = error.field
    if isinstance(error, ModelBusyError):
        body["active_task_id"] = error.active_task_id
        body["active_task_kind"] = error.active_kind
    return status, body
