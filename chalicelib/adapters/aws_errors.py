"""Adapters: the one AWS error classifier, and the one call wrapper every AWS request goes through.

Modelled on Chalice's `TypedAWSClient._call_client_method_with_retries`: botocore retries first
(see each client's Config), and what is left is decided here, once. A transient fault
(throttling, 5xx, no answer) becomes RetryableError, so that SQS redelivers the message and the
DLQ catches poison; an outcome the caller expects (`tolerate`: not found, a lost condition) comes
back as None; anything else is the service's refusal, typed by its rule (or re-raised as is).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar, overload

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from chalicelib.domain.errors import (
    EndpointRefusedError,
    InvocationError,
    QuotaExceededError,
    QuotaKind,
    RetryableError,
    TerminalHostingError,
    quota_remedy,
)

T = TypeVar("T")
Refusal = Callable[[Exception, str], Exception]

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionConflictException",
        "InternalServerError",
        "InternalServerException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalDependencyException",  # SageMaker Runtime: a dependency of the endpoint hiccuped
        "ModelNotReadyException",  # SageMaker Runtime: the container is still loading
        "RequestTimeout",
        "RequestTimeoutException",
        # SSM: another update of the same parameter is in progress ("supports one update at a
        # time"), sent as a 400. Publishing an alias meets it when two writers publish at once.
        "TooManyUpdates",
    }
)

# SageMaker's control plane reports a missing resource as a 400 ValidationException whose
# message names the kind. The quote after the kind keeps "Could not find model data at s3://..."
# (a bad artifact, terminal) from reading as "model not found" (already gone, fine).
_NOT_FOUND = re.compile(r"Could not find (model|endpoint configuration|endpoint)\s+['\"]")
ALREADY_EXISTS = "Cannot create already existing"
IN_PROGRESS = "Cannot update in-progress endpoint"


# SageMaker names the quota a ResourceLimitExceeded hit, in quotes, with its limit and unit:
#   "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0 Instances, with current
#   utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to
#   request an increase for this quota. ..." (CreateEndpoint; the instance total reads
#   'Number of instances across active endpoints' ... Instances). The count quotas of CreateModel,
#   CreateEndpointConfig and CreateEndpoint say their own name and unit the same way. Older
#   accounts' texts end "Please contact AWS support to request an increase for this limit."
_QUOTA = re.compile(r"service limit '(?P<name>[^']+)' is \d+ (?P<unit>\w+)")
_PER_INSTANCE_TYPE = " for endpoint usage"


def quota_named(message: str) -> tuple[str | None, QuotaKind | None]:
    """The quota a ResourceLimitExceeded message names and what it counts; (None, None) when it
    names none."""
    found = _QUOTA.search(message)
    if found is None:
        return None, None
    name = found.group("name")
    if name.endswith(_PER_INSTANCE_TYPE):
        return name, QuotaKind.INSTANCE_TYPE
    if found.group("unit").lower() == "instances":
        return name, QuotaKind.INSTANCES
    return name, QuotaKind.RESOURCES


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(exc: ClientError) -> bool:
    status = http_status(exc)
    return (
        error_code(exc) in TRANSIENT_CODES
        or "Rate exceeded" in error_message(exc)
        or status == 429
        or status >= 500
    )


def condition_failed(exc: ClientError) -> bool:
    """DynamoDB's answer to a conditional write whose condition did not hold."""
    return error_code(exc) == "ConditionalCheckFailedException"


def missing_kind(exc: ClientError) -> str | None:
    """'model', 'endpoint configuration' or 'endpoint' when SageMaker says it does not exist."""
    if error_code(exc) in ("ResourceNotFound", "ResourceNotFoundException"):
        return "resource"
    if error_code(exc) != "ValidationException":
        return None
    found = _NOT_FOUND.search(error_message(exc))
    return found.group(1) if found else None


def is_missing(exc: ClientError) -> bool:
    return missing_kind(exc) is not None


def already_exists(exc: ClientError) -> bool:
    return error_code(exc) == "ValidationException" and ALREADY_EXISTS in error_message(exc)


def as_is(exc: Exception, _doing: str) -> Exception:
    """No rule of ours: the caller's code or its configuration is wrong, so it is seen as it is."""
    return exc


