"""API layer: the OpenAPI 3.1 document, generated from the request and answer models and one table of operations.

The document is built on the first `GET /openapi.json` (never at import: the Lambda's cold start
does not pay for it), and committed as docs/openapi.json (`make openapi` writes it; a test fails
when the two differ). Building it checks that every route of the app has exactly one operation
here and that every operation here is a route, so the routes and the document cannot drift apart.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from chalicelib.api.responses import (
    AliasOut,
    BusyErrorOut,
    DeleteTaskOut,
    DeployTaskOut,
    ErrorOut,
    HealthOut,
    InvokeOut,
    ModelOut,
    ModelsOut,
)
from chalicelib.api.schemas import IMAGE_URI_MAX, DeleteRequest, DeployRequest, InvokeRequest
from chalicelib.domain.answer_size import answer_bytes, texts_that_fit
from chalicelib.domain.errors import AnswerTooLargeError, ModelNotFoundError, TaskNotFoundError
from chalicelib.domain.names import ID_PATTERN, ID_RULE
from chalicelib.version import VERSION

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    """One status of one operation: its meaning, its body (a model, a union of models, or a raw
    media type) and an example."""

    description: str
    models: tuple[type[BaseModel], ...] = (ErrorOut,)
    media: tuple[str, ...] = (JSON,)
    schema: Mapping[str, Any] | None = None  # for a body no model describes (HTML, JavaScript)
    example: Any = None


@dataclass(frozen=True)
class Operation:
    summary: str
    ok: Answer
    tag: str
    description: str = ""
    body: type[BaseModel] | None = None
    errors: Mapping[int, Answer] = field(default_factory=dict)
    aws: bool = True  # reads or writes AWS: 503 when AWS is busy
    ok_status: int = 200


# Answers every route may give.
BAD_JSON = Answer("The body is not JSON, or nests arrays and objects too deeply to read",
                  example={"detail": "request body is not valid JSON: Expecting value: line 1 column 14 (char 13)",
                           "field": "body"})
TOO_LARGE = Answer("The body is over the stage's limit (ESDEPLOY_MAX_BODY_BYTES, 64 KiB by default)",
                   example={"detail": "request body is 100054 bytes; the limit is 65536 bytes", "field": "body"})
UNSUPPORTED = Answer(
    "A `Content-Type` other than `application/json` (none at all counts as JSON)",
    example={"detail": "Content-Type text/plain is not supported: send the body as JSON with "
                       "Content-Type: application/json"},
)
INVALID = Answer(
    "The body has a wrong type, an unknown field, or an id or config outside the stage's rules; "
    "`field` names it",
    example={"detail": f"field `config.image_uri`: String should have at most {IMAGE_URI_MAX} characters",
             "field": "config.image_uri"},
)
BUSY = Answer(
    "Another deploy or delete of this model is pending or processing (`active_task_id` names it), "
    "or the client task id was used with a different body",
    models=(BusyErrorOut, ErrorOut),
)
AWS_BUSY = Answer("AWS throttled or failed a call this request needs; send it again",
                  example={"detail": "DynamoDB is busy (ProvisionedThroughputExceededException) while trying to "
                                     "read the task: Rate exceeded"})


def _not_found(text: str) -> Answer:
    return Answer("Not found", example={"detail": text})


def _body_errors(more: Mapping[int, Answer]) -> dict[int, Answer]:
    """A route that reads a JSON body: the body's own refusals, then the route's."""
    return {400: BAD_JSON, 413: TOO_LARGE, 422: INVALID, **more}


ID_PARAMS = {"task_id": "A task id, as `POST /deploy` or `POST /delete` answered it (or the client `id`)",
             "embedding_model_id": "A model id", "asset": "The file of Swagger UI to load"}
SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation("Liveness", Answer("The API answers", models=(HealthOut,)), tag="service",
                                  aws=False),
    ("GET", "/docs"): Operation(
        "This API in Swagger UI",
        Answer("An HTML page (Swagger UI where it is installed, as with `esdeploy local`)", models=(),
               media=("text/html",), schema={"type": "string"}),
        tag="service", aws=False,
    ),
    ("GET", "/docs/{asset}"): Operation(
        "Swagger UI's script and style sheet, served by the API itself (no CDN)",
        Answer("The file", models=(), media=("text/css", "text/javascript"), schema={"type": "string"}),
        errors={404: _not_found("no such file of Swagger UI: `nope.js`")}, tag="service", aws=False,
    ),
    ("GET", "/favicon.ico"): Operation(
        "No icon", Answer("Nothing: a browser asks for it by itself, and an empty answer is no error", models=(),
                          media=()),
        tag="service", aws=False, ok_status=204,
    ),
    ("GET", "/openapi.json"): Operation(
        "This document", Answer("OpenAPI 3.1", models=(), schema={"type": "object"}), tag="service", aws=False
    ),
    ("POST", "/deploy"): Operation(
        "Deploy a model (blue/green)",
        Answer("The task, stored and queued: poll `GET /deploy/{task_id}`", models=(DeployTaskOut,)),
        description="A green variant is created, checked against the artifact's reference embeddings, "
        "and only then made live through the model's alias; the previous variant stays up for the bake "
        "period. Sending the same `id` with the same body again answers the same task.",
        body=DeployRequest,
        errors=_body_errors({
            409: BUSY,
            503: Answer("AWS failed, or the task could not be queued (it is stored `failed`)",
                        example={"detail": "Failed to create and send model deployment task"}),
        }),
        tag="deploy",
    ),
    ("GET", "/deploy/{task_id}"): Operation(
        "A deploy task", Answer("The task with its events", models=(DeployTaskOut,)),
        errors={404: _not_found(str(TaskNotFoundError.by_id("deploy", "nope")))}, tag="deploy",
    ),
    ("GET", "/deploy-status/{embedding_model_id}"): Operation(
        "The newest deploy task of a model", Answer("The task", models=(DeployTaskOut,)),
        errors={404: _not_found(str(TaskNotFoundError.by_model("deploy", "nope")))}, tag="deploy",
    ),
    ("POST", "/deploy/{task_id}/promote"): Operation(
        "Make the candidate of a deploy awaiting promotion live",
        Answer("The task as the promote found it (`promote_by` still set); the worker swaps the alias next. "
               "A second promote answers the task and changes nothing", models=(DeployTaskOut,)),
        description="Only for a deploy with `config.promotion: \"manual\"` in stage `awaiting_promotion`: "
        "its candidate passed the health and parity gate and waits beside the live variant (the reindex "
        "window). The swap, bake and teardown of the previous variant follow as in an automatic deploy.",
        errors={404: _not_found(str(TaskNotFoundError.by_id("deploy", "nope"))),
                409: Answer("The task cannot be promoted: it was submitted with promotion `auto`, has not "
                            "reached the gate, is being canceled, or has ended",
                            example={"detail": "Deployment task `t1` is already canceled; there is no "
                                               "candidate to promote"})},
        tag="deploy",
    ),
    ("POST", "/deploy/{task_id}/cancel"): Operation(
        "Cancel a deploy that has not ended; during its bake, roll it back",
        Answer("The task as the cancel found it; the worker ends it and tears its green variant down "
               "(during the bake, after moving the alias back to the previous variant)",
               models=(DeployTaskOut,)),
        errors={404: _not_found(str(TaskNotFoundError.by_id("deploy", "nope"))),
                409: Answer("The task has ended already, or changed while the cancel was written")},
        tag="deploy",
    ),
    ("POST", "/delete"): Operation(
        "Delete a model: its alias, then every variant",
        Answer("The task, stored and queued: poll `GET /delete/{task_id}`", models=(DeleteTaskOut,)),
        body=DeleteRequest,
        errors=_body_errors({
            409: BUSY,
            503: Answer("AWS failed, or the task could not be queued (it is stored `failed`)",
                        example={"detail": "Failed to create and send model deletion task"}),
        }),
        tag="delete",
    ),
    ("GET", "/delete/{task_id}"): Operation(
        "A deletion task", Answer("The task with its events", models=(DeleteTaskOut,)),
        errors={404: _not_found(str(TaskNotFoundError.by_id("delete", "nope")))}, tag="delete",
    ),
    ("GET", "/delete-status/{embedding_model_id}"): Operation(
        "The newest deletion task of a model", Answer("The task", models=(DeleteTaskOut,)),
        errors={404: _not_found(str(TaskNotFoundError.by_model("delete", "nope")))}, tag="delete",
    ),
    ("GET", "/models"): Operation(
        "The live models", Answer("Every model with a live alias", models=(ModelsOut,)), tag="models"
    ),
    ("GET", "/models/{embedding_model_id}"): Operation(
        "A model's alias",
        Answer("The live variant, the previous one during the bake, and the candidate of a deploy awaiting "
               "promotion (`endpoint_name` is null when a first deploy's candidate is all there is)",
               models=(ModelOut,)),
        errors={404: _not_found(str(ModelNotFoundError.not_deployed("nope")))}, tag="models",
    ),
    ("POST", "/models/{embedding_model_id}/rollback"): Operation(
        "Point the alias back at the previous variant",
        Answer("The alias after the swap back; the variant it left goes to teardown", models=(AliasOut,)),
        errors={404: _not_found(str(ModelNotFoundError.not_deployed("nope"))),
                409: Answer("A deploy or delete of the model is active, or there is no previous variant "
                            "in service any more", models=(BusyErrorOut, ErrorOut))},
        tag="models",
    ),
    ("POST", "/models/{embedding_model_id}/invoke"): Operation(
        "Embed texts with the model's live variant (or its candidate awaiting promotion)",
        Answer("The endpoint's answer and the variant that gave it", models=(InvokeOut,)),
        description="The body is the endpoint's own (docs/serving.md). Its limits are checked here first; "
        "what the endpoint still refuses is answered 422 with its words. The endpoint has "
        "ESDEPLOY_INVOKE_TIMEOUT_SECONDS (20 s by default) to answer, so that API Gateway's 29 s are never "
        "reached; callers with large batches call the endpoint directly.",
        body=InvokeRequest,
        errors=_body_errors({
            404: _not_found(str(ModelNotFoundError.not_deployed("nope"))),
            409: Answer("`target: candidate`, but no deploy of the model awaits promotion"),
            413: Answer(
                "The body is over the stage's limit (ESDEPLOY_MAX_BODY_BYTES), or the answer for this many texts "
                "would pass the 6 MB a SageMaker real-time endpoint and a synchronous Lambda answer at most "
                "(estimated from the model's dimension): the detail says how many texts fit",
                example={"detail": str(AnswerTooLargeError(256, 4096, answer_bytes(256, 4096), texts_that_fit(4096))),
                         "field": "inputs"},
            ),
            422: Answer("The body breaks the endpoint's rules (too many texts, not strings, an unknown field, "
                        "a lone surrogate), checked here or refused by the endpoint itself",
                        example={"detail": "too many texts: 10000 > 256; split the request", "field": "inputs"}),
            502: Answer("The endpoint failed on the request or answered something that is not an embedding"),
            504: Answer("The endpoint did not answer within ESDEPLOY_INVOKE_TIMEOUT_SECONDS",
                        example={"detail": "endpoint esd-abc123-6ca13d52-a1f9bbbc did not answer in 20 s"}),
        }),
        tag="models",
    ),
}

GATEWAY = {
    "403": {"$ref": "#/components/responses/GatewayDenied"},
    "429": {"$ref": "#/components/responses/GatewayThrottled"},
}
GATEWAY_RESPONSES = {
    "GatewayDenied": {
        "description": "Deployed stages only (API Gateway): the request is not SigV4-signed, the signature "
        "or the caller's IAM permission is wrong, or no route has this path",
        "content": {JSON: {"schema": {"$ref": REF.format(model="ErrorOut")},
                           "example": {"detail": "Missing Authentication Token"}}},
    },
    "GatewayThrottled": {
        "description": "Deployed stages only (API Gateway): over the stage's rate limit; wait and send again",
        "content": {JSON: {"schema": {"$ref": REF.format(model="ErrorOut")},
                           "example": {"detail": "Too Many Requests"}}},
    },
}

DESCRIPTION = f"""\
Blue/green deployment of embedding models to Amazon SageMaker: Embedding Studio's inference-deployment
task API (deploy and delete tasks, their status by task id and by model), extended with the models'
aliases, rollback, cancel and invoke.

