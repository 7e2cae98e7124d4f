"""API layer: request bodies (HTTP and the requests queue) checked for shape, then turned into commands.

The pydantic models here are the one source of each request's wire shape: the routes validate with
them and the OpenAPI document (`chalicelib/api/openapi.py`) is generated from them. Every model
defers building its validator to its first use: each Lambda function imports app.py, and a worker
never validates an HTTP body (responses.py does the same).
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonDict, SkipJsonSchema
from pydantic_core import PydanticCustomError

from chalicelib.domain.commands import (
    DeployConfigRequest,
    IntakeCommand,
    PromoteDeploy,
    SubmitDelete,
    SubmitDeploy,
)
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.invoke_rules import MAX_TEXT_CHARS, MAX_TEXTS_PER_REQUEST, InvokeInputError, read_inputs
from chalicelib.domain.models import (
    ALARM_NAME_MAX,
    MAX_5XX_ERRORS_PER_MINUTE_RANGE,
    MAX_MODEL_LATENCY_MS_RANGE,
    MAX_ROLLBACK_ALARMS,
    ScalingPolicy,
)
from chalicelib.domain.names import ID_PATTERN, ID_RULE, is_valid_id

# SageMaker's limit for a container image (CreateModel's PrimaryContainer.Image).
IMAGE_URI_MAX = 255

# The id rule (domain/names.py) as the document shows it; the check itself stays `is_valid_id`,
# whose message names the rule in words.
Id = Annotated[
    StrictStr,
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN.pattern, "maxLength": 128, "examples": ["abc123"]}),
]
AlarmName = Annotated[StrictStr, Field(min_length=1, max_length=ALARM_NAME_MAX)]


class AutoscalingIn(BaseModel):
    """`config.autoscaling`: Application Auto Scaling target tracking registered on green before the swap."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    min_instances: StrictInt = Field(ge=1)
    max_instances: StrictInt = Field(ge=1)
    target_invocations_per_instance: StrictInt = Field(gt=0, description="Invocations per instance a minute")


