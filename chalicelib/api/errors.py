"""API layer: the one table that maps domain errors to HTTP status codes and bodies."""
from __future__ import annotations

from typing import Any

from chalicelib.api.docs import AssetNotFoundError
from chalicelib.api.responses import BusyErrorOut, ErrorOut
from chalicelib.api.schemas import BodyTooLargeError, MalformedBodyError
from chalicelib.domain.errors import (
    AnswerTooLargeError,
    ConcurrentUpdateError,
    DispatchError,
    EndpointRefusedError,
    EsdeployError,
    IdempotencyConflictError,
    InvalidRequestError,
    InvalidStateError,
    InvocationError,
    InvocationTimeoutError,
    ModelBusyError,
    ModelNotFoundError,
    RetryableError,
    TaskNotFoundError,
    UnreadableItemError,
)
from chalicelib.domain.models import TaskKind

# Most specific first: the first matching class decides.
_STATUS: tuple[tuple[type[EsdeployError], int], ...] = (
    (MalformedBodyError, 400),
    (BodyTooLargeError, 413),
    (AnswerTooLargeError, 413),
    (InvalidRequestError, 422),
    (TaskNotFoundError, 404),
    (ModelNotFoundError, 404),
    (AssetNotFoundError, 404),
    (IdempotencyConflictError, 409),
    (ModelBusyError, 409),
    (InvalidStateError, 409),
    (ConcurrentUpdateError, 409),
    # The endpoint's own 4xx is the caller's mistake (its detail says which); its silence past the
    # route's budget is a gateway timeout; anything else it does wrong is a bad gateway.
    (EndpointRefusedError, 422),
    (InvocationTimeoutError, 504),
    (InvocationError, 502),
    (DispatchError, 503),
    (RetryableError, 503),
)


def error_answer(error: EsdeployError) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for a domain error; never a stack trace."""
    status = next((code for cls, code in _STATUS if isinstance(error, cls)), 500)
    if isinstance(error, ModelBusyError):
        busy = BusyErrorOut(
            detail=str(error), active_task_id=error.active_task_id, active_task_kind=TaskKind(error.active_kind)
        )
        return status, busy.body()
    field = (error.field or None) if isinstance(error, InvalidRequestError) else None
    # A stored item nobody can read says which and why: an operator repairs it, no retry will.
    said = status != 500 or isinstance(error, UnreadableItemError)
    return status, ErrorOut(detail=str(error) if said else "Internal error", field=field).body()
