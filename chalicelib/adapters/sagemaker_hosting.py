"""Adapter layer: the Hosting port on SageMaker (boto3 `sagemaker` + `sagemaker-runtime` clients)."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from chalicelib.adapters.sagemaker_shapes import (
    MANAGED_BY,
    PRODUCTION_VARIANT,
    TAG_MODEL_ID,
    TAG_TASK_ID,
    state_of,
    variant_tags,
)
from chalicelib.domain.errors import InvocationError, RetryableError, TerminalHostingError
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantInfo, VariantSpec, VariantStatus

if TYPE_CHECKING:  # the stubs are a dev dependency; nothing here runs in Lambda
    from mypy_boto3_sagemaker.client import SageMakerClient
    from mypy_boto3_sagemaker.literals import ProductionVariantInstanceTypeType
    from mypy_boto3_sagemaker.type_defs import ProductionVariantTypeDef, TagTypeDef
    from mypy_boto3_sagemaker_runtime.client import SageMakerRuntimeClient

JSON = "application/json"

# The serving handler is copied into model.tar.gz under code/; the container must not reach the
# Hub at start-up (endpoints may run without internet access).
CONTAINER_ENVIRONMENT: Mapping[str, str] = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "HF_HUB_OFFLINE": "1",
}

# SageMaker's control plane reports a missing resource as a 400 ValidationException whose
# message names the kind. The quote after the kind keeps "Could not find model data at s3://..."
# (a bad artifact, terminal) from reading as "model not found" (already gone, fine).
_NOT_FOUND = re.compile(r"Could not find (model|endpoint configuration|endpoint)\s+['\"]")
_ALREADY_EXISTS = "Cannot create already existing"
_IN_PROGRESS = "Cannot update in-progress endpoint"
_THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "InternalDependencyException",  # runtime: a dependency of the endpoint hiccuped
        "ModelNotReadyException",  # runtime: the container is still loading
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# ListEndpoints & co. only accept this in NameContains.
_NAME_CONTAINS = re.compile(r"^[a-zA-Z0-9-]{1,63}$")


class SageMakerClients(NamedTuple):
    control: SageMakerClient
    runtime: SageMakerRuntimeClient


# Control-plane calls are cheap to repeat and SageMaker throttles them per account, so the
# client paces itself (adaptive). Attempts count the first one. Past them the adapter raises
# RetryableError and SQS redelivers later, which beats spinning inside one Lambda invocation.
# InvokeEndpoint lets a model take up to 60 s to answer, hence the runtime read timeout.
CONTROL_CONFIG = Config(
    retries={"mode": "adaptive", "total_max_attempts": 5}, connect_timeout=5, read_timeout=30
)
# An embedding of a few probe texts answers in milliseconds; the bound that matters is the
# caller's: the deploy worker's Lambda timeout (180 s) and API Gateway's 29 s for /invoke.
RUNTIME_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=3, read_timeout=25
)


def make_sagemaker_clients(region: str | None = None) -> SageMakerClients:
    """Both clients, from one fresh session (boto3's default session is not thread-safe)."""
    session = boto3.session.Session(region_name=region)
    return SageMakerClients(
        control=session.client("sagemaker", config=CONTROL_CONFIG),
        runtime=session.client("sagemaker-runtime", config=RUNTIME_CONFIG),
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def missing_kind(exc: ClientError) -> str | None:
    """'model', 'endpoint configuration' or 'endpoint' when the error says it does not exist."""
    if _code(exc) in ("ResourceNotFound", "ResourceNotFoundException"):
        return "resource"
    if _code(exc) != "ValidationException":
        return None
    found = _NOT_FOUND.search(_message(exc))
    return found.group(1) if found else None


def already_exists(exc: ClientError) -> bool:
    return _code(exc) == "ValidationException" and _ALREADY_EXISTS in _message(exc)


def is_transient(exc: ClientError) -> bool:
    code = _code(exc)
    return (
        code in _THROTTLING_CODES
        or code in _TRANSIENT_CODES
        or "Rate exceeded" in _message(exc)
        or _http_status(exc) == 429
        or _http_status(exc) >= 500
    )


def classify(exc: Exception, action: str) -> RetryableError | TerminalHostingError:
    """The typed error for a failed SageMaker call; `action` says what we were doing."""
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return RetryableError(f"SageMaker unreachable while trying to {action}: {exc}")
    if not isinstance(exc, ClientError):
        return TerminalHostingError(f"could not {action}: {exc}")
    code, message = _code(exc), _message(exc)
    if is_transient(exc):
        return RetryableError(f"SageMaker is busy ({code}) while trying to {action}: {message}")
    if code == "ResourceLimitExceeded":
        return TerminalHostingError(
            f"SageMaker quota reached, could not {action}: {message}. Request an increase in "
            "Service Quotas (SageMaker, '<instance type> for endpoint usage'), delete unused "
            "endpoints, or deploy with another instance type"
        )
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
        return TerminalHostingError(
            f"SageMaker denied the request to {action}: {message}. Check that the Lambda role "
            "may call SageMaker and pass the execution role (iam:PassRole)"
        )
    if code == "ValidationException" and _IN_PROGRESS in message:
        return RetryableError(
            f"could not {action}: the endpoint is still Creating or Updating and SageMaker "
            f"refuses to change it until it settles ({message})"
        )
    kind = missing_kind(exc)
    if kind:
        # Only happens while creating: a part we depend on was deleted under us. Running the
        # step again re-creates it from the top.
        return RetryableError(f"could not {action}: the {kind} it needs is gone ({message})")
    return TerminalHostingError(
        f"SageMaker rejected the request to {action}: {message} ({code}). Check the deploy "
        "config (instance type and count, image URI, model artifact URL, execution role)"
    )


def _tags_to_dict(tags: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in tags}


class SageMakerHosting:
    """Variants as one SageMaker Model + EndpointConfig + Endpoint, all named `spec.name`."""

    def __init__(
        self,
        sagemaker: SageMakerClient,
        runtime: SageMakerRuntimeClient,
        role_arn: str,
        managed_by: str = MANAGED_BY,
    ) -> None:
        self._sm = sagemaker
        self._runtime = runtime
        self._role_arn = role_arn
        self._managed_by = managed_by

    # -- create ---------------------------------------------------------------------------

    def create_variant(self, spec: VariantSpec) -> None:
        name = spec.name
        # A redelivered step usually finds the endpoint already made: one call, no creates.
        if self._describe_endpoint(name) is not None:
            return
        tags = self._tags(spec)
        if not self._exists("model", lambda: self._sm.describe_model(ModelName=name)):
            self._create(
                "model",
                name,
                lambda: self._sm.create_model(
                    ModelName=name,
                    PrimaryContainer={
                        "Image": spec.image_uri,
                        "ModelDataUrl": spec.model_data_url,
                        "Environment": dict(CONTAINER_ENVIRONMENT),
                    },
                    ExecutionRoleArn=self._role_arn,
                    Tags=tags,
                ),
            )
        if not self._exists(
            "endpoint configuration",
            lambda: self._sm.describe_endpoint_config(EndpointConfigName=name),
        ):
            self._create(
                "endpoint configuration",
                name,
                lambda: self._sm.create_endpoint_config(
                    EndpointConfigName=name,
                    ProductionVariants=[self._production_variant(spec)],
                    Tags=tags,
                ),
            )
        self._create(
            "endpoint",
            name,
            lambda: self._sm.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags),
        )

    @staticmethod
    def _production_variant(spec: VariantSpec) -> ProductionVariantTypeDef:
        return {
            "VariantName": PRODUCTION_VARIANT,
            "ModelName": spec.name,
            # The stubs list the instance types they knew of; the settings allow-list rules here.
            "InstanceType": cast("ProductionVariantInstanceTypeType", spec.instance_type),
            "InitialInstanceCount": spec.initial_instance_count,
        }

    def _tags(self, spec: VariantSpec) -> list[TagTypeDef]:
        return [{"Key": key, "Value": value} for key, value in variant_tags(spec, self._managed_by).items()]

    def _exists(self, kind: str, describe: Callable[[], object]) -> bool:
        try:
            describe()
        except ClientError as exc:
            if missing_kind(exc):
                return False
            raise classify(exc, f"look up {kind}") from exc
        except BotoCoreError as exc:
            raise classify(exc, f"look up {kind}") from exc
        return True

    def _create(self, kind: str, name: str, create: Callable[[], object]) -> None:
        try:
            create()
        except ClientError as exc:
            # Someone (a concurrent redelivery) made it between our describe and create.
            if already_exists(exc):
                return
            raise classify(exc, f"create {kind} `{name}`") from exc
        except BotoCoreError as exc:
            raise classify(exc, f"create {kind} `{name}`") from exc

    # -- describe -------------------------------------------------------------------------

    def describe(self, name: str) -> VariantStatus:
        found = self._describe_endpoint(name)
        if found is None:
            return VariantStatus(name=name, state=EndpointState.MISSING)
        status = str(found.get("EndpointStatus", ""))
        state = state_of(status)
        reason = found.get("FailureReason") or None
        if state is EndpointState.FAILED and not reason:
            reason = (
                f"SageMaker reported {status} without a reason; see CloudWatch log group "
                f"/aws/sagemaker/Endpoints/{name}"
            )
        return VariantStatus(name=name, state=state, failure_reason=reason, platform_status=status)

    def _describe_endpoint(self, name: str) -> Mapping[str, Any] | None:
        try:
            return self._sm.describe_endpoint(EndpointName=name)
        except ClientError as exc:
            if missing_kind(exc):
                return None
            raise classify(exc, f"describe endpoint `{name}`") from exc
        except BotoCoreError as exc:
            raise classify(exc, f"describe endpoint `{name}`") from exc

    # -- invoke ---------------------------------------------------------------------------

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._runtime.invoke_endpoint(
                EndpointName=name, ContentType=JSON, Accept=JSON, Body=json.dumps(payload).encode()
            )
            raw = response["Body"].read()
        except ClientError as exc:
            raise self._invocation_error(name, exc) from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise RetryableError(f"endpoint `{name}` did not answer in time: {exc}") from exc
        except BotoCoreError as exc:
            raise InvocationError(f"could not invoke endpoint `{name}`: {exc}") from exc
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise InvocationError(
                f"endpoint `{name}` answered with a body that is not JSON: {raw[:200]!r}"
            ) from exc
        if not isinstance(answer, dict):
            raise InvocationError(
                f"endpoint `{name}` answered JSON {type(answer).__name__} where an object "
                '{"embeddings": [...], ...} was expected'
            )
        return answer

    @staticmethod
    def _invocation_error(name: str, exc: ClientError) -> RetryableError | InvocationError:
        code, message = _code(exc), _message(exc)
        if is_transient(exc):
            return RetryableError(f"endpoint `{name}` is busy ({code}): {message}")
        if code == "ModelError":
            original = exc.response.get("OriginalStatusCode")
            logs = exc.response.get("LogStreamArn")
            where = f"; container logs: {logs}" if logs else f"; see /aws/sagemaker/Endpoints/{name}"
            status = f" {original}" if original else ""
            return InvocationError(
                f"the model in endpoint `{name}` failed the request (status{status}): "
                f"{message}{where}"
            )
        return InvocationError(f"endpoint `{name}` refused the request ({code}): {message}")

    # -- delete ---------------------------------------------------------------------------

    def delete_variant(self, name: str) -> None:
        # Endpoint first: it is what bills, and SageMaker lets the config and model go while
        # the endpoint that used them is still Deleting.
        self._delete("endpoint", name, lambda: self._sm.delete_endpoint(EndpointName=name))
        self._delete(
            "endpoint configuration",
            name,
            lambda: self._sm.delete_endpoint_config(EndpointConfigName=name),
        )
        self._delete("model", name, lambda: self._sm.delete_model(ModelName=name))

    @staticmethod
    def _delete(kind: str, name: str, delete: Callable[[], object]) -> None:
        try:
            delete()
        except ClientError as exc:
            if missing_kind(exc):
                return
            raise classify(exc, f"delete {kind} `{name}`") from exc
        except BotoCoreError as exc:
            raise classify(exc, f"delete {kind} `{name}`") from exc

    # -- list -----------------------------------------------------------------------------

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        action = f"list variants named `{name_prefix}*`"
        try:
            endpoints = self._names_and_arns("list_endpoints", "Endpoints", "Endpoint", name_prefix)
            configs = self._names_and_arns(
                "list_endpoint_configs", "EndpointConfigs", "EndpointConfig", name_prefix
            )
            models = self._names_and_arns("list_models", "Models", "Model", name_prefix)
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc, action) from exc
        variants = []
        for name in sorted(set(endpoints) | set(configs) | set(models)):
            # Tags are the same on all three parts; read the first part that still has them.
            arns = [parts[name] for parts in (endpoints, configs, models) if name in parts]
            tags = self._first_tags(arns, action)
            variants.append(
                VariantInfo(
                    name=name,
                    embedding_model_id=tags.get(TAG_MODEL_ID),
                    task_id=tags.get(TAG_TASK_ID),
                    has_endpoint=name in endpoints,
                    has_endpoint_config=name in configs,
                    has_model=name in models,
                )
            )
        return variants

    def _names_and_arns(
        self, operation: str, key: str, kind: str, name_prefix: str
    ) -> dict[str, str]:
        kwargs: dict[str, Any] = {}
        # NameContains is a substring filter with its own character rule; the prefix match
        # is ours, applied below either way.
        if _NAME_CONTAINS.fullmatch(name_prefix):
            kwargs["NameContains"] = name_prefix
        found: dict[str, str] = {}
        paginator = self._sm.get_paginator(operation)  # type: ignore[call-overload]
        for page in paginator.paginate(**kwargs):
            for item in page.get(key, []):
                name = str(item[f"{kind}Name"])
                if name.startswith(name_prefix):
                    found[name] = str(item[f"{kind}Arn"])
        return found

    def _first_tags(self, arns: list[str], action: str) -> dict[str, str]:
        for arn in arns:
            tags = self._tags_of(arn, action)
            if TAG_MODEL_ID in tags or TAG_TASK_ID in tags:
                return tags
        return {}

    def _tags_of(self, arn: str, action: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        try:
            for page in self._sm.get_paginator("list_tags").paginate(ResourceArn=arn):
                tags.update(_tags_to_dict(page.get("Tags", [])))
        except ClientError as exc:
            if is_transient(exc):
                raise classify(exc, action) from exc
            # Deleted between the listing and now (SageMaker words this one several ways):
            # it has no owner to report.
            if missing_kind(exc) or _code(exc) == "ValidationException":
                return {}
            raise classify(exc, action) from exc
        except BotoCoreError as exc:
            raise classify(exc, action) from exc
        return tags
