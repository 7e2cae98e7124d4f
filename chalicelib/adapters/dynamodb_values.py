"""Adapter: Python values to DynamoDB's typed JSON and back, by boto3's TypeSerializer/TypeDeserializer rules.

What the stdlib DynamoDB client (dynamodb_http.py) sends and reads, so that an item written by it reads the
same through boto3 and the other way round (tests/adapters/test_dynamodb_values.py compares both on every
kind of value). Numbers are Decimal in DynamoDB's context (38 digits, exponent -130 to 125): a float is
refused (TypeError), and a number that would round or overflow raises decimal's own error, as boto3's
does, rather than being stored changed. Stricter than boto3 where DynamoDB would refuse anyway: an empty
set, Infinity and NaN are a TypeError here, not a ValidationException from the service.
"""
from __future__ import annotations

import base64
from collections.abc import Mapping, Set
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

# boto3.dynamodb.types.DYNAMODB_CONTEXT: DynamoDB's own bounds for a number.
DYNAMODB_CONTEXT = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])
# The request parameters that hold attribute values (the rest are names, expressions and options).
ITEM_PARAMETERS = ("Key", "Item", "ExclusiveStartKey")
EXPRESSION_PARAMETERS = ("ConditionExpression", "KeyConditionExpression", "FilterExpression", "UpdateExpression",
                         "ProjectionExpression")
# The answer parameters that hold items.
ITEM_ANSWERS = ("Item", "Attributes", "LastEvaluatedKey")


def _number(value: int | Decimal) -> str:
    if isinstance(value, Decimal) and not value.is_finite():
        raise TypeError(f"{value} is not a number DynamoDB stores (Infinity and NaN are not supported)")
    return str(DYNAMODB_CONTEXT.create_decimal(value))


def _is_number(value: object) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def to_wire(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value (TypeError naming what cannot be stored)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float):
        raise TypeError("Float types are not supported. Use Decimal types instead.")
    if _is_number(value):
        return {"N": _number(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Set):
        return _set_to_wire(value)
    if isinstance(value, Mapping):
        return {"M": {str(name): to_wire(member) for name, member in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_wire(member) for member in value]}
    raise TypeError(f"Unsupported type {type(value)!r} for value {value!r}")


def _set_to_wire(value: Set[Any]) -> dict[str, Any]:
    if any(isinstance(member, float) for member in value):
        raise TypeError("Float types are not supported. Use Decimal types instead.")
    if not value:
        raise TypeError("an empty set is not stored by DynamoDB: leave the attribute out instead")
    if all(_is_number(member) for member in value):
        return {"NS": [_number(member) for member in value]}
    if all(isinstance(member, str) for member in value):
        return {"SS": list(value)}
    if all(isinstance(member, bytes | bytearray) for member in value):
        return {"BS": [base64.b64encode(bytes(member)).decode("ascii") for member in value]}
    raise TypeError(f"a set must hold only numbers, only strings or only bytes: {value!r}")


def from_wire(attribute: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value as Python: numbers as Decimal, binary as bytes, sets as sets."""
    if len(attribute) != 1:
        raise TypeError(f"{attribute!r} is not one typed DynamoDB value")
    (kind, value), = attribute.items()
    if kind == "NULL":
        return None
    if kind in {"S", "BOOL"}:
        return value
    if kind == "N":
        return DYNAMODB_CONTEXT.create_decimal(value)
    if kind == "B":
        return base64.b64decode(value)
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {DYNAMODB_CONTEXT.create_decimal(member) for member in value}
    if kind == "BS":
        return {base64.b64decode(member) for member in value}
    if kind == "L":
        return [from_wire(member) for member in value]
    if kind == "M":
        return {name: from_wire(member) for name, member in value.items()}
    raise TypeError(f"DynamoDB type {kind!r} is not one this reader knows")


def item_to_wire(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: to_wire(value) for name, value in item.items()}


def item_from_wire(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: from_wire(value) for name, value in item.items()}


def request_to_wire(request: Mapping[str, Any]) -> dict[str, Any]:
    """A table call's parameters in Python values as DynamoDB's JSON request (a copy; `request` is left as it is).

    Conditions are expression strings with placeholders: boto3's `Key`/`Attr` objects are refused here,
    as building them needs boto3 (the adapters write the expressions themselves)."""
    wire = dict(request)
    for name in EXPRESSION_PARAMETERS:
        if name in wire and not isinstance(wire[name], str):
            raise TypeError(f"{name} must be an expression string, not {type(wire[name]).__name__}")
    for name in ITEM_PARAMETERS:
        if name in wire:
            wire[name] = item_to_wire(wire[name])
    if "ExpressionAttributeValues" in wire:
        wire["ExpressionAttributeValues"] = item_to_wire(wire["ExpressionAttributeValues"])
    return wire


def answer_from_wire(answer: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB's JSON answer with its items as Python values (what boto3's resource client returns)."""
    result = dict(answer)
    for name in ITEM_ANSWERS:
        if name in result:
            result[name] = item_from_wire(result[name])
    if "Items" in result:
        result["Items"] = [item_from_wire(item) for item in result["Items"]]
    return result
