"""Adapters: the DynamoDB task store (plain, console-readable attributes; optimistic locking)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib.adapters.aws_errors import AwsCalls, condition_failed
from chalicelib.adapters.dynamodb_items import ItemFields, reported
from chalicelib.domain.errors import ConcurrentUpdateError, TaskAlreadyExistsError
from chalicelib.domain.models import (
    Stage,
    Task,
    TaskEvent,
    TaskKind,
    TaskStatus,
    iso,
)

BY_MODEL_INDEX = "by-model"
TASK_KEY = "task_id"
# The table's TTL attribute (infra/template.yaml's TimeToLiveSpecification; the embedded AWS is made from it).
EXPIRES_AT = "expires_at"
_dynamodb = AwsCalls("DynamoDB")


def model_kind_key(kind: TaskKind, embedding_model_id: str) -> str:
    """The GSI partition key: one partition per (kind, model), sorted by created_at."""
    return f"{kind.value}#{embedding_model_id}"


def newest_pointer_key(kind: TaskKind, embedding_model_id: str) -> str:
    """The key of the item that names the newest task of a (kind, model). '#' is in no task id,
    and the item has no `model_kind`, so it is neither a task nor in the index."""
    return f"newest#{model_kind_key(kind, embedding_model_id)}"


def task_to_item(task: Task) -> dict[str, Any]:
    item: dict[str, Any] = {
        "task_id": task.task_id,
        "kind": task.kind.value,
        "embedding_model_id": task.embedding_model_id,
        "model_kind": model_kind_key(task.kind, task.embedding_model_id),
        "status": task.status.value,
        "stage": task.stage.value,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "request_hash": task.request_hash,
        "config": task.config,
        "source": task.source,
        "version": task.version,
        "polls": task.polls,
        "cancel_requested": task.cancel_requested,
        "promote_requested": task.promote_requested,
        "events": [_event_to_item(e) for e in task.events],
    }
    optional = {
        "reason": task.reason,
        "detail": task.detail,
        "variant": task.variant,
        "deadline_at": iso(task.deadline_at) if task.deadline_at else None,
        "live_at": iso(task.live_at) if task.live_at else None,
        "rollback_detail": task.rollback_detail,
        "rekicked_at": iso(task.rekicked_at) if task.rekicked_at else None,
        # DynamoDB's TTL wants a Number in epoch seconds.
        EXPIRES_AT: int(task.expires_at.timestamp()) if task.expires_at else None,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item


def _event_to_item(event: TaskEvent) -> dict[str, Any]:
    item = {"at": iso(event.at), "stage": event.stage.value, "status": event.status.value}
    if event.detail is not None:
        item["detail"] = event.detail
    return item


def _plain(value: Any) -> Any:
    """DynamoDB hands numbers back as Decimal; turn them into int/float again."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def item_to_task(item: dict[str, Any], table: str = "tasks") -> Task:
    """The task an item holds; UnreadableItemError (naming `table`, the key and the fault) if it cannot be read."""
    fields = ItemFields(_plain(item), table, TASK_KEY)
    expires_at = fields.optional_integer(EXPIRES_AT)
    return Task(
        task_id=fields.text(TASK_KEY),
        kind=fields.choice("kind", TaskKind),
        embedding_model_id=fields.text("embedding_model_id"),
        status=fields.choice("status", TaskStatus),
        stage=fields.choice("stage", Stage),
        created_at=fields.time("created_at"),
        updated_at=fields.time("updated_at"),
        request_hash=fields.text("request_hash"),
        config=dict(fields.mapping("config")),
        reason=fields.optional_text("reason"),
        detail=fields.optional_text("detail"),
        events=[_event_of(fields, index, event) for index, event in enumerate(fields.listing("events"))],
        source=fields.optional_text("source") or "http",
        version=fields.integer("version"),
        variant=fields.optional_text("variant"),
        polls=fields.integer("polls", default=0),
        deadline_at=fields.optional_time("deadline_at"),
        live_at=fields.optional_time("live_at"),
        rollback_detail=fields.optional_text("rollback_detail"),
        cancel_requested=bool(fields.item.get("cancel_requested", False)),
        promote_requested=bool(fields.item.get("promote_requested", False)),
        rekicked_at=fields.optional_time("rekicked_at"),
        expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None,
    )


