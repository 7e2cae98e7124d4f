"""The answer-size estimate that bounds invoke batches: never short of what JSON really takes."""
from __future__ import annotations

import json
import struct

import pytest

from chalicelib.domain.answer_size import (
    SYNC_ANSWER_LIMIT_BYTES,
    answer_bytes,
    texts_that_fit,
)
from chalicelib.domain.invoke_rules import MAX_TEXTS_PER_REQUEST


def as_float32(value: float) -> float:
    """A float32 the model computed, as Python writes it: the longest repr a vector value gets."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


@pytest.mark.parametrize("dimension", [384, 768, 1024, 1536, 2048, 4096])
def test_as_many_texts_as_fit_make_an_answer_under_6_mb_even_with_the_longest_numbers(dimension: int) -> None:
    fit = texts_that_fit(dimension)
    worst = as_float32(-1.2345678e-05)
    assert len(json.dumps(worst)) == 23  # "-1.2345678437710088e-05"
    vectors = [[worst] * dimension for _ in range(fit)]
    body = json.dumps({
        "embeddings": vectors, "dimension": dimension, "model": "m" * 128,
        "endpoint_name": "e" * 63, "target": "candidate", "task_id": "t" * 64,
    })
    # The Lambda proxy answer around it, as API Gateway receives it.
    proxied = json.dumps({"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": body})
    assert len(proxied.encode()) <= SYNC_ANSWER_LIMIT_BYTES
    assert answer_bytes(fit, dimension) <= SYNC_ANSWER_LIMIT_BYTES < answer_bytes(fit + 1, dimension)


def test_a_minilm_sized_model_keeps_its_256_texts_and_a_2k_model_does_not() -> None:
    assert texts_that_fit(384) >= MAX_TEXTS_PER_REQUEST
    assert texts_that_fit(1024) < MAX_TEXTS_PER_REQUEST
    assert (texts_that_fit(2048), texts_that_fit(4096)) == (121, 60)