Request bodies are JSON objects sent with `Content-Type: application/json`. Every error answer is
`{{"detail": "..."}}` with a text a person can act on (and `field` when a request field is at fault).
Model and task ids: {ID_RULE}.

On AWS (dev and prod) every route requires SigV4-signed requests (`esdeploy --iam`); `esdeploy local`
answers unsigned ones. docs/api.md has a recorded request and answer for every route."""


class _Schemas(GenerateJsonSchema):
    """pydantic's JSON Schema, without what only clutters a contract: a title per field, and a
    `default: null` on a field that is left out rather than sent as null (not a valid value)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        result = super().default_schema(schema)
        if result.get("default", ...) is None and not _allows_null(result):
            del result["default"]
        return result


def _allows_null(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") == "null":
        return True
    return any(_allows_null(option) for option in schema.get("anyOf", ()))


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = []
    for operation in OPERATIONS.values():
        if operation.body is not None:
            models.append(operation.body)
        for answer in (operation.ok, *operation.errors.values()):
            models.extend(answer.models)
    models.append(ErrorOut)
    unique = list(dict.fromkeys(models))
    _, definitions = models_json_schema(
        [(model, "validation" if model in _requests() else "serialization") for model in unique],
        ref_template=REF,
        schema_generator=_Schemas,
    )
    return dict(sorted(definitions.get("$defs", {}).items()))


def _requests() -> set[type[BaseModel]]:
    return {operation.body for operation in OPERATIONS.values() if operation.body is not None}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _content(answer: Answer) -> dict[str, Any]:
    if answer.schema is not None:
        schema: dict[str, Any] = dict(answer.schema)
    elif len(answer.models) == 1:
        schema = _ref(answer.models[0])
    else:
        schema = {"anyOf": [_ref(model) for model in answer.models]}
    content: dict[str, Any] = {"schema": schema}
    if answer.example is not None:
        content["example"] = answer.example
    return {media: content for media in answer.media}


def _parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    schema = {"type": "string", "pattern": ID_PATTERN.pattern, "maxLength": 128}
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": ID_PARAMS[name],
            "schema": {"type": "string", "enum": list(SWAGGER_ASSETS)} if name == "asset" else schema,
        }
        for name in names
    ]