class DeployConfigIn(BaseModel):
    """The optional `config` of a deploy request; omitted keys take the stage's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    instance_type: StrictStr | None = None
    initial_instance_count: StrictInt | None = Field(default=None, ge=1)
    model_data_url: StrictStr | None = Field(default=None, max_length=1024)
    image_uri: StrictStr | None = Field(default=None, max_length=IMAGE_URI_MAX)
    bake_seconds: StrictInt | None = Field(default=None, ge=0)
    # "skip": the artifact has no reference embeddings and the caller says so; the smoke test then
    # checks shape, dimension and norms only, and the task says the parity check was skipped.
    parity_check: Literal["required", "skip"] | None = None
    # "manual": green waits beside blue in stage awaiting_promotion until POST /deploy/{id}/promote.
    promotion: Literal["auto", "manual"] | None = None
    promotion_timeout_seconds: StrictInt | None = Field(default=None, ge=60)
    # None: green carries over the live variant's policy, if it has one.
    autoscaling: AutoscalingIn | None = None
    rollback_alarms: list[AlarmName] | None = Field(
        default=None,
        max_length=MAX_ROLLBACK_ALARMS,
        description="CloudWatch alarms of yours watched during the bake beside esdeploy's own two: any of them "
        "in ALARM rolls the alias back to the previous variant. An alarm that does not exist is named in the "
        "task's events at the swap and does not stop the deploy",
    )
    max_5xx_errors_per_minute: StrictInt | None = Field(
        default=None,
        ge=MAX_5XX_ERRORS_PER_MINUTE_RANGE[0],
        le=MAX_5XX_ERRORS_PER_MINUTE_RANGE[1],
        description="esdeploy's 5XX alarm on green fires above this many 5XX invocation errors in a minute "
        "(default: the stage's ESDEPLOY_ROLLBACK_MAX_5XX_ERRORS_PER_MINUTE)",
    )
    max_model_latency_ms: StrictInt | None = Field(
        default=None,
        ge=MAX_MODEL_LATENCY_MS_RANGE[0],
        le=MAX_MODEL_LATENCY_MS_RANGE[1],
        description="esdeploy's latency alarm on green fires above this average model latency over a minute "
        "(default: the stage's ESDEPLOY_ROLLBACK_MAX_MODEL_LATENCY_MS)",
    )
    serving: Literal["handler", "tei"] | None = Field(
        default=None,
        description="What runs in the endpoint: `handler` (default; esdeploy's handler in AWS's Hugging Face PyTorch "
        "image) or `tei` (AWS's text-embeddings-inference image, GPU or CPU by the instance type). The artifact "
        "must have been packaged for it (esdeploy package --serving)",
    )
    dtype: Literal["float16", "float32"] | None = Field(
        default=None,
        description="The precision the serving runs in (default: float16 on a GPU, float32 on a CPU); float32 "
        "when float16 cannot hold the parity gate's threshold",
    )


# One of the two names of the model is required (the schema says so; `named_model` enforces it).
_ONE_MODEL_ID: JsonDict = {"anyOf": [{"required": ["embedding_model_id"]}, {"required": ["model_id"]}]}


class _ForModel(BaseModel):
    """A request about one model. Leaving a name out is fine; an explicit null is a wrong type, as
    the document says (a default is not validated, a sent value is)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra=_ONE_MODEL_ID, protected_namespaces=(), defer_build=True
    )

    embedding_model_id: Id | SkipJsonSchema[None] = Field(default=None, description="The model to act on")
    model_id: Id | SkipJsonSchema[None] = Field(
        default=None, description="Embedding Studio's name for `embedding_model_id`"
    )
    id: Id | None = Field(default=None, description="Client task id: sending the same request again replays the task")

    @field_validator("embedding_model_id", "model_id", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("string_type", "Input should be a valid string")
        return value

    def named_model(self) -> str:
        """The model's id, from whichever name the caller used."""
        given = [name for name in (self.embedding_model_id, self.model_id) if name is not None]
        if not given:
            raise InvalidRequestError("field `embedding_model_id` is required", field="embedding_model_id")
        if len(set(given)) > 1:
            raise InvalidRequestError(
                "embedding_model_id and model_id name different models; send one of them",
                field="embedding_model_id",
            )
        return given[0]


class DeployRequest(_ForModel):
    """`POST /deploy`: deploy a model as a green variant; omitted config keys take the stage's defaults."""

    config: DeployConfigIn | None = None


class DeleteRequest(_ForModel):
    """`POST /delete`: tear down every variant of a model and its alias."""

    reason: StrictStr | None = Field(default=None, max_length=1000)


Text = Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]


class InvokeRequest(BaseModel):
    """`POST /models/{embedding_model_id}/invoke`: the endpoint's own request body."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    inputs: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS_PER_REQUEST)] = Field(
        description="A text or a list of texts (empty strings are fine)", examples=[["How do I reset my password?"]]
    )
    normalize: StrictBool | None = Field(default=None, description="L2-normalise the vectors (default: the model's)")
    truncate: StrictBool | None = Field(
        default=None, description="Cut texts at the model's token limit (default true); false refuses a longer text"
    )
    target: Literal["live", "candidate"] | None = Field(
        default=None,
        description="`candidate`: embed with the candidate of a deploy awaiting promotion (re-embedding a corpus) "
        "instead of the live variant",
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _say_what_is_wrong(cls, inputs: Any) -> Any:
        """The invoke rules (chalicelib/domain/invoke_rules.py), in the handler's own words, so the caller reads
        one message whoever refuses."""
        try:
            read_inputs(inputs)
        except InvokeInputError as error:
            raise PydanticCustomError("invoke_input", str(error)) from None
        return inputs

    def payload(self) -> dict[str, Any]:
        """What the endpoint is sent: only what the caller set (`target` is ours, not the endpoint's)."""
        return self.model_dump(exclude_none=True, exclude={"target"})


RequestT = TypeVar("RequestT", DeployRequest, DeleteRequest)


class IntakeEnvelope(BaseModel):
    """A message on the requests queue: an action plus the same fields as the HTTP body."""

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)

    action: Literal["deploy", "delete", "promote"]


