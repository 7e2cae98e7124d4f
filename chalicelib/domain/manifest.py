"""Domain layer: the artifact manifest contract (esdeploy-manifest/1), one reader per field.

The one home of the manifest's rules: the packager (esdeploy/packaging.py, esdeploy/tei_packaging.py), the
operator's reading of a manifest (esdeploy/manifest.py: the artifact check, the acceptance run) and the gate
(chalicelib/services/smoke.py) all read a field through the function here, so a manifest one of them accepts
the others accept too. Stdlib only, like the rest of the domain. The serving handler runs inside the endpoint
container, where chalicelib is not: serving/inference.py keeps its own MANIFEST_NAME and POOLING_MODES and its
reading of `normalize` and `max_seq_length`; tests/serving/test_manifest_copies.py proves the copies agree.
"""
from __future__ import annotations

import math
from typing import Any

from chalicelib.domain.artifacts import CONTENT_HASH as CONTENT_HASH
from chalicelib.domain.artifacts import MANIFEST_NAME as MANIFEST_NAME
from chalicelib.domain.artifacts import packaged_serving
from chalicelib.domain.serving import Serving

FORMAT = "esdeploy-manifest/1"
POOLING_MODES = ("mean", "cls", "max")
# The smoke test sends every probe text in one request: the fewest any serving takes at once is TEI's 32.
MAX_PROBE_TEXTS = 32
# The manifest's poolings TEI has (TEI's own: cls, mean, splade, last_token; `max` is not among them).
TEI_POOLINGS = ("mean", "cls")
TEI_NORMALISES = "TEI normalises every request that does not say normalize: false"
TEI_POOLS = "TEI 1.8.2 pools by cls, mean, splade or last token only"


class ManifestFieldError(ValueError):
    """One field of a manifest breaks the contract: `field` (with an index where one element does) and
    `problem`, which reads after the field's name."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"`{field}` {problem}")
        self.field = field
        self.problem = problem


def read_format(value: Any) -> str:
    if value != FORMAT:
        raise ManifestFieldError("format", f"is {value!r}, not {FORMAT!r}")
    return FORMAT


def read_serving(document: dict[str, Any]) -> Serving:
    """The serving the artifact was packaged for (none named: the handler's, as every artifact before TEI)."""
    try:
        return packaged_serving(document)
    except ValueError as error:
        raise ManifestFieldError("serving", str(error)) from None


def read_content_hash(value: Any) -> str:
    if not isinstance(value, str) or not CONTENT_HASH.fullmatch(value):
        raise ManifestFieldError("content_sha256", "is not 64 lowercase hex digits")
    return value


def read_dimension(value: Any) -> int:
    if not _is_positive_int(value):
        raise ManifestFieldError("dimension", f"is {value!r}, not a positive integer")
    return int(value)


def read_normalize(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ManifestFieldError("normalize", f"is {value!r}, not true or false")
    return value


def read_pooling(value: Any) -> str:
    if value not in POOLING_MODES:
        raise ManifestFieldError("pooling", f"is {value!r}, not one of {', '.join(POOLING_MODES)}")
    return str(value)


def read_max_seq_length(value: Any) -> int:
    if not _is_positive_int(value):
        raise ManifestFieldError("max_seq_length", f"is {value!r}, not a positive integer")
    return int(value)


def read_probe_texts(value: Any) -> tuple[str, ...]:
    """1-32 texts, each with something besides white space: the gate embeds each and compares the answers."""
    if not isinstance(value, list | tuple):
        raise ManifestFieldError(
            "probe_texts", f"must be a list of 1-{MAX_PROBE_TEXTS} non-blank strings, not {_json_type(value)}"
        )
    if not 1 <= len(value) <= MAX_PROBE_TEXTS:
        raise ManifestFieldError(
            "probe_texts", f"has {len(value)} texts; it must have 1-{MAX_PROBE_TEXTS} non-blank strings"
        )
    for index, text in enumerate(value):
        if not isinstance(text, str):
            raise ManifestFieldError(f"probe_texts[{index}]", f"is {_json_type(text)}, not a string")
        if not text.strip():
            raise ManifestFieldError(
                f"probe_texts[{index}]", f"is {text!r}, blank: a probe text needs something to embed"
            )
    return tuple(value)


def read_references(rows: Any, count: int, dimension: int) -> tuple[tuple[float, ...], ...]:
    """One vector of `dimension` finite numbers per probe text."""
    if not isinstance(rows, list | tuple) or len(rows) != count:
        got = len(rows) if isinstance(rows, list | tuple) else type(rows).__name__
        raise ManifestFieldError("reference_embeddings", f"has {got} rows for {count} probe texts")
    for index, row in enumerate(rows):
        where = f"reference_embeddings[{index}]"
        if not isinstance(row, list | tuple) or len(row) != dimension:
            got = len(row) if isinstance(row, list | tuple) else type(row).__name__
            raise ManifestFieldError(where, f"has {got} values, the dimension is {dimension}")
        if not all(_is_number(x) and math.isfinite(x) for x in row):
            raise ManifestFieldError(where, "holds a value that is not a finite number")
    return tuple(tuple(float(x) for x in row) for row in rows)


def serving_problem(serving: Serving, pooling: str | None, normalize: bool) -> ManifestFieldError | None:
    """What a serving cannot do as the manifest says (None: it can). TEI normalises unless a request says
    otherwise and has no max pooling; a manifest that names no pooling says nothing about it."""
    if serving is not Serving.TEI:
        return None
    if not normalize:
        return ManifestFieldError("normalize", f"is false, but {TEI_NORMALISES}")
    if pooling is not None and pooling not in TEI_POOLINGS:
        return ManifestFieldError("pooling", f"is {pooling!r}: {TEI_POOLS}")
    return None


def check_fields(document: dict[str, Any]) -> None:
    """Every field a packaged manifest has, each by its reader (ManifestFieldError on the first that breaks)."""
    read_format(document.get("format"))
    serving = read_serving(document)
    read_content_hash(document.get("content_sha256"))
    dimension = read_dimension(document.get("dimension"))
    pooling = read_pooling(document.get("pooling"))
    normalize = read_normalize(document.get("normalize"))
    read_max_seq_length(document.get("max_seq_length"))
    texts = read_probe_texts(document.get("probe_texts"))
    read_references(document.get("reference_embeddings"), len(texts), dimension)
    problem = serving_problem(serving, pooling, normalize)
    if problem is not None:
        raise problem


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

