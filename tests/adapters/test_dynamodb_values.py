"""Adapter tests: Python values to DynamoDB JSON and back as boto3's TypeSerializer/TypeDeserializer do it."""
from __future__ import annotations

import base64
import copy
import decimal
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from chalicelib.adapters.dynamodb_values import (
    DYNAMODB_CONTEXT,
    answer_from_wire,
    from_wire,
    item_from_wire,
    item_to_wire,
    request_to_wire,
    to_wire,
)

VALUES = [
    pytest.param(None, id="none"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(0, id="zero"),
    pytest.param(-7, id="negative-int"),
    pytest.param(10**37, id="int-38-digits"),
    pytest.param(Decimal("1.50"), id="decimal-trailing-zero"),
    pytest.param(Decimal("-0.001"), id="decimal-negative-fraction"),
    pytest.param(Decimal("1E+100"), id="decimal-exponent"),
    pytest.param("", id="empty-string"),
    pytest.param("text", id="string"),
    pytest.param("ünïcode ✓", id="unicode-string"),
    pytest.param(b"\x00\xff", id="bytes"),
    pytest.param(bytearray(b"\x01\x02\x03"), id="bytearray"),
    pytest.param({"a", "b"}, id="string-set"),
    pytest.param({1, Decimal("2.5")}, id="number-set"),
    pytest.param({b"x", b"y"}, id="binary-set"),
    pytest.param(frozenset({"z"}), id="frozenset"),
    pytest.param({}, id="empty-map"),
    pytest.param([], id="empty-list"),
    pytest.param({"a": [1, "x", {"b": None}], "c": {"d": True, "e": b"\x10"}}, id="nested-map"),
    pytest.param([1, [Decimal("2.25"), ["three"]], None], id="nested-list"),
    pytest.param((1, "x", (b"y",)), id="tuple"),
    pytest.param({"tags": {"x", "y"}, "scores": {1, 2}, "blobs": {b"\x00"}, "inner": {"s": {"q"}}},
                 id="map-with-sets"),
]


def boto3_wire(value: Any) -> Any:
    """boto3's serialization (binary as raw bytes) with binary as the base64 text DynamoDB's JSON carries."""
    return _base64_binaries(TypeSerializer().serialize(value))


def _base64_binaries(attribute: Mapping[str, Any]) -> dict[str, Any]:
    (kind, value), = attribute.items()
    if kind == "B":
        return {"B": base64.b64encode(value).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(member).decode("ascii") for member in value]}
    if kind == "L":
        return {"L": [_base64_binaries(member) for member in value]}
    if kind == "M":
        return {"M": {name: _base64_binaries(member) for name, member in value.items()}}
    return {kind: value}


def boto3_round_trip(value: Any) -> Any:
    """What boto3 reads back for `value`, with each Binary as bytes."""
    return _bytes(TypeDeserializer().deserialize(TypeSerializer().serialize(value)))


def _bytes(value: Any) -> Any:
    if isinstance(value, Binary):
        wrapped: Any = value  # boto3-stubs leave out Binary.value
        return bytes(wrapped.value)
    if isinstance(value, dict):
        return {name: _bytes(member) for name, member in value.items()}
    if isinstance(value, list):
        return [_bytes(member) for member in value]
    if isinstance(value, set):
        return {_bytes(member) for member in value}
    return value


