"""The serving handler runs inside the endpoint container, where chalicelib is not: it keeps its own copy of the
invoke rules. These cases prove the copy agrees with chalicelib/domain/invoke_rules.py (the API's, the fake
endpoint's and the embedder's): the same limits, and for each body one refuses the other refuses it in the same
words (the handler adds the variable that overrides its limit, and quotes "inputs")."""
from __future__ import annotations

import re
from typing import Any

import pytest

from chalicelib.domain import invoke_rules
from serving import inference


def test_the_handler_takes_as_much_as_the_invoke_rules_say() -> None:
    assert inference.MAX_TEXTS == invoke_rules.MAX_TEXTS_PER_REQUEST
    assert inference.MAX_TEXT_CHARS == invoke_rules.MAX_TEXT_CHARS
    assert inference.MAX_BODY_BYTES == invoke_rules.MAX_REQUEST_BYTES


def in_the_rules_words(handler_message: str) -> str:
    return re.sub(r" \(ESDEPLOY_SERVING_[A-Z_]+\)", "", handler_message).replace('"inputs"', "inputs")


INPUTS = [
    ["fine", "", "also fine"],
    "one text",
    [],
    {"text": "x"},
    None,
    3,
    ["fine", 3],
    ["fine", None],
    ["fine", ["nested"]],
    ["x"] * invoke_rules.MAX_TEXTS_PER_REQUEST,
    ["x"] * (invoke_rules.MAX_TEXTS_PER_REQUEST + 1),
    ["x" * invoke_rules.MAX_TEXT_CHARS],
    ["ok", "x" * (invoke_rules.MAX_TEXT_CHARS + 1)],
    ["ok", "a\ud800b"],
]


@pytest.mark.parametrize("inputs", INPUTS, ids=range(len(INPUTS)))
def test_the_handler_refuses_exactly_what_the_invoke_rules_refuse_in_their_words(inputs: Any) -> None:
    try:
        invoke_rules.read_inputs(inputs)
        ours = None
    except invoke_rules.InvokeInputError as error:
        ours = str(error)
    try:
        inference.validate_payload({"inputs": inputs})
        theirs = None
    except inference.BadRequestError as error:
        theirs = in_the_rules_words(str(error))
    assert theirs == ours
