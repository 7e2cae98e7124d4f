"""Adapters: the models table, one item per model holding its lock lease and its alias."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import AwsCalls, condition_failed, error_code
from chalicelib.adapters.dynamodb_items import ItemFields, readable, report_unreadable, reported
from chalicelib.domain.errors import AliasConflictError, RetryableError, UnreadableItemError
from chalicelib.domain.models import Alias, ModelLock, TaskKind, iso

# Lock and alias share one item so that the console shows, per model, what is live and
# what is running; their attributes are disjoint so their conditional writes never clash.
_LOCK_FIELDS = ("lock_task_id", "lock_kind", "lock_acquired_at")
# The sparse index of live models: `listed` is set (to one value) exactly while a variant is live.
LIVE_INDEX = "live-models"
LISTED = "listed"
LISTED_LIVE = "live"
SLOTS_KEY = "#live-model-slots"
MODEL_KEY = "embedding_model_id"
_dynamodb = AwsCalls("DynamoDB")


class DynamoModelLocks:
    def __init__(self, table: Any) -> None:
        self._table = table

    def acquire(self, lock: ModelLock, replace_task_id: str | None = None) -> ModelLock | None:
        condition = "attribute_not_exists(lock_task_id) OR lock_task_id = :mine"
        values: dict[str, Any] = {
            ":mine": lock.task_id,
            ":kind": lock.kind.value,
            ":at": iso(lock.acquired_at),
        }
        if replace_task_id is not None:
            condition += " OR lock_task_id = :stale"
            values[":stale"] = replace_task_id
        taken = _dynamodb(
            "take the model lock",
            lambda: self._table.update_item(
                Key={"embedding_model_id": lock.embedding_model_id},
                UpdateExpression="SET lock_task_id = :mine, lock_kind = :kind, lock_acquired_at = :at",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            ),
            tolerate=condition_failed,
        )
        if taken is not None:
            return None
        held = self.get(lock.embedding_model_id)
        if held is None:
            # Released between our write and our read: try once more rather than report a
            # conflict with nobody.
            return self.acquire(lock, replace_task_id)
        return held

    def get(self, embedding_model_id: str) -> ModelLock | None:
        answer = _dynamodb(
            "read the model lock",
            lambda: self._table.get_item(
                Key={"embedding_model_id": embedding_model_id},
                ConsistentRead=True,
                ProjectionExpression="embedding_model_id, " + ", ".join(_LOCK_FIELDS),
            ),
        )
        item = answer.get("Item") or {}
        if "lock_task_id" not in item:
            return None
        return reported(lambda: self._lock_of(item))

    def release(self, embedding_model_id: str, task_id: str, forget: bool = False) -> None:
        if forget:
            # A model with nothing in its alias (deleted, or never live) goes with its lease, in
            # one conditional DeleteItem: model items do not pile up.
            forgotten = _dynamodb(
                "release the model lock and forget the model",
                lambda: self._table.delete_item(
                    Key={"embedding_model_id": embedding_model_id},
                    ConditionExpression="lock_task_id = :mine AND attribute_not_exists(live_variant) "
                    "AND attribute_not_exists(previous_variant)",
                    ExpressionAttributeValues={":mine": task_id},
                ),
                tolerate=condition_failed,
            )
            if forgotten is not None:
                return
        # Someone else holds it (or nobody): nothing of ours to drop.
        _dynamodb(
            "release the model lock",
            lambda: self._table.update_item(
                Key={"embedding_model_id": embedding_model_id},
                UpdateExpression="REMOVE " + ", ".join(_LOCK_FIELDS),
                ConditionExpression="lock_task_id = :mine",
                ExpressionAttributeValues={":mine": task_id},
            ),
            tolerate=condition_failed,
        )

    def list_held(self) -> list[ModelLock]:
        """Every held lease; an item that cannot be read is reported and left out (the sweep goes on)."""
        items = scan_all(self._table, "attribute_exists(lock_task_id)", "list the model locks")
        return sorted(readable(items, self._lock_of), key=lambda lock: lock.embedding_model_id)

    def _lock_of(self, item: dict[str, Any]) -> ModelLock:
        fields = ItemFields(item, self._table.name, MODEL_KEY)
        return ModelLock(
            embedding_model_id=fields.text(MODEL_KEY),
            task_id=fields.text("lock_task_id"),
            kind=fields.choice("lock_kind", TaskKind),
            acquired_at=fields.time("lock_acquired_at"),
        )


class DynamoAliases:
    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, embedding_model_id: str) -> Alias | None:
        answer = _dynamodb(
            "read the alias",
            lambda: self._table.get_item(Key={"embedding_model_id": embedding_model_id}, ConsistentRead=True),
        )
        item = answer.get("Item") or {}
        return reported(lambda: self._alias_of(item)) if "alias_version" in item else None

    def swap(self, alias: Alias, expected_version: int) -> Alias:
        sets = ["alias_version = :new"]
        removes: list[str] = []
        values: dict[str, Any] = {":new": expected_version + 1, ":expected": expected_version}
        # Only a model with a live variant is in the index that GET /models queries.
        if alias.live_variant:
            sets.append(f"{LISTED} = :listed")
            values[":listed"] = LISTED_LIVE
        else:
            removes.append(LISTED)
        for attribute, value in (
            ("live_variant", alias.live_variant),
            ("previous_variant", alias.previous_variant),
            ("alias_task_id", alias.task_id),
            ("swapped_at", iso(alias.swapped_at) if alias.swapped_at else None),
            ("live_content_hash", alias.live_content_hash),
            ("previous_content_hash", alias.previous_content_hash),
            ("previous_alias_task_id", alias.previous_task_id),
            ("live_dimension", alias.live_dimension),
            ("previous_dimension", alias.previous_dimension),
        ):
            if value is None:
                removes.append(attribute)
            else:
                sets.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = value
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        condition = "alias_version = :expected"
        if expected_version == 0:
            condition = "attribute_not_exists(alias_version) OR alias_version = :expected"
        written = _dynamodb(
            "swap the alias",
            lambda: self._table.update_item(
                Key={"embedding_model_id": alias.embedding_model_id},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            ),
            tolerate=condition_failed,
        )
        if written is None:
            raise AliasConflictError(
                f"alias of {alias.embedding_model_id} changed since version {expected_version} was read"
            )
        return replace(alias, version=expected_version + 1)

    def list_live(self) -> list[Alias]:
        """One Query on the sparse `live-models` index: as many items as live models, in model id
        order. A GSI read may lag a moment behind a swap: this is for listing, never for a decision."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "IndexName": LIVE_INDEX,
            "KeyConditionExpression": "#listed = :live",
            "ExpressionAttributeNames": {"#listed": LISTED},
            "ExpressionAttributeValues": {":live": LISTED_LIVE},
        }
        while True:
            answer = _dynamodb("list the live models", lambda: self._table.query(**kwargs))
            items.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return readable((item for item in items if item.get("live_variant")), self._alias_of)

    def _alias_of(self, item: dict[str, Any]) -> Alias:
        fields = ItemFields(item, self._table.name, MODEL_KEY)
        return Alias(
            embedding_model_id=fields.text(MODEL_KEY),
            live_variant=fields.optional_text("live_variant"),
            previous_variant=fields.optional_text("previous_variant"),
            task_id=fields.optional_text("alias_task_id"),
            swapped_at=fields.optional_time("swapped_at"),
            version=fields.integer("alias_version"),
            live_content_hash=fields.optional_text("live_content_hash"),
            previous_content_hash=fields.optional_text("previous_content_hash"),
            previous_task_id=fields.optional_text("previous_alias_task_id"),
            live_dimension=fields.optional_integer("live_dimension"),
            previous_dimension=fields.optional_integer("previous_dimension"),
        )


