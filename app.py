"""Handlers: HTTP routes and SQS entry points. Parse, call one service, serialise; no boto3 here."""
from __future__ import annotations

import os
import time
from typing import Any

from chalice import Chalice, IAMAuthorizer, Response
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib import wiring
from chalicelib.api.docs import AssetNotFoundError, docs_asset, docs_page
from chalicelib.api.errors import error_answer
from chalicelib.api.http import answer, in_our_error_shape
from chalicelib.api.intake import read_intake
from chalicelib.api.responses import alias_body, invoke_body, model_body, models_body, task_body
from chalicelib.api.schemas import parse_delete, parse_deploy, parse_invoke_request, parse_json_body
from chalicelib.batch import process_sqs_batch
from chalicelib.config import dead_letter_name, dead_letter_queue_name, handler_queue_name
from chalicelib.domain.messages import DeadLetter, TeardownVariant
from chalicelib.domain.models import TaskKind
from chalicelib.logs import logger
from chalicelib.metrics import count_abandoned_teardown
from chalicelib.services.dead_letters import DeadLetterOutcome, DeadLetterService
from chalicelib.services.deploy_worker import DeployWorker
from chalicelib.services.models import ModelActions, ModelReads
from chalicelib.services.sweeper import Sweeper
from chalicelib.services.tasks import TaskService
from chalicelib.services.teardown_worker import TeardownWorker
from chalicelib.version import VERSION

app = Chalice(app_name="esdeploy")
# Every deployed stage needs a SigV4-signed caller on every route (infra/finalize.py refuses a
# package with an open route). Only the local stack, which chalice serves on loopback and whose
# gateway admits every caller anyway, says ESDEPLOY_API_AUTH=none (the `local` stage).
auth = None if os.environ.get("ESDEPLOY_API_AUTH") == "none" else IAMAuthorizer()
app.log.setLevel("INFO")


@app.middleware("all")
def fresh_log_keys(event: Any, get_response: Any) -> Any:
    """Each invocation's keys on its own lines only: a warm Lambda reuses the logger, and the local
    stack runs invocations side by side in threads (HTTP requests, queue pollers). Powertools'
    thread-safe keys live in a context variable, one per thread; `append_keys` would be global."""
    logger.thread_safe_clear_keys()
    # An HTTP request's `context` is API Gateway's request context; Lambda's is its `lambda_context`.
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    if context is not None and not isinstance(context, dict):
        logger.thread_safe_append_keys(request_id=getattr(context, "aws_request_id", None))
    try:
        return get_response(event)
    finally:
        logger.thread_safe_clear_keys()  # a line the thread logs after this invocation is not of it


@app.middleware("http")
def log_request(event: Any, get_response: Any) -> Any:
    """One JSON line per HTTP request, with the task and model it concerned, for Logs Insights."""
    started = time.perf_counter()
    response = get_response(event)
    body = response.body if isinstance(response.body, dict) else {}
    logger.info(
        "http request",
        extra={
            "http_method": event.method,
            "route": event.path,
            "path_params": event.uri_params or {},
            "status_code": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "task_id": body.get("task_id") or body.get("active_task_id"),
            "embedding_model_id": body.get("embedding_model_id") or (event.uri_params or {}).get("embedding_model_id"),
        },
    )
    return response


@app.middleware("http")
def error_shape(event: Any, get_response: Any) -> Any:
    """Chalice's own 415 and 405 answers get our `{"detail": ...}` shape, like every other error."""
    return in_our_error_shape(get_response(event))


def _body() -> dict[str, Any]:
    request = app.current_request
    assert request is not None  # Chalice sets it for every route call
    logger.thread_safe_append_keys(request_path=request.path, http_method=request.method)
    return parse_json_body(request.raw_body, wiring.adapters().settings.max_body_bytes)


@app.route("/health", methods=["GET"], authorizer=auth)
def health() -> dict[str, str]:
    return {"status": "ok", "service": "esdeploy", "version": VERSION}


