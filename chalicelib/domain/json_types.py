"""Domain layer: how a message names the JSON type of a value a caller sent ("a number", "null", ...)."""
from __future__ import annotations

from typing import Any

_NAMES = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}


def json_type(value: Any) -> str:
    return "null" if value is None else _NAMES.get(type(value), type(value).__name__)
