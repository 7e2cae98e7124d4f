"""Test helper: a DynamoDB table whose secondary indexes lag behind its writes, as a GSI may.

moto answers a GSI query from the table as it is now; DynamoDB documents GSI reads as
eventually consistent. Queries through an index on this proxy see the items as they were at the
last `catch_up()`: an item written since is missing, an item updated since comes back as it was.
Reads and writes of the table itself go straight through.
"""
from __future__ import annotations

from typing import Any


class LaggingIndexTable:
    def __init__(self, table: Any, keys: tuple[str, ...] = ("task_id",)) -> None:
        """`keys`: the table's key attributes (the tasks table's unless told)."""
        self._table = table
        self._keys = list(keys)
        self._seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.catch_up()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def catch_up(self) -> None:
        """The index has seen every write made so far."""
        self._seen = {self._key(item): item for item in self._scan()}

    def query(self, **kwargs: Any) -> dict[str, Any]:
        if "IndexName" not in kwargs:
            return dict(self._table.query(**kwargs))
        limit = kwargs.pop("Limit", None)
        projection = kwargs.pop("ProjectionExpression", None)
        kwargs.pop("ExclusiveStartKey", None)
        items: list[dict[str, Any]] = []
        while True:
            answer = self._table.query(**kwargs)
            items.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        visible = [self._seen[self._key(item)] for item in items if self._key(item) in self._seen]
        if limit is not None:
            visible = visible[:limit]
        if projection is not None:
            names = {name.strip() for name in projection.split(",")}
            visible = [{k: v for k, v in item.items() if k in names} for item in visible]
        return {"Items": visible, "Count": len(visible)}

    def _scan(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"ConsistentRead": True}
        while True:
            answer = self._table.scan(**kwargs)
            items.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return items
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _key(self, item: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(item[name] for name in self._keys)
