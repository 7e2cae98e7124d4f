"""API layer: request bodies (HTTP and the requests queue) checked for shape, then turned into commands."""
from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from chalicelib.domain.commands import (
    AutoscalingRequest,
    DeployConfigRequest,
    IntakeCommand,
    PromoteDeploy,
    SubmitDelete,
    SubmitDeploy,
)
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.names import ID_RULE, is_valid_id


class AutoscalingIn(BaseModel):
    """`config.autoscaling`: Application Auto Scaling target tracking registered on green."""

    model_config = ConfigDict(extra="forbid", strict=True)

    min_instances: StrictInt = Field(ge=1)
    max_instances: StrictInt = Field(ge=1)
    target_invocations_per_instance: StrictInt = Field(gt=0)


class DeployConfigIn(BaseModel):
    """The optional `config` of a deploy request; omitted keys take the stage's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    instance_type: StrictStr | None = None
    initial_instance_count: StrictInt | None = Field(default=None, ge=1)
    model_data_url: StrictStr | None = Field(default=None, max_length=1024)
    image_uri: StrictStr | None = Field(default=None, max_length=512)
    bake_seconds: StrictInt | None = Field(default=None, ge=0)
    # "skip": the artifact has no reference embeddings and the caller says so; the smoke test then
    # checks shape, dimension and norms only, and the task says the parity check was skipped.
    parity_check: Literal["required", "skip"] | None = None
    # "manual": green waits beside blue in stage awaiting_promotion until POST /deploy/{id}/promote.
    promotion: Literal["auto", "manual"] | None = None
    promotion_timeout_seconds: StrictInt | None = Field(default=None, ge=60)
    autoscaling: AutoscalingIn | None = None


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    embedding_model_id: StrictStr
    id: StrictStr | None = None
    config: DeployConfigIn | None = None


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    embedding_model_id: StrictStr
    id: StrictStr | None = None
    reason: StrictStr | None = Field(default=None, max_length=1000)


class PromoteRequest(BaseModel):
    """A promote from the requests queue: which deploy task's candidate goes live."""

    model_config = ConfigDict(extra="forbid", strict=True)

    task_id: StrictStr


class InvokeTarget(BaseModel):
    """The one field of POST /models/{id}/invoke that is ours, not the endpoint's."""

    model_config = ConfigDict(extra="allow", strict=True)

    target: Literal["live", "candidate"] = "live"


RequestT = TypeVar("RequestT", DeployRequest, DeleteRequest)


class IntakeEnvelope(BaseModel):
    """A message on the requests queue: an action plus the same fields as the HTTP body."""

    model_config = ConfigDict(extra="allow", strict=True)

    action: Literal["deploy", "delete", "promote"]


def parse_json_body(raw: bytes | str | None, max_bytes: int) -> dict[str, Any]:
    """Malformed or non-object JSON is the caller's fault, and we say where it broke."""
    if raw is None or raw in (b"", ""):
        raise InvalidRequestError("request body is empty: send a JSON object", field="body")
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise BodyTooLargeError(
            f"request body is {size} bytes; the limit is {max_bytes} bytes", field="body"
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBodyError(f"request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"request body must be a JSON object, not {type(data).__name__}", field="body"
        )
    return data


class MalformedBodyError(InvalidRequestError):
    """The body is not JSON at all (HTTP 400, where shape errors are 422)."""


class BodyTooLargeError(InvalidRequestError):
    """The body is over the configured size limit (HTTP 413)."""


def _model_id_from(data: dict[str, Any]) -> dict[str, Any]:
    """Accept the seed's `model_id` as a synonym of `embedding_model_id`."""
    data = dict(data)
    if "model_id" in data:
        synonym = data.pop("model_id")
        if "embedding_model_id" in data and data["embedding_model_id"] != synonym:
            raise InvalidRequestError(
                "embedding_model_id and model_id name different models; send one of them",
                field="embedding_model_id",
            )
        data["embedding_model_id"] = synonym
    return data


def _check_ids(embedding_model_id: str, task_id: str | None) -> None:
    if not is_valid_id(embedding_model_id):
        raise InvalidRequestError(
            f"embedding_model_id {embedding_model_id!r} is not allowed: {ID_RULE}",
            field="embedding_model_id",
        )
    if task_id is not None and not is_valid_id(task_id):
        raise InvalidRequestError(f"id {task_id!r} is not allowed: {ID_RULE}", field="id")


def _first_error(exc: ValidationError) -> InvalidRequestError:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        message = f"unknown field `{location}`"
    elif error["type"] == "missing":
        message = f"field `{location}` is required"
    else:
        message = f"field `{location}`: {error['msg']}"
    return InvalidRequestError(message, field=location)


def _parse(model: type[RequestT], data: dict[str, Any]) -> RequestT:
    try:
        request = model.model_validate(_model_id_from(data))
    except ValidationError as exc:
        raise _first_error(exc) from exc
    _check_ids(request.embedding_model_id, request.id)
    return request


def parse_deploy(data: dict[str, Any], source: str = "http") -> SubmitDeploy:
    request = _parse(DeployRequest, data)
    config = request.config or DeployConfigIn()
    given = config.model_dump(exclude={"autoscaling"})
    scaling = config.autoscaling
    return SubmitDeploy(
        embedding_model_id=request.embedding_model_id,
        client_task_id=request.id,
        config=DeployConfigRequest(
            **given,
            autoscaling=AutoscalingRequest(
                scaling.min_instances, scaling.max_instances, scaling.target_invocations_per_instance
            )
            if scaling
            else None,
        ),
        source=source,
    )


def parse_delete(data: dict[str, Any], source: str = "http") -> SubmitDelete:
    request = _parse(DeleteRequest, data)
    return SubmitDelete(
        embedding_model_id=request.embedding_model_id,
        client_task_id=request.id,
        reason=request.reason,
        source=source,
    )


def parse_promote(data: dict[str, Any], source: str = "sqs") -> PromoteDeploy:
    try:
        request = PromoteRequest.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from exc
    if not is_valid_id(request.task_id):
        raise InvalidRequestError(f"task_id {request.task_id!r} is not allowed: {ID_RULE}", field="task_id")
    return PromoteDeploy(task_id=request.task_id, source=source)


def parse_invoke(data: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(whether to embed through the candidate, the payload for the endpoint without `target`)."""
    try:
        target = InvokeTarget.model_validate(data).target
    except ValidationError as exc:
        raise _first_error(exc) from exc
    return target == "candidate", {key: value for key, value in data.items() if key != "target"}


def parse_intake(data: dict[str, Any]) -> IntakeCommand:
    """A requests-queue message: `action` picks the command, the rest is the HTTP body."""
    try:
        envelope = IntakeEnvelope.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from exc
    fields = {k: v for k, v in data.items() if k != "action"}
    if envelope.action == "deploy":
        return parse_deploy(fields, source="sqs")
    if envelope.action == "promote":
        return parse_promote(fields)
    return parse_delete(fields, source="sqs")
