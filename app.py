"""Handlers: HTTP routes and SQS entry points. Parse, call one service, serialise; no boto3 here."""
from __future__ import annotations

import os
import time
from typing import Any

from chalice import Chalice, IAMAuthorizer, Response
from chalice.app import CloudWatchEvent, SQSEvent

from chalicelib import wiring
from chalicelib.api.http import answer
from chalicelib.api.responses import alias_body, task_body
from chalicelib.api.schemas import parse_delete, parse_deploy, parse_json_body
from chalicelib.config import dead_letter_name, dead_letter_queue_name, handler_queue_name
from chalicelib.domain.models import TaskKind
from chalicelib.logs import logger
from chalicelib.services.intake import handle_intake_message
from chalicelib.sqs_batch import process_batch

app = Chalice(app_name="esdeploy")
# Every deployed stage needs a SigV4-signed caller on every route (infra/finalize.py refuses a
# package with an open route). Only the local stack, which chalice serves on loopback and whose
# gateway admits every caller anyway, may say ESDEPLOY_API_AUTH=none.
auth = None if os.environ.get("ESDEPLOY_API_AUTH") == "none" else IAMAuthorizer()
app.log.setLevel("INFO")


@app.middleware("all")
def fresh_log_keys(event: Any, get_response: Any) -> Any:
    """A warm Lambda reuses the logger: keys of the previous invocation must not leak into this one."""
    logger.clear_state()
    context = getattr(event, "context", None)
    if context is not None:
        logger.append_keys(request_id=getattr(context, "aws_request_id", None))
    return get_response(event)


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


def _body() -> dict[str, Any]:
    request = app.current_request
    assert request is not None  # Chalice sets it for every route call
    logger.append_keys(request_path=request.path, http_method=request.method)
    return parse_json_body(request.raw_body, wiring.container().settings.max_body_bytes)


@app.route("/health", methods=["GET"], authorizer=auth)
def health() -> dict[str, str]:
    return {"status": "ok", "service": "esdeploy"}


@app.route("/deploy", methods=["POST"], authorizer=auth)
def deploy() -> Response:
    def run() -> dict[str, Any]:
        task = wiring.container().tasks.submit_deploy(parse_deploy(_body()))
        return task_body(task)

    return answer(run)


@app.route("/deploy/{task_id}", methods=["GET"], authorizer=auth)
def get_deploy_task(task_id: str) -> Response:
    return answer(lambda: task_body(wiring.container().tasks.get(TaskKind.DEPLOY, task_id)))


@app.route("/deploy-status/{embedding_model_id}", methods=["GET"], authorizer=auth)
def get_model_deploy_status(embedding_model_id: str) -> Response:
    return answer(
        lambda: task_body(wiring.container().tasks.newest(TaskKind.DEPLOY, embedding_model_id))
    )


@app.route("/delete", methods=["POST"], authorizer=auth)
def delete() -> Response:
    def run() -> dict[str, Any]:
        task = wiring.container().tasks.submit_delete(parse_delete(_body()))
        return task_body(task)

    return answer(run)


@app.route("/delete/{task_id}", methods=["GET"], authorizer=auth)
def get_delete_task(task_id: str) -> Response:
    return answer(lambda: task_body(wiring.container().tasks.get(TaskKind.DELETE, task_id)))


@app.route("/delete-status/{embedding_model_id}", methods=["GET"], authorizer=auth)
def get_model_delete_status(embedding_model_id: str) -> Response:
    return answer(
        lambda: task_body(wiring.container().tasks.newest(TaskKind.DELETE, embedding_model_id))
    )


@app.on_sqs_message(queue=handler_queue_name("requests"), batch_size=10)
def requests_worker(event: SQSEvent) -> dict[str, Any]:
    """Automation intake: `{"action": "deploy"|"delete", ...}` through the same service."""
    return process_batch(
        event, lambda body, _record: handle_intake_message(wiring.container().tasks, body)
    )


@app.route("/deploy/{task_id}/cancel", methods=["POST"], authorizer=auth)
def cancel_deploy(task_id: str) -> Response:
    return answer(lambda: task_body(wiring.container().models.cancel(task_id)))


@app.route("/models", methods=["GET"], authorizer=auth)
def list_models() -> Response:
    return answer(lambda: {"models": [alias_body(a) for a in wiring.container().models.live()]})


@app.route("/models/{embedding_model_id}", methods=["GET"], authorizer=auth)
def get_model(embedding_model_id: str) -> Response:
    return answer(lambda: alias_body(wiring.container().models.alias(embedding_model_id)))


@app.route("/models/{embedding_model_id}/invoke", methods=["POST"], authorizer=auth)
def invoke_model(embedding_model_id: str) -> Response:
    """Embeds texts with the model's live variant: `{"inputs": [...]}` as the endpoint takes it."""
    return answer(lambda: wiring.container().models.invoke(embedding_model_id, _body()))


@app.route(
    "/models/{embedding_model_id}/rollback",
    methods=["POST"],
    authorizer=auth,
    content_types=["application/json", "text/plain"],
)
def rollback_model(embedding_model_id: str) -> Response:
    return answer(lambda: alias_body(wiring.container().models.rollback(embedding_model_id)))


@app.on_sqs_message(queue=handler_queue_name("deploy"), batch_size=1)
def deploy_worker(event: SQSEvent) -> dict[str, Any]:
    """Advances one deploy task by one step (or wakes it on an endpoint state change)."""
    return process_batch(event, lambda body, _record: wiring.container().deployer.handle(body))


@app.on_sqs_message(queue=handler_queue_name("teardown"), batch_size=1)
def teardown_worker(event: SQSEvent) -> dict[str, Any]:
    """Tears down one variant, or runs one delete task."""
    return process_batch(event, lambda body, _record: wiring.container().remover.handle(body))


def _dead_letter(kind: str) -> Any:
    def handle(body: dict[str, Any], record: dict[str, Any]) -> None:
        container = wiring.container()
        source = container.settings.deploy_queue if kind == "deploy" else container.settings.teardown_queue
        count = record.get("attributes", {}).get("ApproximateReceiveCount")
        container.dead_letters.handle(body, dead_letter_name(source), count)

    return handle


@app.on_sqs_message(queue=dead_letter_queue_name("deploy"), batch_size=1)
def deploy_dead_letters(event: SQSEvent) -> dict[str, Any]:
    """A deploy-tasks message SQS gave up on: its task ends failed, its green is torn down."""
    return process_batch(event, _dead_letter("deploy"))


@app.on_sqs_message(queue=dead_letter_queue_name("teardown"), batch_size=1)
def teardown_dead_letters(event: SQSEvent) -> dict[str, Any]:
    """A teardown-tasks message SQS gave up on: a delete task ends failed; a variant is logged loudly."""
    return process_batch(event, _dead_letter("teardown"))


@app.schedule("rate(10 minutes)")
def sweeper(event: CloudWatchEvent) -> dict[str, Any]:
    """Safety net: re-kick stalled tasks, hand orphaned variants to teardown."""
    report = wiring.container().sweeper.sweep()
    return {"rekicked": report.rekicked, "orphans": report.orphans}
