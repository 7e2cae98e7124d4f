"""Adapters: the DynamoDB task store (plain, console-readable attributes; optimistic locking)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from chalicelib.adapters.aws_errors import AwsCalls, condition_failed
from chalicelib.adapters.dynamodb_items import ItemFields, reported
from chalicelib.domain.errors import ConcurrentUpdateError, RetryableError, TaskAlreadyExistsError
from chalicelib.domain.models import (
    DeployConfig,
    ParityCheck,
    Promotion,
    RollbackAlarms,
    ScalingPolicy,
    Stage,
    Task,
    TaskEvent,
    TaskKind,
    TaskStatus,
    iso,
)
from chalicelib.domain.serving import Dtype, Serving

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
        "config": config_to_item(task.deploy) if task.deploy is not None else {},
        "source": task.source,
        "version": task.version,
        "polls": task.polls,
        "hops": task.hops,
        "cancel_requested": task.cancel_requested,
        "promote_requested": task.promote_requested,
        "events": [_event_to_item(e) for e in task.events],
    }
    optional = {
        "reason": task.reason,
        "detail": task.detail,
        "variant": task.variant,
        "deadline_at": iso(task.deadline_at) if task.deadline_at else None,
        "promote_by": iso(task.promote_by) if task.promote_by else None,
        "step_token": task.step_token,
        "next_at": iso(task.next_at) if task.next_at else None,
        "live_at": iso(task.live_at) if task.live_at else None,
        "rollback_detail": task.rollback_detail,
        "rekicked_at": iso(task.rekicked_at) if task.rekicked_at else None,
        # DynamoDB's TTL wants a Number in epoch seconds.
        EXPIRES_AT: int(task.expires_at.timestamp()) if task.expires_at else None,
    }
    item.update({k: v for k, v in optional.items() if v is not None})
    return item


def config_to_item(config: DeployConfig) -> dict[str, Any]:
    """A deploy's config as the task item's `config` map (the console shows it as the API does)."""
    alarms = config.alarms
    scaling = config.autoscaling
    item: dict[str, Any] = {
        "instance_type": config.instance_type,
        "initial_instance_count": config.initial_instance_count,
        "model_data_url": config.model_data_url,
        "content_hash": config.content_hash,
        "image_uri": config.image_uri,
        "bake_seconds": config.bake_seconds,
        "parity_check": config.parity_check.value,
        "promotion": config.promotion.value,
        "match_live_instance_count": config.match_live_instance_count,
        "autoscaling": None if scaling is None else {
            "min_instances": scaling.min_instances,
            "max_instances": scaling.max_instances,
            "target_invocations_per_instance": scaling.target_invocations_per_instance,
        },
        "promotion_timeout_seconds": config.promotion_timeout_seconds,
        "rollback_alarms": list(alarms.names) or None,
        "max_5xx_errors_per_minute": alarms.max_5xx_errors_per_minute,
        "max_model_latency_ms": alarms.max_model_latency_ms,
        "serving": config.serving.value,
        "dtype": config.dtype.value if config.dtype is not None else None,
        "dimension": config.dimension,
    }
    # Left out when unset, as items written before each of them existed.
    optional = ("promotion_timeout_seconds", "rollback_alarms", "max_5xx_errors_per_minute", "max_model_latency_ms",
                "dtype", "dimension")
    return {name: value for name, value in item.items() if value is not None or name not in optional}


def config_of(task: ItemFields) -> DeployConfig:
    """The `config` map of a deploy task's item; UnreadableItemError naming the field when it cannot be read."""
    config = ItemFields({**task.mapping("config"), TASK_KEY: task.key}, task.table, TASK_KEY, within="config.")
    scaling = config.item.get("autoscaling")
    if scaling is not None and not isinstance(scaling, dict):
        raise config.fault("attribute `config.autoscaling` is not a map")
    policy = ItemFields({**(scaling or {}), TASK_KEY: task.key}, task.table, TASK_KEY, within="config.autoscaling.")
    names = config.listing("rollback_alarms")
    if not all(isinstance(name, str) for name in names):
        raise config.fault("attribute `config.rollback_alarms` holds something that is not a string")
    return DeployConfig(
        instance_type=config.text("instance_type"),
        initial_instance_count=config.integer("initial_instance_count"),
        model_data_url=config.text("model_data_url"),
        image_uri=config.text("image_uri"),
        bake_seconds=config.integer("bake_seconds"),
        # Tasks stored before artifacts were pinned at submit have none.
        content_hash=config.optional_text("content_hash") or None,
        parity_check=config.choice("parity_check", ParityCheck) if "parity_check" in config.item
        else ParityCheck.REQUIRED,
        promotion=config.choice("promotion", Promotion) if "promotion" in config.item else Promotion.AUTO,
        match_live_instance_count=config.item.get("match_live_instance_count") is True,
        autoscaling=None if scaling is None else ScalingPolicy(
            policy.integer("min_instances"), policy.integer("max_instances"),
            policy.integer("target_invocations_per_instance"),
        ),
        promotion_timeout_seconds=config.optional_integer("promotion_timeout_seconds"),
        alarms=RollbackAlarms(
            tuple(names), config.optional_integer("max_5xx_errors_per_minute"),
            config.optional_integer("max_model_latency_ms"),
        ),
        # Tasks stored before servings existed ran the handler.
        serving=config.choice("serving", Serving) if "serving" in config.item else Serving.HANDLER,
        dtype=config.choice("dtype", Dtype) if config.item.get("dtype") else None,
        dimension=config.optional_integer("dimension"),
    )


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
    # In the order the item is checked: the first fault found is the one reported.
    task_id, kind = fields.text(TASK_KEY), fields.choice("kind", TaskKind)
    embedding_model_id, status = fields.text("embedding_model_id"), fields.choice("status", TaskStatus)
    stage = fields.choice("stage", Stage)
    deadline_at = fields.optional_time("deadline_at")
    promote_by = fields.optional_time("promote_by")
    if promote_by is None and stage is Stage.AWAITING_PROMOTION:
        # Stored before the two were apart: awaiting promotion, `deadline_at` held the window's end.
        promote_by = deadline_at
    return Task(
        task_id=task_id,
        kind=kind,
        embedding_model_id=embedding_model_id,
        status=status,
        stage=stage,
        created_at=fields.time("created_at"),
        updated_at=fields.time("updated_at"),
        request_hash=fields.text("request_hash"),
        deploy=config_of(fields) if kind is TaskKind.DEPLOY else None,
        reason=fields.optional_text("reason"),
        detail=fields.optional_text("detail"),
        events=[_event_of(fields, index, event) for index, event in enumerate(fields.listing("events"))],
        source=fields.optional_text("source") or "http",
        version=fields.integer("version"),
        variant=fields.optional_text("variant"),
        polls=fields.integer("polls", default=0),
        hops=fields.integer("hops", default=0),
        deadline_at=deadline_at,
        promote_by=promote_by,
        live_at=fields.optional_time("live_at"),
        rollback_detail=fields.optional_text("rollback_detail"),
        cancel_requested=bool(fields.item.get("cancel_requested", False)),
        promote_requested=bool(fields.item.get("promote_requested", False)),
        rekicked_at=fields.optional_time("rekicked_at"),
        expires_at=datetime.fromtimestamp(expires_at, UTC) if expires_at is not None else None,
        step_token=fields.optional_text("step_token"),
        next_at=fields.optional_time("next_at"),
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
                KeyConditionExpression="model_kind = :key",
                ExpressionAttributeValues={":key": model_kind_key(kind, embedding_model_id)},
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

    def request_cancel(self, task_id: str, at: datetime, detail: str) -> Task | None:
        # The event names the stage and status the cancel met, so the write is conditional on both;
        # a deploy only moves forward through them, so a cancel that meets a move reads again a few
        # times at most. The version is not in the condition: the worker's writes never hold it up.
        for _ in range(2 * len(Stage)):
            task = self.get(task_id)
            if task is None or task.status.is_terminal or task.cancel_requested:
                return task
            written = self._record_cancel(task, at, detail)
            if written is not None:
                return reported(partial(item_to_task, written, self._table.name))
        raise RetryableError(f"task {task_id} kept moving while its cancel was recorded")

    def _record_cancel(self, task: Task, at: datetime, detail: str) -> dict[str, Any] | None:
        """One conditional UpdateItem of the cancel's attributes; the item written, or None when the
        task's stage or status moved (or a cancel landed) since it was read."""
        event = _event_to_item(TaskEvent(at, task.stage, task.status, detail))

        def update() -> Any:
            return self._table.update_item(
                Key={"task_id": task.task_id},
                UpdateExpression="SET cancel_requested = :yes, #v = #v + :one, #detail = :detail, "
                "updated_at = :at, events = list_append(events, :event) REMOVE step_token, next_at",
                ConditionExpression="#stage = :stage AND #status = :status AND "
                "(attribute_not_exists(cancel_requested) OR cancel_requested = :no)",
                ExpressionAttributeNames={"#v": "version", "#detail": "detail", "#stage": "stage", "#status": "status"},
                ExpressionAttributeValues={
                    ":yes": True, ":no": False, ":one": 1, ":detail": detail, ":at": iso(at), ":event": [event],
                    ":stage": task.stage.value, ":status": task.status.value,
                },
                ReturnValues="ALL_NEW",
            )

        answer = _dynamodb("record the cancel", update, tolerate=condition_failed)
        return None if answer is None else dict(answer["Attributes"])

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