def shape(value: Any) -> Any:
    """`value` with every type and Decimal exponent spelled out, and sets and set lists in a fixed order."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in {"SS", "NS", "BS"}:
            (kind, members), = value.items()
            return {kind: sorted(members)}
        return ("dict", {name: shape(member) for name, member in value.items()})
    if isinstance(value, list):
        return ("list", [shape(member) for member in value])
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted(repr(shape(member)) for member in value))
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("value", VALUES)
def test_to_wire_is_boto3s_serialization_with_base64_binary(value: Any) -> None:
    assert shape(to_wire(value)) == shape(boto3_wire(value))


@pytest.mark.parametrize("value", VALUES)
def test_from_wire_reads_back_what_boto3_reads_back(value: Any) -> None:
    assert shape(from_wire(to_wire(value))) == shape(boto3_round_trip(value))


def test_binary_goes_out_as_base64_text_and_comes_back_as_bytes() -> None:
    assert to_wire(b"\x00\xff") == {"B": "AP8="}
    assert to_wire(bytearray(b"\x00\xff")) == {"B": "AP8="}
    assert sorted(to_wire({b"x", b"y"})["BS"]) == ["eA==", "eQ=="]
    assert from_wire({"B": "AP8="}) == b"\x00\xff"
    assert type(from_wire({"B": "AP8="})) is bytes
    assert from_wire({"BS": ["eA==", "eQ=="]}) == {b"x", b"y"}


def test_numbers_keep_their_digits_both_ways() -> None:
    assert to_wire(Decimal("1.50")) == {"N": "1.50"}
    assert to_wire(10**37) == {"N": "1" + "0" * 37}
    assert repr(from_wire({"N": "1.50"})) == "Decimal('1.50')"
    assert from_wire({"NS": ["1", "2.5"]}) == {Decimal(1), Decimal("2.5")}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param(1.5, "Use Decimal", id="float"),
        pytest.param({"a": [1.5]}, "Use Decimal", id="nested-float"),
        pytest.param(Decimal("NaN"), "NaN", id="nan"),
        pytest.param(Decimal("Infinity"), "Infinity", id="infinity"),
        pytest.param(Decimal("-Infinity"), "Infinity", id="minus-infinity"),
        pytest.param(set(), "empty set", id="empty-set"),
        pytest.param({1, "a"}, "only numbers, only strings or only bytes", id="mixed-set"),
        pytest.param({True, 2}, "only numbers", id="bool-in-number-set"),
        pytest.param(object(), "Unsupported type <class 'object'>", id="object"),
    ],
)
def test_what_dynamodb_cannot_store_is_refused_with_a_type_error(value: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        to_wire(value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(10**38 + 1, decimal.Inexact, id="39-digit-int"),
        pytest.param(Decimal("1.00000000000000000000000000000000000001"), decimal.Inexact, id="39-digit-decimal"),
        pytest.param(10**38, decimal.Rounded, id="int-10e38-would-round"),
        pytest.param(Decimal("1E+200"), decimal.Overflow, id="exponent-too-large"),
        pytest.param(Decimal("1E-200"), decimal.Underflow, id="exponent-too-small"),
    ],
)
def test_a_number_that_would_change_is_refused_with_the_decimal_signal_boto3_raises(
    value: int | Decimal, error: type[decimal.DecimalException]
) -> None:
    # Not a TypeError: the trapped decimal signal from DYNAMODB_CONTEXT, exactly as boto3 lets it through.
    with pytest.raises(error):
        TypeSerializer().serialize(value)
    with pytest.raises(error):
        to_wire(value)


def test_the_context_is_boto3s() -> None:
    from boto3.dynamodb.types import DYNAMODB_CONTEXT as BOTO3_CONTEXT

    assert (DYNAMODB_CONTEXT.prec, DYNAMODB_CONTEXT.Emin, DYNAMODB_CONTEXT.Emax) == (
        BOTO3_CONTEXT.prec, BOTO3_CONTEXT.Emin, BOTO3_CONTEXT.Emax)
    assert {name for name, on in DYNAMODB_CONTEXT.traps.items() if on} == {
        name for name, on in BOTO3_CONTEXT.traps.items() if on}


@pytest.mark.parametrize(
    ("attribute", "match"),
    [
        pytest.param({"S": "a", "N": "1"}, "is not one typed DynamoDB value", id="two-keys"),
        pytest.param({}, "is not one typed DynamoDB value", id="no-key"),
        pytest.param({"X": "1"}, "DynamoDB type 'X'", id="unknown-tag"),
    ],
)
def test_from_wire_refuses_what_is_not_one_typed_value(attribute: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        from_wire(attribute)


def test_items_convert_attribute_by_attribute() -> None:
    item = {"pk": "t1", "version": 3, "blob": b"\x01", "tags": {"a"}}
    wire = item_to_wire(item)
    assert wire == {"pk": {"S": "t1"}, "version": {"N": "3"}, "blob": {"B": "AQ=="}, "tags": {"SS": ["a"]}}
    assert item_from_wire(wire) == item


def test_request_to_wire_serializes_the_values_and_leaves_names_and_expressions() -> None:
    request: dict[str, Any] = {
        "TableName": "tasks",
        "Key": {"pk": "t1"},
        "UpdateExpression": "SET #v = :n",
        "ConditionExpression": "#v = :v",
        "ExpressionAttributeNames": {"#v": "version"},
        "ExpressionAttributeValues": {":v": 3, ":n": Decimal(4)},
        "ReturnValues": "ALL_NEW",
    }
    before = copy.deepcopy(request)
    assert request_to_wire(request) == {
        "TableName": "tasks",
        "Key": {"pk": {"S": "t1"}},
        "UpdateExpression": "SET #v = :n",
        "ConditionExpression": "#v = :v",
        "ExpressionAttributeNames": {"#v": "version"},
        "ExpressionAttributeValues": {":v": {"N": "3"}, ":n": {"N": "4"}},
        "ReturnValues": "ALL_NEW",
    }
    assert request == before


def test_request_to_wire_serializes_an_item_and_a_start_key() -> None:
    put = {"TableName": "tasks", "Item": {"pk": "t1", "payload": {"n": [1, None]}}}
    assert request_to_wire(put)["Item"] == {"pk": {"S": "t1"}, "payload": {"M": {"n": {"L": [{"N": "1"},
                                                                                             {"NULL": True}]}}}}
    assert put == {"TableName": "tasks", "Item": {"pk": "t1", "payload": {"n": [1, None]}}}
    query = {"TableName": "tasks", "KeyConditionExpression": "pk = :p", "FilterExpression": "attribute_exists(x)",
             "ExpressionAttributeValues": {":p": "t1"}, "ExclusiveStartKey": {"pk": "t0", "sk": 2}, "Limit": 10}
    assert request_to_wire(query) == {
        "TableName": "tasks", "KeyConditionExpression": "pk = :p", "FilterExpression": "attribute_exists(x)",
        "ExpressionAttributeValues": {":p": {"S": "t1"}}, "ExclusiveStartKey": {"pk": {"S": "t0"}, "sk": {"N": "2"}},
        "Limit": 10,
    }


@pytest.mark.parametrize(
    ("parameter", "condition"),
    [
        pytest.param("ConditionExpression", Attr("version").eq(3), id="condition"),
        pytest.param("KeyConditionExpression", Key("k").eq("v"), id="key-condition"),
        pytest.param("FilterExpression", Attr("state").exists(), id="filter"),
    ],
)
def test_request_to_wire_refuses_a_boto3_condition_object(parameter: str, condition: object) -> None:
    with pytest.raises(TypeError, match=f"{parameter} must be an expression string"):
        request_to_wire({"TableName": "tasks", parameter: condition})


def test_answer_from_wire_reads_items_and_keeps_the_rest() -> None:
    capacity = {"TableName": "tasks", "CapacityUnits": 0.5}
    answer = {
        "Items": [{"pk": {"S": "t1"}, "n": {"N": "1"}}, {"pk": {"S": "t2"}, "b": {"B": "AP8="}}],
        "LastEvaluatedKey": {"pk": {"S": "t2"}},
        "Count": 2,
        "ScannedCount": 5,
        "ConsumedCapacity": capacity,
    }
    before = copy.deepcopy(answer)
    assert answer_from_wire(answer) == {
        "Items": [{"pk": "t1", "n": Decimal(1)}, {"pk": "t2", "b": b"\x00\xff"}],
        "LastEvaluatedKey": {"pk": "t2"},
        "Count": 2,
        "ScannedCount": 5,
        "ConsumedCapacity": capacity,
    }
    assert answer == before


def test_answer_from_wire_reads_item_and_attributes() -> None:
    assert answer_from_wire({"Item": {"tags": {"SS": ["a", "b"]}}}) == {"Item": {"tags": {"a", "b"}}}
    assert answer_from_wire({"Attributes": {"version": {"N": "4"}}, "ConsumedCapacity": {"CapacityUnits": 1.0}}) == {
        "Attributes": {"version": Decimal(4)}, "ConsumedCapacity": {"CapacityUnits": 1.0}}
    assert answer_from_wire({}) == {}