@app.route("/docs", methods=["GET"], authorizer=auth)
def docs() -> Response:
    """Where Embedding Studio users look first: Swagger UI over /openapi.json."""
    request = app.current_request
    at_path = str(request.context.get("path") or "/docs") if request is not None else "/docs"
    return Response(body=docs_page(at_path), status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})


@app.route("/favicon.ico", methods=["GET"], authorizer=auth)
def favicon() -> Response:
    """A browser asks for it by itself: no icon, and no error in its console."""
    return Response(body="", status_code=204, headers={"Cache-Control": "public, max-age=86400"})


@app.route("/docs/{asset}", methods=["GET"], authorizer=auth)
def docs_files(asset: str) -> Response:
    try:
        content_type, text = docs_asset(asset)
    except AssetNotFoundError as missing:
        status, body = error_answer(missing)
        return Response(body=body, status_code=status)
    return Response(body=text, status_code=200,
                    headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"})


@app.route("/openapi.json", methods=["GET"], authorizer=auth)
def openapi() -> Response:
    """The contract, generated from the request and answer models on the first call (not at import)."""
    from chalicelib.api.openapi import openapi_document

    return answer(lambda: openapi_document(route_keys()))


def route_keys() -> list[tuple[str, str]]:
    """(method, path) of every route: what the OpenAPI document must describe, no more, no less."""
    return [(method, path) for path, methods in app.routes.items() for method in methods]


@app.route("/deploy", methods=["POST"], authorizer=auth)
def deploy() -> Response:
    def run() -> dict[str, Any]:
        task = wiring.service(TaskService).submit(parse_deploy(_body()))
        return task_body(task)

    return answer(run)


@app.route("/deploy/{task_id}", methods=["GET"], authorizer=auth)
def get_deploy_task(task_id: str) -> Response:
    return answer(lambda: task_body(wiring.service(TaskService).get(TaskKind.DEPLOY, task_id)))


@app.route("/deploy-status/{embedding_model_id}", methods=["GET"], authorizer=auth)
def get_model_deploy_status(embedding_model_id: str) -> Response:
    return answer(
        lambda: task_body(wiring.service(TaskService).newest(TaskKind.DEPLOY, embedding_model_id))
    )


@app.route("/delete", methods=["POST"], authorizer=auth)
def delete() -> Response:
    def run() -> dict[str, Any]:
        task = wiring.service(TaskService).submit(parse_delete(_body()))
        return task_body(task)

    return answer(run)


@app.route("/delete/{task_id}", methods=["GET"], authorizer=auth)
def get_delete_task(task_id: str) -> Response:
    return answer(lambda: task_body(wiring.service(TaskService).get(TaskKind.DELETE, task_id)))


@app.route("/delete-status/{embedding_model_id}", methods=["GET"], authorizer=auth)
def get_model_delete_status(embedding_model_id: str) -> Response:
    return answer(
        lambda: task_body(wiring.service(TaskService).newest(TaskKind.DELETE, embedding_model_id))
    )


@app.on_sqs_message(queue=handler_queue_name("requests"), batch_size=10)
def requests_worker(event: SQSEvent) -> dict[str, Any]:
    """Automation intake: `{"action": "deploy"|"delete"|"promote", ...}` through the same service; a request
    for a busy model waits on this queue (TaskService.take)."""
    return process_sqs_batch(
        "requests_worker", event.to_dict(), read_intake,
        lambda request, _record: wiring.service(TaskService).take(request),
    )


@app.route("/deploy/{task_id}/cancel", methods=["POST"], authorizer=auth)
def cancel_deploy(task_id: str) -> Response:
    """Discards a deploy that has not swapped: its green (a candidate awaiting promotion too) is torn down."""
    return answer(lambda: task_body(wiring.service(TaskService).cancel(task_id)))


@app.route("/deploy/{task_id}/promote", methods=["POST"], authorizer=auth)
def promote_deploy(task_id: str) -> Response:
    """Makes the candidate of a deploy awaiting promotion (config.promotion "manual") live."""
    return answer(lambda: task_body(wiring.service(TaskService).promote(task_id)))


@app.route("/models", methods=["GET"], authorizer=auth)
def list_models() -> Response:
    return answer(lambda: models_body([(view.alias, view.candidate) for view in wiring.service(ModelReads).listing()]))


@app.route("/models/{embedding_model_id}", methods=["GET"], authorizer=auth)
def get_model(embedding_model_id: str) -> Response:
    def run() -> dict[str, Any]:
        view = wiring.service(ModelReads).model(embedding_model_id)
        return model_body(view.alias, view.candidate)

    return answer(run)


@app.route("/models/{embedding_model_id}/invoke", methods=["POST"], authorizer=auth)
def invoke_model(embedding_model_id: str) -> Response:
    """Embeds texts with the model's live variant: `{"inputs": [...]}` as the endpoint takes it;
    `"target": "candidate"` embeds with the candidate awaiting promotion instead."""

    def run() -> dict[str, Any]:
        candidate, payload = parse_invoke_request(_body())
        return invoke_body(wiring.service(ModelActions).invoke(embedding_model_id, payload, candidate=candidate))

    return answer(run)


@app.route(
    "/models/{embedding_model_id}/rollback",
    methods=["POST"],
    authorizer=auth,
    content_types=["application/json", "text/plain"],
)
def rollback_model(embedding_model_id: str) -> Response:
    return answer(lambda: alias_body(wiring.service(ModelActions).rollback(embedding_model_id)))


@app.on_sqs_message(queue=handler_queue_name("deploy"), batch_size=1)
def deploy_worker(event: SQSEvent) -> dict[str, Any]:
    """Advances one deploy task by one step (or wakes it on an endpoint state change)."""
    messages = wiring.adapters().messages
    return process_sqs_batch(
        "deploy_worker", event.to_dict(), messages.read_deploy_tasks,
        lambda message, record: wiring.service(DeployWorker).handle(message, messages.delivery_of(record)),
    )


@app.on_sqs_message(queue=handler_queue_name("teardown"), batch_size=1)
def teardown_worker(event: SQSEvent) -> dict[str, Any]:
    """Tears down one variant, or runs one delete task."""
    return process_sqs_batch(
        "teardown_worker", event.to_dict(), wiring.adapters().messages.read_teardown_tasks,
        lambda message, _record: wiring.service(TeardownWorker).handle(message),
    )


def _dead_letter(kind: str) -> Any:
    def handle(message: DeadLetter, record: dict[str, Any]) -> None:
        settings = wiring.adapters().settings
        source = settings.deploy_queue if kind == "deploy" else settings.teardown_queue
        count = record.get("attributes", {}).get("ApproximateReceiveCount")
        outcome = wiring.service(DeadLetterService).handle(message, dead_letter_name(source), count)
        if outcome is DeadLetterOutcome.TEARDOWN_ABANDONED and isinstance(message, TeardownVariant):
            count_abandoned_teardown(message.variant)

    return handle


@app.on_sqs_message(queue=dead_letter_queue_name("deploy"), batch_size=1)
def deploy_dead_letters(event: SQSEvent) -> dict[str, Any]:
    """A deploy-tasks message SQS gave up on: its task ends failed, its green is torn down."""
    return process_sqs_batch(
        "deploy_dead_letters", event.to_dict(), wiring.adapters().messages.read_dead_letter, _dead_letter("deploy")
    )


@app.on_sqs_message(queue=dead_letter_queue_name("teardown"), batch_size=1)
def teardown_dead_letters(event: SQSEvent) -> dict[str, Any]:
    """A teardown-tasks message SQS gave up on: a delete task ends failed; a variant is logged loudly."""
    return process_sqs_batch(
        "teardown_dead_letters", event.to_dict(), wiring.adapters().messages.read_dead_letter, _dead_letter("teardown")
    )


@app.schedule("rate(10 minutes)")
def sweeper(event: CloudWatchEvent) -> dict[str, Any]:
    """Safety net: re-kick stalled tasks, hand orphaned variants to teardown."""
    report = wiring.service(Sweeper).sweep()
    return {"rekicked": report.rekicked, "orphans": report.orphans}
