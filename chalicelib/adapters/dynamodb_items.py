"""Adapters: reading DynamoDB items attribute by attribute, so an unreadable one names its table, key and fault.

A table's items are not only ours: a hand edit in the console or a write by an older version can drop
an attribute or change its type. A reader that meets such an item raises UnreadableItemError, which
says what is wrong in words a person can act on; readers of many items (scans, index queries) report
it once (a log line and the `UnreadableItems` metric) and go on with the other items.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from chalicelib.domain.errors import UnreadableItemError
from chalicelib.domain.models import parse_iso
from chalicelib.metrics import count_unreadable_item

logger = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


class ItemFields:
    """Typed access to one item's attributes; every fault is an UnreadableItemError naming the attribute."""

    def __init__(self, item: dict[str, Any], table: str, key_attribute: str, within: str = "") -> None:
        self.item = item
        self.table = table
        self.key = str(item.get(key_attribute, "?"))
        self._within = within  # where a nested map sits in the item, e.g. "events[2]."

    def fault(self, problem: str) -> UnreadableItemError:
        return UnreadableItemError(self.table, self.key, problem)

    def _named(self, name: str) -> str:
        return f"attribute `{self._within}{name}`"

    def _required(self, name: str) -> Any:
        if name not in self.item:
            raise self.fault(f"{self._named(name)} is missing")
        return self.item[name]

    def text(self, name: str) -> str:
        return self._as_text(name, self._required(name))

    def optional_text(self, name: str) -> str | None:
        value = self.item.get(name)
        return None if value is None else self._as_text(name, value)

    def integer(self, name: str, default: int | None = None) -> int:
        value = self._required(name) if default is None else self.item.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | Decimal) or value != int(value):
            raise self.fault(f"{self._named(name)} is {value!r}, not a whole number")
        return int(value)

    def optional_integer(self, name: str) -> int | None:
        return None if self.item.get(name) is None else self.integer(name)

    def choice(self, name: str, allowed: type[E]) -> E:
        value = self.text(name)
        try:
            return allowed(value)
        except ValueError:
            names = ", ".join(str(member.value) for member in allowed)
            raise self.fault(f"{self._named(name)} is {value!r}, not one of {names}") from None

    def time(self, name: str) -> datetime:
        return self._as_time(name, self.text(name))

    def optional_time(self, name: str) -> datetime | None:
        value = self.optional_text(name)
        return None if not value else self._as_time(name, value)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.item.get(name) or {}
        if not isinstance(value, dict):
            raise self.fault(f"{self._named(name)} is a {_kind(value)}, not a map")
        return value

    def listing(self, name: str) -> list[Any]:
        value = self.item.get(name) or []
        if not isinstance(value, list):
            raise self.fault(f"{self._named(name)} is a {_kind(value)}, not a list")
        return value

    def _as_text(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fault(f"{self._named(name)} is a {_kind(value)}, not a string")
        return value

    def _as_time(self, name: str, value: str) -> datetime:
        try:
            return parse_iso(value)
        except ValueError:
            raise self.fault(f"{self._named(name)} is {value!r}, not a time like 2026-01-31T12:00:00.000000Z") from None


def readable(items: Iterable[dict[str, Any]], read: Callable[[dict[str, Any]], T]) -> list[T]:
    """`read` of each item; an item it cannot read is reported and left out, the others are kept."""
    found = []
    for item in items:
        try:
            found.append(read(item))
        except UnreadableItemError as error:
            report_unreadable(error)
    return found


def reported(read: Callable[[], T]) -> T:
    """`read()` of one item; an UnreadableItemError is reported, then raised to the caller."""
    try:
        return read()
    except UnreadableItemError as error:
        report_unreadable(error)
        raise


def report_unreadable(error: UnreadableItemError) -> None:
    """One warning and one `UnreadableItems` count per unreadable item met."""
    logger.warning("skipped an item that cannot be read: %s", error,
                   extra={"table": error.table, "key": error.key, "problem": error.problem})
    count_unreadable_item(error.table)


def _kind(value: Any) -> str:
    if isinstance(value, Decimal):
        return "number"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list | set):
        return "list"
    return type(value).__name__
