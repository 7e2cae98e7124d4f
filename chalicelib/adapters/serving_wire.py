"""Adapter layer: the wire of the two servings inside an endpoint — the environment each container starts
with, how each answers an embedding request, and how each says no. The SageMaker and the local hosting and
the embedder read answers only through here (one decoder per serving).

- handler (serving/inference.py, docs/serving.md): `{"embeddings": [[...]], "model": ID, "dimension": N}`;
  errors `{"detail": "..."}` from the local endpoint, plain text from the HF toolkit.
- tei (text-embeddings-inference 1.8.2, router/src/http/server.rs `embed`, the route /invocations takes for
  an embedding model): a bare JSON list of vectors; errors `{"error": "...", "error_type": "Validation"}`
  with 400 (empty batch), 413 (validation, batch size), 422 (tokenizer), 424 (backend), 429 (overloaded).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.serving import TEI_MAX_CLIENT_BATCH_SIZE, Dtype, Serving

# The handler is copied into model.tar.gz under code/; the container must not reach the Hub at start-up
# (endpoints may run without internet access).
HANDLER_ENVIRONMENT: Mapping[str, str] = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "HF_HUB_OFFLINE": "1",
}
# Where SageMaker extracts model.tar.gz; TEI's SageMaker entrypoint refuses to start without HF_MODEL_ID.
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
# TEI reads the model folder, not our manifest: pooling from 1_Pooling/config.json and the token limit from
# sentence_bert_config.json (both written by `esdeploy package --serving tei`); truncation only when asked,
# so AUTO_TRUNCATE makes a request without `truncate` cut at the limit as the handler does.
TEI_ENVIRONMENT: Mapping[str, str] = {
    "HF_MODEL_ID": SAGEMAKER_MODEL_DIR,
    "AUTO_TRUNCATE": "true",
    "MAX_CLIENT_BATCH_SIZE": str(TEI_MAX_CLIENT_BATCH_SIZE),
    "HF_HUB_OFFLINE": "1",
}
# The variable each serving reads its precision from (serving/inference.py; TEI's --dtype).
_DTYPE_VARIABLE = {Serving.HANDLER: "ESDEPLOY_SERVING_DTYPE", Serving.TEI: "DTYPE"}


def container_environment(serving: Serving, dtype: Dtype | None = None) -> dict[str, str]:
    """The container's environment for a variant of this serving (and precision, when the deploy names one)."""
    environment = dict(HANDLER_ENVIRONMENT if serving is Serving.HANDLER else TEI_ENVIRONMENT)
    if dtype is not None:
        environment[_DTYPE_VARIABLE[serving]] = dtype.value
    return environment


class AnswerError(ValueError):
    """An endpoint's answer is not an embedding answer of the serving it should come from."""


@dataclass(frozen=True)
class EmbeddingAnswer:
    """One decoded answer: a vector per input, which serving gave it, and the model id when it says one."""

    serving: Serving
    vectors: list[list[float]]
    model: str | None = None

    @property
    def dimension(self) -> int:
        return len(self.vectors[0]) if self.vectors else 0

    def as_dict(self) -> dict[str, Any]:
        """The shape the Hosting port answers, whichever serving answered."""
        answer: dict[str, Any] = {
            "embeddings": self.vectors,
            "dimension": self.dimension,
            "serving": self.serving.value,
        }
        if self.model is not None:
            answer["model"] = self.model
        return answer


def _vectors(rows: Any, where: str) -> list[list[float]]:
    if not isinstance(rows, list) or not rows:
        raise AnswerError(f"{where} is not a non-empty list of vectors")
    size = None
    for index, row in enumerate(rows):
        if not isinstance(row, list) or not row:
            raise AnswerError(f"{where}[{index}] is not a non-empty list of numbers")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in row):
            raise AnswerError(f"{where}[{index}] holds a value that is not a finite number")
        if size is not None and len(row) != size:
            raise AnswerError(f"{where}[{index}] has {len(row)} values, {where}[0] has {size}")
        size = len(row)
    return rows


def decode_handler(body: Any) -> EmbeddingAnswer:
    """serving/inference.py's answer: an object with `embeddings` (and `model`, `dimension`)."""
    if not isinstance(body, dict) or "embeddings" not in body:
        raise AnswerError(f'the handler answers an object {{"embeddings": [...], ...}}, this is {_kind(body)}')
    vectors = _vectors(body["embeddings"], "embeddings")
    dimension = body.get("dimension")
    if dimension is not None and dimension != len(vectors[0]):
        raise AnswerError(f"the answer says dimension {dimension}, its vectors have {len(vectors[0])} values")
    model = body.get("model")
    return EmbeddingAnswer(Serving.HANDLER, vectors, model if isinstance(model, str) else None)


def decode_tei(body: Any) -> EmbeddingAnswer:
    """TEI's answer to /invocations (its /embed): a bare JSON list with one vector per input."""
    if not isinstance(body, list):
        raise AnswerError(f"TEI answers a JSON list of vectors, this is {_kind(body)}")
    return EmbeddingAnswer(Serving.TEI, _vectors(body, "the answer"))


DECODERS: Mapping[Serving, Callable[[Any], EmbeddingAnswer]] = {
    Serving.HANDLER: decode_handler,
    Serving.TEI: decode_tei,
}


def serving_of_answer(body: Any) -> Serving | None:
    """Which serving's shape this answer has: the two cannot be confused (an object against a list)."""
    if isinstance(body, list):
        return Serving.TEI
    if isinstance(body, dict) and "embeddings" in body:
        return Serving.HANDLER
    return None


def decode_answer(body: Any, serving: Serving | None = None) -> EmbeddingAnswer:
    """The answer through `serving`'s decoder. Without `serving` (a caller of the alias, which can move
    from a handler variant to a TEI one between two calls) through the decoder of the serving whose
    shape it has; AnswerError when it is neither."""
    chosen = serving or serving_of_answer(body)
    if chosen is None:
        raise AnswerError(
            'neither serving answers like this: the handler answers {"embeddings": [...]}, TEI a list of '
            f"vectors; this is {_kind(body)}"
        )
    return DECODERS[chosen](body)


def decode_answer_bytes(raw: bytes | str, serving: Serving | None = None) -> EmbeddingAnswer:
    """`decode_answer` of a response body; AnswerError when it is not JSON."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        shown = raw[:200] if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
        raise AnswerError(f"the answer is not JSON: {shown!r}") from None
    return decode_answer(body, serving)


def error_text(raw: bytes | str) -> str:
    """What an endpoint's error body says, in either serving's words: TEI's `{"error", "error_type"}`, the
    local handler's `{"detail"}`, else the text itself (the HF toolkit, a proxy)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:1000]
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            kind = body.get("error_type")
            return f"{body['error']} (TEI {kind})" if isinstance(kind, str) else body["error"]
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return text.strip()[:1000]


def _kind(body: Any) -> str:
    names = {dict: "a JSON object", list: "a JSON list", str: "a JSON string", bool: "a JSON boolean"}
    if body is None:
        return "JSON null"
    return names.get(type(body), "a JSON number" if isinstance(body, int | float) else type(body).__name__)