def _operation(method: str, path: str, operation: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": operation.ok.description}
    if operation.ok.media:
        ok["content"] = _content(operation.ok)
    responses: dict[str, Any] = {str(operation.ok_status): ok}
    errors = dict(operation.errors)
    errors.setdefault(415, UNSUPPORTED)
    if operation.aws:
        errors.setdefault(503, AWS_BUSY)
    for status in sorted(errors):
        answer = errors[status]
        responses[str(status)] = {"description": answer.description, "content": _content(answer)}
    responses.update(GATEWAY)
    document: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    if operation.description:
        document["description"] = operation.description
    parameters = _parameters(path)
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        document["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(operation.body)}}}
    document["responses"] = dict(sorted(responses.items()))
    return document


def _operation_id(method: str, path: str) -> str:
    words = [part.strip("{}").replace("-", "_").replace(".", "_") for part in path.split("/") if part]
    return "_".join([method.lower(), *words]) if words else method.lower()


class RoutesDriftError(Exception):
    """The app's routes and OPERATIONS disagree: the document would lie."""


def check_routes(routes: Iterable[tuple[str, str]]) -> None:
    have = set(routes)
    documented = set(OPERATIONS)
    if have != documented:
        raise RoutesDriftError(
            f"routes without an operation in chalicelib/api/openapi.py: {sorted(have - documented)}; "
            f"operations without a route in app.py: {sorted(documented - have)}"
        )


def build_document(routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The whole document for the app whose (method, path) pairs are `routes`."""
    check_routes(routes)
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in sorted(OPERATIONS.items(), key=lambda item: (item[0][1], item[0][0])):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "esdeploy", "version": VERSION, "description": DESCRIPTION},
        "tags": [
            {"name": "deploy", "description": "Deploy tasks: submit, read, cancel, promote"},
            {"name": "delete", "description": "Deletion tasks: submit, read"},
            {"name": "models", "description": "What is live: aliases, rollback, invoke"},
            {"name": "service", "description": "Health and this documentation"},
        ],
        "paths": paths,
        "components": {"schemas": _schemas(), "responses": GATEWAY_RESPONSES},
    }


_cached: dict[str, Any] | None = None


def openapi_document(routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`build_document`, once per process (a warm Lambda answers from memory)."""
    global _cached
    if _cached is None:
        _cached = build_document(routes)
    return _cached
