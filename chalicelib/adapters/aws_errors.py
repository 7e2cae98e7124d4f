"""Adapters: classifying botocore errors into retryable and terminal domain errors."""
from __future__ import annotations

from typing import NoReturn

from botocore.exceptions import ClientError

from chalicelib.domain.errors import RetryableError

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "TooManyRequestsException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionConflictException",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def is_retryable(exc: ClientError) -> bool:
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return error_code(exc) in RETRYABLE_CODES or status >= 500


def raise_retryable_or(exc: ClientError, doing: str) -> NoReturn:
    """Turn transient AWS faults into RetryableError (SQS redelivers); re-raise the rest."""
    if is_retryable(exc):
        raise RetryableError(f"{doing} failed transiently: {error_code(exc)}") from exc
    raise exc
