"""Adapter layer: the Hosting port on SageMaker (boto3 `sagemaker` + `sagemaker-runtime` clients)."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from chalicelib.adapters.aws_errors import (
    AwsCalls,
    already_exists,
    error_code,
    invocation_refusal,
    is_missing,
    sagemaker_refusal,
)
from chalicelib.adapters.sagemaker_shapes import (
    MANAGED_BY,
    PRODUCTION_VARIANT,
    TAG_MODEL_ID,
    TAG_TASK_ID,
    state_of,
    variant_tags,
)
from chalicelib.adapters.serving_wire import (
    HANDLER_ENVIRONMENT,
    AnswerError,
    container_environment,
    decode_answer_bytes,
)
from chalicelib.domain.errors import InvocationError, InvocationTimeoutError
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantInfo, VariantSpec, VariantStatus

if TYPE_CHECKING:  # the stubs are a dev dependency; nothing here runs in Lambda
    from mypy_boto3_sagemaker.client import SageMakerClient
    from mypy_boto3_sagemaker.literals import ProductionVariantInstanceTypeType
    from mypy_boto3_sagemaker.type_defs import ProductionVariantTypeDef, TagTypeDef
    from mypy_boto3_sagemaker_runtime.client import SageMakerRuntimeClient

JSON = "application/json"
# The handler's container environment (each serving's: serving_wire.container_environment).
CONTAINER_ENVIRONMENT: Mapping[str, str] = HANDLER_ENVIRONMENT

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


_sagemaker = AwsCalls("SageMaker", refuse=sagemaker_refusal)
_runtime = AwsCalls("SageMaker Runtime")


def _gone_or_unlisted(exc: ClientError) -> bool:
    """ListTags on a part deleted since it was listed (SageMaker words this one several ways)."""
    return is_missing(exc) or error_code(exc) == "ValidationException"


def _tags_to_dict(tags: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in tags}


def _instances(endpoint: Mapping[str, Any]) -> int | None:
    """CurrentInstanceCount of the endpoint's variants: what serves now, autoscaling included."""
    counts = [v.get("CurrentInstanceCount") for v in endpoint.get("ProductionVariants", [])]
    known = [int(c) for c in counts if isinstance(c, int)]
    return sum(known) if known else None


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
        self._bounded: dict[float, SageMakerRuntimeClient] = {}
        self._role_arn = role_arn
        self._managed_by = managed_by

    # -- create ---------------------------------------------------------------------------

    def create_variant(self, spec: VariantSpec) -> None:
        """Each part is looked up, then created; "already exists" means a concurrent redelivery
        made it between our lookup and our create, which is as good as making it ourselves."""
        name, sm = spec.name, self._sm
        # A redelivered step usually finds the endpoint already made: one call, no creates.
        if self._describe_endpoint(name) is not None:
            return
        tags = self._tags(spec)
        if _sagemaker("look up model", lambda: sm.describe_model(ModelName=name), tolerate=is_missing) is None:
            _sagemaker(
                f"create model `{name}`",
                lambda: sm.create_model(
                    ModelName=name,
                    PrimaryContainer={
                        "Image": spec.image_uri,
                        "ModelDataUrl": spec.model_data_url,
                        "Environment": container_environment(spec.serving, spec.dtype),
                    },
                    ExecutionRoleArn=self._role_arn,
                    Tags=tags,
                ),
                tolerate=already_exists,
            )
        config = _sagemaker(
            "look up endpoint configuration",
            lambda: sm.describe_endpoint_config(EndpointConfigName=name),
            tolerate=is_missing,
        )
        if config is None:
            _sagemaker(
                f"create endpoint configuration `{name}`",
                lambda: sm.create_endpoint_config(
                    EndpointConfigName=name, ProductionVariants=[self._production_variant(spec)], Tags=tags
                ),
                tolerate=already_exists,
            )
        _sagemaker(
            f"create endpoint `{name}`",
            lambda: sm.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags),
            tolerate=already_exists,
        )

    @staticmethod
    def _production_variant(spec: VariantSpec) -> ProductionVariantTypeDef:
        variant: ProductionVariantTypeDef = {
            "VariantName": PRODUCTION_VARIANT,
            "ModelName": spec.name,
            # The stubs list the instance types they knew of; the settings allow-list rules here.
            "InstanceType": cast("ProductionVariantInstanceTypeType", spec.instance_type),
            "InitialInstanceCount": spec.initial_instance_count,
        }
        # Without these a container that crashes at start-up keeps an instance billing until
        # SageMaker's own (long) defaults give up, or our deploy deadline does.
        if spec.startup_timeout_seconds is not None:
            variant["ContainerStartupHealthCheckTimeoutInSeconds"] = spec.startup_timeout_seconds
        if spec.download_timeout_seconds is not None:
            variant["ModelDataDownloadTimeoutInSeconds"] = spec.download_timeout_seconds
        return variant

    def _tags(self, spec: VariantSpec) -> list[TagTypeDef]:
        return [{"Key": key, "Value": value} for key, value in variant_tags(spec, self._managed_by).items()]

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
        return VariantStatus(
            name=name, state=state, failure_reason=reason, platform_status=status, instance_count=_instances(found)
        )

    def _describe_endpoint(self, name: str) -> Mapping[str, Any] | None:
        return _sagemaker(
            f"describe endpoint `{name}`", lambda: self._sm.describe_endpoint(EndpointName=name), tolerate=is_missing
        )

    # -- invoke ---------------------------------------------------------------------------

    def invoke(self, name: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        runtime = self._runtime if timeout_seconds is None else self._runtime_within(timeout_seconds)

        def call() -> bytes:
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=name, ContentType=JSON, Accept=JSON, Body=json.dumps(payload).encode()
                )
                return response["Body"].read()
            except ReadTimeoutError:
                if timeout_seconds is None:
                    raise
                raise InvocationTimeoutError(name, timeout_seconds) from None

        raw = _runtime(f"invoke endpoint `{name}`", call, refuse=invocation_refusal(name))
        try:
            return decode_answer_bytes(raw).as_dict()
        except AnswerError as error:
            raise InvocationError(f"endpoint `{name}` answered no usable embeddings: {error}") from None

    def _runtime_within(self, seconds: float) -> SageMakerRuntimeClient:
        """A runtime client that waits at most `seconds` for an answer, once: a caller's deadline
        (the smoke test's) must bound the whole call, retries included."""
        client = self._bounded.get(seconds)
        if client is None:
            meta = self._runtime.meta
            config = meta.config.merge(
                Config(read_timeout=seconds, connect_timeout=min(3.0, seconds), retries={"total_max_attempts": 1})
            )
            client = boto3.session.Session().client(
                "sagemaker-runtime", region_name=meta.region_name, endpoint_url=meta.endpoint_url, config=config
            )
            self._bounded[seconds] = client
        return client

    # -- delete ---------------------------------------------------------------------------

    def delete_variant(self, name: str) -> None:
        # Endpoint first: it is what bills, and SageMaker lets the config and model go while
        # the endpoint that used them is still Deleting. What is gone already is fine.
        sm = self._sm
        _sagemaker(f"delete endpoint `{name}`", lambda: sm.delete_endpoint(EndpointName=name), tolerate=is_missing)
        _sagemaker(
            f"delete endpoint configuration `{name}`",
            lambda: sm.delete_endpoint_config(EndpointConfigName=name),
            tolerate=is_missing,
        )
        _sagemaker(f"delete model `{name}`", lambda: sm.delete_model(ModelName=name), tolerate=is_missing)

    # -- list -----------------------------------------------------------------------------

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        action = f"list variants named `{name_prefix}*`"
        endpoints, configs, models = _sagemaker(
            action,
            lambda: (
                self._names_and_arns("list_endpoints", "Endpoints", "Endpoint", name_prefix),
                self._names_and_arns("list_endpoint_configs", "EndpointConfigs", "EndpointConfig", name_prefix),
                self._names_and_arns("list_models", "Models", "Model", name_prefix),
            ),
        )
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
        def read() -> dict[str, str]:
            tags: dict[str, str] = {}
            for page in self._sm.get_paginator("list_tags").paginate(ResourceArn=arn):
                tags.update(_tags_to_dict(page.get("Tags", [])))
            return tags

        # A part deleted between the listing and now has no owner to report.
        return _sagemaker(action, read, tolerate=_gone_or_unlisted) or {}
