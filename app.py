"""Handlers: HTTP routes and SQS entry points. Parse, call one service, serialise; no boto3 here."""
from __future__ import annotations

from typing import Any

from chalice import Chalice, Response
from chalice.app import SQSEvent

from chalicelib import wiring
from chalicelib.api.http import answer
from chalicelib.api.responses import task_body
from chalicelib.api.schemas import parse_delete, parse_deploy, parse_json_body
from chalicelib.config import handler_queue_name
from chalicelib.domain.models import TaskKind
from chalicelib.logs import logger
from chalicelib.services.intake import handle_intake_message
from chalicelib.sqs_batch import process_batch

app = Chalice(app_name="esdeploy")
app.log.setLevel("INFO")


def _body() -> dict[str, Any]:
    request = app.current_request
    assert request is not None  # Chalice sets it for every route call
    logger.append_keys(request_path=request.path, http_method=request.method)
    return parse_json_body(request.raw_body, wiring.container().settings.max_body_bytes)


@app.route("/health", methods=["GET"])
def health() -> dict[str, str]:
    return {"status": "ok", "service": "esdeploy"}


@app.route("/deploy", methods=["POST"])
def deploy() -> Response:
    def run() -> dict[str, Any]:
        task = wiring.container().tasks.submit_deploy(parse_deploy(_body()))
        return task_body(task)

    return answer(run)


@app.route("/deploy/{task_id}", methods=["GET"])
def get_deploy_task(task_id: str) -> Response:
    return answer(lambda: task_body(wiring.container().tasks.get(TaskKind.DEPLOY, task_id)))


@app.route("/deploy-status/{embedding_model_id}", methods=["GET"])
def get_model_deploy_status(embedding_model_id: str) -> Response:
    return answer(
        lambda: task_body(wiring.container().tasks.newest(TaskKind.DEPLOY, embedding_model_id))
    )


@app.route("/delete", methods=["POST"])
def delete() -> Response:
    def run() -> dict[str, Any]:
        task = wiring.container().tasks.submit_delete(parse_delete(_body()))
        return task_body(task)

    return answer(run)


@app.route("/delete/{task_id}", methods=["GET"])
def get_delete_task(task_id: str) -> Response:
    return answer(lambda: task_body(wiring.container().tasks.get(TaskKind.DELETE, task_id)))


@app.route("/delete-status/{embedding_model_id}", methods=["GET"])
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