def in_progress_error(operation: str, endpoint_arn: str) -> ClientError:
    """SageMaker's answer to changing (deleting, updating) an endpoint that is Creating or Updating,
    as botocore raises it: the stand-ins (the fake, the local stack) raise this very error through
    `sagemaker_refusal`, so they refuse as SageMakerHosting does."""
    response: Any = {
        "Error": {"Code": "ValidationException", "Message": f'{IN_PROGRESS} "{endpoint_arn}".'},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    return ClientError(response, operation)


def sagemaker_refusal(exc: Exception, doing: str) -> RetryableError | TerminalHostingError:
    """What SageMaker's control plane refuses, for good or until the endpoint settles."""
    if not isinstance(exc, ClientError):
        return TerminalHostingError(f"could not {doing}: {exc}")
    code, message = error_code(exc), error_message(exc)
    if code == "ResourceLimitExceeded":
        quota, counts = quota_named(message)
        return QuotaExceededError(
            f"SageMaker quota reached, could not {doing}: {message}. {quota_remedy(quota, counts)}",
            said=message, quota=quota, kind=counts,
        )
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
        return TerminalHostingError(
            f"SageMaker denied the request to {doing}: {message}. Check that the Lambda role "
            "may call SageMaker and pass the execution role (iam:PassRole)"
        )
    if code == "ValidationException" and IN_PROGRESS in message:
        return RetryableError(
            f"could not {doing}: the endpoint is still Creating or Updating and SageMaker "
            f"refuses to change it until it settles ({message})"
        )
    kind = missing_kind(exc)
    if kind:
        # Only happens while creating: a part we depend on was deleted under us. Running the
        # step again re-creates it from the top.
        return RetryableError(f"could not {doing}: the {kind} it needs is gone ({message})")
    return TerminalHostingError(
        f"SageMaker rejected the request to {doing}: {message} ({code}). Check the deploy "
        "config (instance type and count, image URI, model artifact URL, execution role)"
    )


def invocation_refusal(endpoint: str) -> Refusal:
    """What an endpoint's InvokeEndpoint refuses: the request, or the model failed on it."""

    def refuse(exc: Exception, _doing: str) -> InvocationError:
        if not isinstance(exc, ClientError):
            return InvocationError(f"could not invoke endpoint `{endpoint}`: {exc}")
        code, message = error_code(exc), error_message(exc)
        if code == "ModelError":
            original = exc.response.get("OriginalStatusCode")
            logs = exc.response.get("LogStreamArn")
            where = f"; container logs: {logs}" if logs else f"; see /aws/sagemaker/Endpoints/{endpoint}"
            if isinstance(original, int) and 400 <= original < 500:
                # The handler refused the request (serving/inference.py: BadRequestError). The HF
                # toolkit says 400 for its own faults too (docs/serving.md): its message tells.
                return EndpointRefusedError(endpoint, original, f"{message}{where}")
            status = f" {original}" if original else ""
            return InvocationError(
                f"the model in endpoint `{endpoint}` failed the request (status{status}): {message}{where}"
            )
        return InvocationError(f"endpoint `{endpoint}` refused the request ({code}): {message}")

    return refuse


class AwsCalls:
    """Runs the requests of one AWS service; `refuse` types what it refuses (default: as is)."""

    def __init__(self, service: str, refuse: Refusal = as_is) -> None:
        self.service = service
        self._refuse = refuse

    @overload
    def __call__(self, doing: str, request: Callable[[], T], *, refuse: Refusal | None = None) -> T: ...

    @overload
    def __call__(
        self,
        doing: str,
        request: Callable[[], T],
        *,
        tolerate: Callable[[ClientError], bool],
        refuse: Refusal | None = None,
    ) -> T | None: ...

    def __call__(
        self,
        doing: str,
        request: Callable[[], T],
        *,
        tolerate: Callable[[ClientError], bool] | None = None,
        refuse: Refusal | None = None,
    ) -> T | None:
        """`request()`; `doing` completes "while trying to ..." in messages (e.g. "read the task")."""
        refusal = refuse or self._refuse
        try:
            return request()
        except ClientError as exc:
            if is_transient(exc):
                raise RetryableError(
                    f"{self.service} is busy ({error_code(exc)}) while trying to {doing}: {error_message(exc)}"
                ) from exc
            if tolerate is not None and tolerate(exc):
                return None
            error: Exception = refusal(exc, doing)
            if error is exc:
                raise
            raise error from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise RetryableError(f"{self.service} did not answer while trying to {doing}: {exc}") from exc
        except BotoCoreError as exc:
            error = refusal(exc, doing)
            if error is exc:
                raise
            raise error from exc
