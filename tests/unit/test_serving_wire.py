"""Unit tests: the two servings' wire — one decoder each, errors in either's words, each container's environment."""
from __future__ import annotations

import json

import pytest

from chalicelib.adapters.serving_wire import (
    AnswerError,
    container_environment,
    decode_answer,
    decode_answer_bytes,
    error_text,
)
from chalicelib.domain.serving import Dtype, Serving


def test_the_handlers_answer_and_teis_bare_list_decode_to_the_same_shape() -> None:
    handler = decode_answer({"embeddings": [[0.6, 0.8]], "model": "m1", "dimension": 2})
    tei = decode_answer([[0.6, 0.8]])

    assert handler.as_dict() == {"embeddings": [[0.6, 0.8]], "dimension": 2, "serving": "handler", "model": "m1"}
    assert tei.as_dict() == {"embeddings": [[0.6, 0.8]], "dimension": 2, "serving": "tei"}


def test_a_serving_named_is_held_to_its_own_shape() -> None:
    with pytest.raises(AnswerError, match="TEI answers a JSON list of vectors, this is a JSON object"):
        decode_answer({"embeddings": [[1.0]]}, Serving.TEI)
    with pytest.raises(AnswerError, match=r'the handler answers an object \{"embeddings"'):
        decode_answer([[1.0]], Serving.HANDLER)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "is not a non-empty list of vectors"),
        ([[0.1], []], r"\[1\] is not a non-empty list of numbers"),
        ([[0.1, True]], "not a finite number"),
        ([[0.1, None]], "not a finite number"),
        ([[0.1], [0.1, 0.2]], r"\[1\] has 2 values, the answer\[0\] has 1"),
        ({"embeddings": [[0.1, 0.2]], "dimension": 3}, "says dimension 3, its vectors have 2 values"),
        ({"detail": "bad request"}, "neither serving answers like this"),
        ("text", "neither serving answers like this: .* a JSON string"),
    ],
)
def test_what_is_no_embedding_answer_is_named(body: object, problem: str) -> None:
    with pytest.raises(AnswerError, match=problem):
        decode_answer(body)


def test_a_body_that_is_not_json_is_an_answer_error() -> None:
    with pytest.raises(AnswerError, match="not JSON: '<html>502"):
        decode_answer_bytes(b"<html>502 Bad Gateway</html>")
    assert decode_answer_bytes(json.dumps([[1.0, 0.0]]).encode()).serving is Serving.TEI


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b'{"error":"batch size 40 > maximum allowed batch size 32","error_type":"Validation"}',
         "batch size 40 > maximum allowed batch size 32 (TEI Validation)"),
        (b'{"detail":"inputs[0] is a number, not a string"}', "inputs[0] is a number, not a string"),
        (b"Expected request with `Content-Type: application/json`",
         "Expected request with `Content-Type: application/json`"),
    ],
)
def test_errors_are_read_in_either_servings_words(raw: bytes, said: str) -> None:
    assert error_text(raw) == said


def test_each_serving_starts_with_its_own_environment() -> None:
    handler = container_environment(Serving.HANDLER)
    tei = container_environment(Serving.TEI, Dtype.FLOAT32)

    assert handler["SAGEMAKER_PROGRAM"] == "inference.py" and "ESDEPLOY_SERVING_DTYPE" not in handler
    assert container_environment(Serving.HANDLER, Dtype.FLOAT32)["ESDEPLOY_SERVING_DTYPE"] == "float32"
    # TEI's SageMaker entrypoint needs HF_MODEL_ID; truncation as the handler's; the embedder's split size.
    assert tei == {"HF_MODEL_ID": "/opt/ml/model", "AUTO_TRUNCATE": "true", "MAX_CLIENT_BATCH_SIZE": "32",
                   "HF_HUB_OFFLINE": "1", "DTYPE": "float32"}
    assert "DTYPE" not in container_environment(Serving.TEI)
