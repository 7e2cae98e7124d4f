"""Adapters: the JSON of the work-queue messages, and one reader per queue.

Every message type has one parser here (SageMaker's event has its own in sagemaker_shapes,
CloudWatch's in cloudwatch_shapes). A
body none of them understands is an UnreadableMessageError: the batch handler logs it and
acknowledges it, because no retry can make it readable.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.adapters.cloudwatch_shapes import is_alarm_state_change, read_alarm_state_change
from chalicelib.adapters.sagemaker_shapes import is_endpoint_state_change, read_endpoint_state_change
from chalicelib.domain.commands import PromoteDeploy, SubmitDeploy
from chalicelib.domain.errors import UnreadableMessageError
from chalicelib.domain.messages import (
    Advance,
    AlarmChanged,
    DeadLetter,
    DeleteModel,
    Delivery,
    DeployTasksMessage,
    EndpointChanged,
    IntakeRequest,
    TeardownTasksMessage,
    TeardownVariant,
    WorkMessage,
)
from chalicelib.domain.models import iso, parse_iso

ADVANCE = "advance"
DELETE_MODEL = "delete_model"
TEARDOWN_VARIANT = "teardown_variant"


def to_body(message: WorkMessage) -> dict[str, Any]:
    """The JSON object a message travels as (the console shows it as is)."""
    body: dict[str, Any]
    if isinstance(message, Advance):
        body = {"action": ADVANCE, "task_id": message.task_id, "version": message.version}
    elif isinstance(message, DeleteModel):
        body = {
            "action": DELETE_MODEL,
            "task_id": message.task_id,
            "embedding_model_id": message.embedding_model_id,
        }
    elif isinstance(message, IntakeRequest):
        body = intake_body(message)
    else:
        body = {
            "action": TEARDOWN_VARIANT,
            "embedding_model_id": message.embedding_model_id,
            "variant": message.variant,
            "reason": message.reason,
        }
        if message.not_before is not None:
            body["not_before"] = iso(message.not_before)
        if message.task_id is not None:
            body["task_id"] = message.task_id
    if message.attempt:
        body["attempt"] = message.attempt
    return body


def intake_body(request: IntakeRequest) -> dict[str, Any]:
    """The automation's own format (docs/api.md), so that a request waiting for its model reads
    like the one that was sent; `deadline` says until when it waits. api/intake.py reads it."""
    command = request.command
    if isinstance(command, PromoteDeploy):
        return {"action": "promote", "task_id": command.task_id}
    body: dict[str, Any] = {"embedding_model_id": command.embedding_model_id}
    if isinstance(command, SubmitDeploy):
        body["action"] = "deploy"
        if command.config.given():
            body["config"] = command.config.given()
    else:
        body["action"] = "delete"
        if command.reason is not None:
            body["reason"] = command.reason
    if command.client_task_id is not None:
        body["id"] = command.client_task_id
    if request.deadline is not None:
        body["deadline"] = iso(request.deadline)
    return body


def delivery_of(record: Mapping[str, Any]) -> Delivery:
    """Which delivery a Lambda SQS record is: its MessageId and ApproximateReceiveCount (1 when missing)."""
    count = str((record.get("attributes") or {}).get("ApproximateReceiveCount") or "1")
    return Delivery(str(record.get("messageId") or ""), int(count) if count.isdigit() else 1)


def read_deploy_tasks(text: str) -> DeployTasksMessage:
    message = read_dead_letter(text)
    if isinstance(message, Advance | EndpointChanged | AlarmChanged):
        return message
    raise _misplaced(message, "deploy-tasks")


def read_teardown_tasks(text: str) -> TeardownTasksMessage:
    message = read_dead_letter(text)
    if isinstance(message, TeardownVariant | DeleteModel):
        return message
    raise _misplaced(message, "teardown-tasks")


def read_dead_letter(text: str) -> DeadLetter:
    """Any message of ours or SageMaker's: a dead-letter queue holds whatever its queue held."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise UnreadableMessageError(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise UnreadableMessageError(f"a JSON {type(body).__name__}, not an object")
    try:
        return _parse(body)
    except (KeyError, TypeError, ValueError) as exc:
        kind = body.get("action") or body.get("detail-type")
        raise UnreadableMessageError(f"{kind!r} message: {exc}") from exc


def _misplaced(message: DeadLetter, queue: str) -> UnreadableMessageError:
    return UnreadableMessageError(f"a {type(message).__name__} message does not belong on {queue}")


def _parse(body: Mapping[str, Any]) -> DeadLetter:
    if is_endpoint_state_change(body):
        changed = read_endpoint_state_change(body)
        if changed is None:
            raise ValueError(
                "the event has no endpoint name or status, or its Tags are neither a map nor a list of {key, value}"
            )
        return changed
    if is_alarm_state_change(body):
        alarm = read_alarm_state_change(body)
        if alarm is None:
            raise ValueError(
                "the event has no detail.alarmName, or no detail.state.value of OK, ALARM or INSUFFICIENT_DATA"
            )
        return alarm
    parser = _PARSERS.get(body.get("action"))  # type: ignore[arg-type]
    if parser is None:
        raise ValueError(f"no such action; expected one of {', '.join(sorted(_PARSERS))}")
    return parser(body)


def _advance(body: Mapping[str, Any]) -> Advance:
    # A message without a version was sent, before every Advance carried one, at first dispatch.
    return Advance(
        task_id=_text(body, "task_id"), version=_count(body, "version", default=1), attempt=_count(body, "attempt")
    )


def _delete_model(body: Mapping[str, Any]) -> DeleteModel:
    return DeleteModel(
        task_id=_text(body, "task_id"),
        embedding_model_id=_text(body, "embedding_model_id"),
        attempt=_count(body, "attempt"),
    )


def _teardown_variant(body: Mapping[str, Any]) -> TeardownVariant:
    not_before = body.get("not_before")
    return TeardownVariant(
        # The sweeper hands over leftovers whose tags name no model.
        embedding_model_id=str(body.get("embedding_model_id") or ""),
        variant=_text(body, "variant"),
        reason=str(body.get("reason") or ""),
        not_before=parse_iso(not_before) if not_before else None,
        task_id=_text(body, "task_id") if body.get("task_id") is not None else None,
        attempt=_count(body, "attempt"),
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any]], DeadLetter]] = {
    ADVANCE: _advance,
    DELETE_MODEL: _delete_model,
    TEARDOWN_VARIANT: _teardown_variant,
}


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{key}` must be a non-empty string")
    return value


def _count(body: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{key}` must be a whole number")
    return value