class DynamoLiveModelSlots:
    """One item of the models table (`#live-model-slots`: no model id has a '#') holds a map of
    model id -> the task that reserved its slot; `size()` of that map is the condition of every
    reservation, so the cap holds under any concurrency."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def reserve(self, embedding_model_id: str, task_id: str, cap: int) -> list[str] | None:
        for _ in range(3):
            try:
                taken = _dynamodb(
                    "reserve a live-model slot",
                    lambda: self._table.update_item(
                        Key={"embedding_model_id": SLOTS_KEY},
                        UpdateExpression="SET slots.#model = :task",
                        ConditionExpression="attribute_not_exists(slots) OR attribute_exists(slots.#model) "
                        "OR size(slots) < :cap",
                        ExpressionAttributeNames={"#model": embedding_model_id},
                        ExpressionAttributeValues={":task": task_id, ":cap": cap},
                    ),
                    tolerate=condition_failed,
                )
            except ClientError as error:
                if error_code(error) != "ValidationException":
                    raise
                self._create_map()  # the first reservation ever: the map is not there yet
                continue
            if taken is not None:
                return None
            others = sorted(model for model in self.holders() if model != embedding_model_id)
            if len(others) >= cap:
                return others
            # A slot was freed between our write and our read: try again.
        raise RetryableError(f"the live-model slots kept changing while reserving one for {embedding_model_id}")

    def _create_map(self) -> None:
        _dynamodb(
            "create the live-model slots",
            lambda: self._table.update_item(
                Key={"embedding_model_id": SLOTS_KEY},
                UpdateExpression="SET slots = :none",
                ConditionExpression="attribute_not_exists(slots)",
                ExpressionAttributeValues={":none": {}},
            ),
            tolerate=condition_failed,
        )

    def release(self, embedding_model_id: str, task_id: str | None = None) -> None:
        request: dict[str, Any] = {
            "Key": {"embedding_model_id": SLOTS_KEY},
            "UpdateExpression": "REMOVE slots.#model",
            "ConditionExpression": "attribute_exists(slots.#model)",
            "ExpressionAttributeNames": {"#model": embedding_model_id},
        }
        if task_id is not None:
            request["ConditionExpression"] = "slots.#model = :task"
            request["ExpressionAttributeValues"] = {":task": task_id}
        _dynamodb("free a live-model slot", lambda: self._table.update_item(**request), tolerate=condition_failed)

    def holders(self) -> dict[str, str]:
        """Model id -> the task holding its slot; an entry that cannot be read is reported and left out."""
        answer = _dynamodb(
            "read the live-model slots",
            lambda: self._table.get_item(Key={"embedding_model_id": SLOTS_KEY}, ConsistentRead=True),
        )
        fields = ItemFields({**(answer.get("Item") or {}), MODEL_KEY: SLOTS_KEY}, self._table.name, MODEL_KEY)
        try:
            slots = fields.mapping("slots")
        except UnreadableItemError as error:
            report_unreadable(error)
            return {}
        held = {}
        for model, task in slots.items():
            if isinstance(task, str):
                held[str(model)] = task
            else:
                report_unreadable(fields.fault(f"the slot of model `{model}` holds a {type(task).__name__}, "
                                               "not a task id"))
        return held


def scan_all(table: Any, condition: str, doing: str) -> list[dict[str, Any]]:
    """Every item matching `condition`, read consistently: the sweeper decides on what it reads."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"FilterExpression": condition, "ConsistentRead": True}
    while True:
        answer = _dynamodb(doing, lambda: table.scan(**kwargs))
        items.extend(answer.get("Items", []))
        if "LastEvaluatedKey" not in answer:
            return items
        kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