def _event_of(task: ItemFields, index: int, event: Any) -> TaskEvent:
    if not isinstance(event, dict):
        raise task.fault(f"events[{index}] is not a map")
    fields = ItemFields({**event, TASK_KEY: task.key}, task.table, TASK_KEY, within=f"events[{index}].")
    return TaskEvent(
        at=fields.time("at"),
        stage=fields.choice("stage", Stage),
        status=fields.choice("status", TaskStatus),
        detail=fields.optional_text("detail"),
    )


class DynamoTaskStore:
    """Task by id = GetItem. Newest by model: the `by-model` index answers it in one Query, but a
    GSI read is eventually consistent and may miss a task stored a moment ago, so each create
    also records the task on a pointer item read with GetItem; the newer of the two wins, and is
    read again by id, consistently. A task written in a final status gets `expires_at` (its end +
    `retention`), after which DynamoDB deletes it."""

    def __init__(self, table: Any, retention: timedelta | None = None) -> None:
        self._table = table
        self._retention = retention

    def create(self, task: Task) -> Task:
        stored = task.copy()
        stored.version = 1
        stored.expires_at = stored.expiry(self._retention)
        written = _dynamodb(
            "store the task",
            lambda: self._table.put_item(
                Item=task_to_item(stored), ConditionExpression="attribute_not_exists(task_id)"
            ),
            tolerate=condition_failed,
        )
        if written is None:
            raise TaskAlreadyExistsError(task.task_id)
        self._point_to(stored)
        return stored

    def _point_to(self, task: Task) -> None:
        # Tasks of one model are created one at a time (the model's lease); the condition keeps
        # the newest by created_at anyway, as the index orders them.
        _dynamodb(
            "record the newest task of the model",
            lambda: self._table.update_item(
                Key={"task_id": newest_pointer_key(task.kind, task.embedding_model_id)},
                UpdateExpression="SET newest_task_id = :id, newest_created_at = :at",
                ConditionExpression="attribute_not_exists(newest_created_at) OR newest_created_at <= :at",
                ExpressionAttributeValues={":id": task.task_id, ":at": iso(task.created_at)},
            ),
            tolerate=condition_failed,
        )

    def get(self, task_id: str) -> Task | None:
        answer = _dynamodb("read the task", lambda: self._table.get_item(Key={"task_id": task_id}, ConsistentRead=True))
        item = answer.get("Item")
        return reported(lambda: item_to_task(item, self._table.name)) if item and "kind" in item else None

    def newest_for_model(self, embedding_model_id: str, kind: TaskKind) -> Task | None:
        pointer = _dynamodb(
            "read the newest task of the model",
            lambda: self._table.get_item(
                Key={"task_id": newest_pointer_key(kind, embedding_model_id)}, ConsistentRead=True
            ),
        ).get("Item")
        indexed = _dynamodb(
            "query the tasks of a model",
            lambda: self._table.query(
                IndexName=BY_MODEL_INDEX,
                KeyConditionExpression=Key("model_kind").eq(model_kind_key(kind, embedding_model_id)),
                ScanIndexForward=False,
                Limit=1,
                ProjectionExpression="task_id, created_at",
            ),
        ).get("Items", [])
        candidates = [(str(item["created_at"]), str(item["task_id"])) for item in indexed]
        if pointer:
            candidates.append((str(pointer["newest_created_at"]), str(pointer["newest_task_id"])))
        if not candidates:
            return None
        # What the index holds may be an older version of the task: read it again by id.
        task = self.get(max(candidates)[1])
        return task if task is not None and task.embedding_model_id == embedding_model_id else None

    def note_rekick(self, task: Task, at: datetime) -> bool:
        written = _dynamodb(
            "record the sweeper's re-kick",
            lambda: self._table.update_item(
                Key={"task_id": task.task_id},
                UpdateExpression="SET rekicked_at = :at",
                ConditionExpression="#v = :read",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":at": iso(at), ":read": task.version},
            ),
            tolerate=condition_failed,
        )
        return written is not None

    def update(self, task: Task) -> Task:
        stored = task.copy()
        stored.version = task.version + 1
        stored.expires_at = stored.expiry(self._retention)
        written = _dynamodb(
            "update the task",
            lambda: self._table.put_item(
                Item=task_to_item(stored),
                ConditionExpression="attribute_exists(task_id) AND #v = :read",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":read": task.version},
            ),
            tolerate=condition_failed,
        )
        if written is None:
            raise ConcurrentUpdateError(f"task {task.task_id} changed since version {task.version} was read")
        return stored
