"""Domain layer: how large an embedding answer gets, against the 6 MB a synchronous answer may be."""
from __future__ import annotations

# A SageMaker real-time endpoint answers InvokeEndpoint with at most 6 MB, and a synchronous Lambda
# (the invoke route) answers with at most 6 MB: the smaller of what either may carry bounds a
# batch. (SageMaker developer guide, "InvokeEndpoint" / real-time inference payloads; Lambda
# quotas, "Invocation payload (request and response): 6 MB each for request and response".)
SYNC_ANSWER_LIMIT_BYTES = 6 * 1024 * 1024
# Whatever an answer carries besides its vectors (keys, the model's and the endpoint's names, a task
# id) and the envelope Lambda and API Gateway wrap around the body, generously.
ANSWER_OVERHEAD_BYTES = 64 * 1024
# The longest text JSON writes for one float, 17 significant digits with a sign, a point and an
# exponent ("-1.2345678901234567e-05", 23 bytes), and the ", " after it: an estimate that is never
# short, whatever the values (a float32 vector written as Python floats gets that long).
JSON_BYTES_PER_VALUE = 25
JSON_BYTES_PER_VECTOR = 4  # "[", "]" and the ", " between two vectors


def answer_bytes(texts: int, dimension: int) -> int:
    """An upper estimate of the JSON answer for `texts` vectors of `dimension` values."""
    return ANSWER_OVERHEAD_BYTES + texts * (dimension * JSON_BYTES_PER_VALUE + JSON_BYTES_PER_VECTOR)


def texts_that_fit(dimension: int) -> int:
    """How many vectors of `dimension` values one synchronous answer can carry (by the estimate)."""
    per_vector = dimension * JSON_BYTES_PER_VALUE + JSON_BYTES_PER_VECTOR
    return max(0, (SYNC_ANSWER_LIMIT_BYTES - ANSWER_OVERHEAD_BYTES) // per_vector)
