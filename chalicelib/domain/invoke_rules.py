"""Domain layer: the invoke body rules — what one embedding request may hold, and the words for what it may not.

The one home of these rules on the server's and the tool's side: the API checks an invoke body by them before any
endpoint sees it (chalicelib/api/schemas.py), the fake endpoint answers by them, and the embedder splits its
batches by the limits. The serving handler runs inside the endpoint container, where chalicelib is not: it keeps
its own copy (serving/inference.py: MAX_TEXTS, MAX_TEXT_CHARS, MAX_BODY_BYTES, validate_payload), and
tests/serving/test_invoke_rules_copies.py proves the copies agree, numbers and words. TEI's own, smaller limit
is chalicelib.domain.serving's TEI_MAX_CLIENT_BATCH_SIZE.
"""
from __future__ import annotations

from typing import Any

from chalicelib.domain.json_types import json_type

# What the serving handler takes in one request by default (its ESDEPLOY_SERVING_MAX_TEXTS,
# ESDEPLOY_SERVING_MAX_TEXT_CHARS, ESDEPLOY_SERVING_MAX_BODY_BYTES), and so the invoke route too.
MAX_TEXTS_PER_REQUEST = 256
MAX_TEXT_CHARS = 32768
MAX_REQUEST_BYTES = 1024 * 1024


class InvokeInputError(ValueError):
    """An invoke body's `inputs` that no endpoint would take; the message names what is wrong."""


def read_inputs(inputs: Any) -> tuple[str, ...]:
    """`inputs` as the endpoint takes it: one text, or a list of 1-256 texts."""
    if isinstance(inputs, str):
        read_text("inputs", inputs)
        return (inputs,)
    if not isinstance(inputs, list):
        raise InvokeInputError(f"inputs must be a string or a list of strings, not {json_type(inputs)}")
    if not inputs:
        raise InvokeInputError("inputs is an empty list; send at least one text")
    if len(inputs) > MAX_TEXTS_PER_REQUEST:
        raise InvokeInputError(f"too many texts: {len(inputs)} > {MAX_TEXTS_PER_REQUEST}; split the request")
    for index, text in enumerate(inputs):
        read_text(f"inputs[{index}]", text)
    return tuple(inputs)


def read_text(where: str, text: Any) -> str:
    """One text: a string of at most 32768 characters that is Unicode text (empty strings are fine)."""
    if not isinstance(text, str):
        raise InvokeInputError(f"{where} is {json_type(text)}, not a string")
    if len(text) > MAX_TEXT_CHARS:
        raise InvokeInputError(f"{where} has {len(text)} characters, over the limit of {MAX_TEXT_CHARS}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON allows "\ud800", Unicode does not: the tokenizer would crash on it (an endpoint 500).
        raise InvokeInputError(
            f"{where} holds a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start}, "
            "which is not Unicode text"
        ) from None
    return text