class PromoteRequest(BaseModel):
    """A promote on the requests queue: which deploy task's candidate goes live."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    task_id: StrictStr


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
    except RecursionError:
        # json's parser recurses per nesting level; ~1,000 brackets exhaust the stack. No request
        # of this API nests more than three levels.
        raise MalformedBodyError(
            "request body nests arrays or objects too deeply to read; no request of this API nests more than 3 levels",
            field="body",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"request body must be a JSON object, not {type(data).__name__}", field="body"
        )
    return data


class MalformedBodyError(InvalidRequestError):
    """The body is not JSON at all (HTTP 400, where shape errors are 422)."""


class BodyTooLargeError(InvalidRequestError):
    """The body is over the configured size limit (HTTP 413)."""


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
    elif error["type"] == "invoke_input":
        message = error["msg"]  # names the field (and the item) itself
    else:
        message = f"field `{location}`: {error['msg']}"
    return InvalidRequestError(message, field=location)


ModelT = TypeVar("ModelT", bound=BaseModel)


def validated(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """`data` as `model`, or InvalidRequestError naming the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from exc


def _parse(model: type[RequestT], data: dict[str, Any]) -> tuple[RequestT, str]:
    request = validated(model, data)
    embedding_model_id = request.named_model()
    _check_ids(embedding_model_id, request.id)
    return request, embedding_model_id


def parse_deploy(data: dict[str, Any], source: str = "http") -> SubmitDeploy:
    request, embedding_model_id = _parse(DeployRequest, data)
    config = request.config or DeployConfigIn()
    scaling = config.autoscaling
    return SubmitDeploy(
        embedding_model_id=embedding_model_id,
        client_task_id=request.id,
        config=DeployConfigRequest(
            **config.model_dump(exclude={"autoscaling", "rollback_alarms"}),
            rollback_alarms=tuple(config.rollback_alarms) if config.rollback_alarms is not None else None,
            autoscaling=ScalingPolicy(
                scaling.min_instances, scaling.max_instances, scaling.target_invocations_per_instance
            )
            if scaling
            else None,
        ),
        source=source,
    )


def parse_delete(data: dict[str, Any], source: str = "http") -> SubmitDelete:
    request, embedding_model_id = _parse(DeleteRequest, data)
    return SubmitDelete(
        embedding_model_id=embedding_model_id,
        client_task_id=request.id,
        reason=request.reason,
        source=source,
    )


def parse_invoke(data: dict[str, Any]) -> dict[str, Any]:
    """An invoke body, checked as far as we know the endpoint's rules: what the endpoint is sent."""
    return validated(InvokeRequest, data).payload()


def parse_invoke_request(data: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """(whether the candidate awaiting promotion is asked, what the endpoint is sent)."""
    request = validated(InvokeRequest, data)
    return request.target == "candidate", request.payload()


def parse_promote(data: dict[str, Any], source: str = "sqs") -> PromoteDeploy:
    request = validated(PromoteRequest, data)
    if not is_valid_id(request.task_id):
        raise InvalidRequestError(f"task_id {request.task_id!r} is not allowed: {ID_RULE}", field="task_id")
    return PromoteDeploy(task_id=request.task_id, source=source)


def parse_intake(data: dict[str, Any]) -> IntakeCommand:
    """A requests-queue message: `action` picks the command, the rest is the HTTP body."""
    envelope = validated(IntakeEnvelope, data)
    fields = {k: v for k, v in data.items() if k != "action"}
    if envelope.action == "deploy":
        return parse_deploy(fields, source="sqs")
    if envelope.action == "promote":
        return parse_promote(fields)
    return parse_delete(fields, source="sqs")
