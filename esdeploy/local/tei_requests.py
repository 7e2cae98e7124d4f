"""Local stack: TEI's request bodies as TEI reads them — axum's JSON extractor, then serde into EmbedRequest.

TEI 1.8.2 (router/src/http/types.rs) takes `inputs` (a text, token ids, or a list of either), `truncate` (bool or
null: AUTO_TRUNCATE), `truncation_direction` ("Left" | "Right"), `prompt_name`, `normalize` (default true) and
`dimensions`; unknown fields are ignored. axum 0.7 answers a body it cannot read in plain text: 415 without a JSON
content type, 400 for a syntax error, 422 for JSON of the wrong shape, 413 past the payload limit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from esdeploy.local.tei_model import EmbedInput

U32_MAX = 2**32 - 1


class BodyRejection(Exception):
    """axum refused the body before TEI saw it: `status` and a plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EmbedRequest:
    inputs: tuple[EmbedInput, ...]
    # A bare text or one list of token ids is TEI's `Input::Single`; a list of them its `Input::Batch`.
    single: bool
    truncate: bool | None = None
    truncation_direction: str = "Right"
    prompt_name: str | None = None
    normalize: bool = True
    dimensions: int | None = None


def is_json_content_type(value: str | None) -> bool:
    """axum's `json_content_type`: application/json, or any application/*+json, with parameters or not."""
    if not value:
        return False
    essence = value.split(";", 1)[0].strip().lower()
    kind, _, subtype = essence.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DataError(f"duplicate field `{key}`")
        seen[key] = value
    return seen


class _DataError(ValueError):
    """serde's data error: the JSON is well formed but not an EmbedRequest."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # serde_json refuses NaN and Infinity; Python's json would not


def parse_embed_request(body: bytes, content_type: str | None) -> EmbedRequest:
    """The request TEI's `Json<EmbedRequest>` extractor would build, or BodyRejection with axum's status."""
    if not is_json_content_type(content_type):
        raise BodyRejection(415, "Expected request with `Content-Type: application/json`")
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except _DataError as error:
        raise BodyRejection(422, f"Failed to deserialize the JSON body into the target type: {error}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BodyRejection(400, f"Failed to parse the request body as JSON: {error}") from None
    if _has_lone_surrogate(data):
        # Python's json takes "\ud800" as a string; serde_json refuses it as it parses.
        raise BodyRejection(400, "Failed to parse the request body as JSON: lone leading surrogate in hex escape")
    try:
        return _embed_request(data)
    except _DataError as error:
        raise BodyRejection(422, f"Failed to deserialize the JSON body into the target type: {error}") from None


def _has_lone_surrogate(data: Any) -> bool:
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(data, list):
        return any(_has_lone_surrogate(item) for item in data)
    if isinstance(data, dict):
        return any(_has_lone_surrogate(key) or _has_lone_surrogate(value) for key, value in data.items())
    return False


def _embed_request(data: Any) -> EmbedRequest:
    if not isinstance(data, dict):
        raise _DataError(f"invalid type: {_serde_kind(data)}, expected struct EmbedRequest")
    if "inputs" not in data:
        raise _DataError("missing field `inputs`")
    single, inputs = _inputs(data["inputs"])
    return EmbedRequest(
        inputs=inputs,
        single=single,
        truncate=_optional_bool(data, "truncate"),
        truncation_direction=_direction(data),
        prompt_name=_optional_str(data, "prompt_name"),
        normalize=_bool(data, "normalize", default=True),
        dimensions=_optional_usize(data, "dimensions"),
    )


def _input(value: Any) -> EmbedInput | None:
    """TEI's untagged InputType: a string, or a list of u32 token ids."""
    if isinstance(value, str):
        return EmbedInput(text=value)
    if isinstance(value, list) and all(_is_u32(v) for v in value):
        return EmbedInput(ids=tuple(value))
    return None


def _inputs(value: Any) -> tuple[bool, tuple[EmbedInput, ...]]:
    """TEI's untagged Input, its variants tried in order: Single(InputType), then Batch(Vec<InputType>)."""
    single = _input(value)
    if single is not None:
        return True, (single,)
    if isinstance(value, list):
        batch = [_input(item) for item in value]
        if all(item is not None for item in batch):
            return False, tuple(item for item in batch if item is not None)
    raise _DataError("data did not match any variant of untagged enum Input")


def _is_u32(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U32_MAX


def _optional_bool(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise _DataError(f"invalid type: {_serde_kind(value)}, expected a boolean")
    return value


def _bool(data: dict[str, Any], key: str, default: bool) -> bool:
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, bool):
        raise _DataError(f"invalid type: {_serde_kind(value)}, expected a boolean")
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _DataError(f"invalid type: {_serde_kind(value)}, expected a string")
    return value


def _optional_usize(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _DataError(f"invalid type: {_serde_kind(value)}, expected usize")
    if value < 0:
        raise _DataError(f"invalid value: integer `{value}`, expected usize")
    return value


def _direction(data: dict[str, Any]) -> str:
    if "truncation_direction" not in data:
        return "Right"
    value = data["truncation_direction"]
    if value in ("Left", "Right"):
        return str(value)
    if isinstance(value, str):
        raise _DataError(f"unknown variant `{value}`, expected `Left` or `Right`")
    raise _DataError(f"invalid type: {_serde_kind(value)}, expected enum TruncationDirection")


def _serde_kind(value: Any) -> str:
    """How serde names what it found."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    return "sequence" if isinstance(value, list) else "map"
