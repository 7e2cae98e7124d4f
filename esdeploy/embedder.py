"""Operator tool layer: embeds through a model's alias by calling SageMaker Runtime directly (no API hop).

The alias lives in SSM (`<prefix>/models/<id>/endpoint`, written by the product at every swap,
rollback and delete). An Embedder caches it for a short TTL. When SageMaker refuses the cached
endpoint (ValidationError: it was torn down after a swap, or a rollback moved the alias away),
it reads the alias again once and, if the alias moved, sends the same request to the new
endpoint: a caller does not fail across a swap, a rollback or the old variant's teardown.

Either serving may answer (the alias can move from a handler variant to a TEI one): answers are read by
chalicelib.adapters.serving_wire, and a request carries at most 32 texts (TEI's MAX_CLIENT_BATCH_SIZE),
whichever serving is live.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.serving_wire import AnswerError, decode_answer_bytes
from chalicelib.domain.answer_size import texts_that_fit
from chalicelib.domain.invoke_rules import MAX_REQUEST_BYTES, MAX_TEXTS_PER_REQUEST
from chalicelib.domain.names import alias_parameter
from chalicelib.domain.serving import SAFE_TEXTS_PER_REQUEST

DEFAULT_ALIAS_TTL_SECONDS = 10.0
# Before a model's first answer its dimension is not known: the first batch is sized as if it were
# this large (up to 30 texts), so that even a large model's answer fits.
FIRST_BATCH_DIMENSION = 8192
_REQUEST_OVERHEAD_BYTES = 1024  # {"inputs": [...], "normalize": false}
_SAME_ENDPOINT_ATTEMPTS = 3
_JSON = "application/json"
# What InvokeEndpoint answers for an endpoint that does not exist (any more) or is not in service.
_ENDPOINT_GONE = "ValidationError"


class EmbedderError(Exception):
    """Embedding through the alias failed; the message says what to do."""


class ModelNotDeployedError(EmbedderError):
    """The model has no alias: never deployed, deleted, or another SSM prefix (stage) was meant."""

    def __init__(self, embedding_model_id: str, parameter: str) -> None:
        super().__init__(
            f"model `{embedding_model_id}` is not deployed: SSM parameter {parameter} does not exist "
            "(deploy it first, or check the SSM prefix of the stage: ESDEPLOY_SSM_PREFIX)"
        )
        self.embedding_model_id = embedding_model_id
        self.parameter = parameter


class EndpointRefusedError(EmbedderError):
    """SageMaker Runtime refused the request (`code`: ValidationError, ModelError, ...)."""

    def __init__(self, endpoint_name: str, code: str, message: str) -> None:
        super().__init__(f"endpoint `{endpoint_name}` refused the request ({code}): {message}")
        self.endpoint_name = endpoint_name
        self.code = code


@dataclass(frozen=True)
class Embeddings:
    """One answer: a vector per input text, and which endpoint (variant) computed them; `answer` is the
    decoded answer (`embeddings`, `dimension`, `serving`, and `model` when the serving names it)."""

    vectors: list[list[float]]
    dimension: int
    endpoint_name: str
    answer: dict[str, Any]

    @property
    def serving(self) -> str:
        """Which serving answered: "handler" or "tei"."""
        return str(self.answer["serving"])


class Embedder:
    """Embeds texts with whatever variant of one model is live; safe to share between threads."""

    def __init__(
        self,
        embedding_model_id: str,
        *,
        ssm: Any,
        runtime: Any,
        ssm_prefix: str,
        ttl_seconds: float = DEFAULT_ALIAS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_texts_per_request: int = SAFE_TEXTS_PER_REQUEST,
    ) -> None:
        self.embedding_model_id = embedding_model_id
        self.parameter = alias_parameter(ssm_prefix, embedding_model_id)
        self._ssm = ssm
        self._runtime = runtime
        self._ttl = ttl_seconds
        self._clock = clock
        if max_texts_per_request < 1:
            raise ValueError("max_texts_per_request must be at least 1")
        self._most_texts = min(max_texts_per_request, MAX_TEXTS_PER_REQUEST)
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # endpoint name, read at
        self.re_resolved = 0  # how often a refused endpoint sent it back to SSM (and the alias had moved)
        self._dimension: int | None = None  # the model's, from its last answer: it sizes the batches

    def endpoint_name(self) -> str:
        """The live endpoint as the alias says (read from SSM at most once per TTL)."""
        with self._lock:
            cached = self._cached
        if cached is not None and self._clock() - cached[1] < self._ttl:
            return cached[0]
        return self._resolve()

    def embed(self, texts: Sequence[str], *, normalize: bool | None = None) -> Embeddings:
        """One vector per text, in order, all from one endpoint. Texts are sent in batches that the
        endpoint takes (at most 32 texts, TEI's limit, and 1 MiB a request) and whose answers fit the 6 MB a
        real-time endpoint may answer: by the model's dimension, learned from the first answer
        (before it, a dimension of FIRST_BATCH_DIMENSION is assumed). Should the alias move between
        two batches, the batches another endpoint answered are sent again to the one it names now."""
        if isinstance(texts, str) or not texts:
            raise ValueError("texts must be a non-empty list of strings")
        batches: list[list[str]] = []
        answers: list[Embeddings] = []
        for batch in self._batches(list(texts)):
            batches.append(batch)
            answers.append(self._embed_batch(batch, normalize))
        newest = answers[-1].endpoint_name  # the endpoint that answered last
        for _ in range(_SAME_ENDPOINT_ATTEMPTS):
            stale = [index for index, answer in enumerate(answers) if answer.endpoint_name != newest]
            if not stale:
                return _joined(answers)
            for index in stale:
                answers[index] = self._embed_batch(batches[index], normalize)
                newest = answers[index].endpoint_name
        raise EmbedderError(
            f"the alias of `{self.embedding_model_id}` kept moving while {len(texts)} texts were embedded in "
            f"batches; no endpoint answered all of them (try again)"
        )

    def _batches(self, texts: list[str]) -> Iterator[list[str]]:
        """Consecutive batches: at most `max_texts_per_request` texts, a request of at most
        MAX_REQUEST_BYTES (a text larger than that alone goes alone, for the endpoint to refuse), and
        an answer that fits, by the dimension known so far. A generator on purpose: each batch is sized
        after the answer to the one before it came back (the first one teaches the dimension)."""
        start = 0
        while start < len(texts):
            with self._lock:
                dimension = self._dimension
            most = min(self._most_texts, max(1, texts_that_fit(dimension or FIRST_BATCH_DIMENSION)))
            size, budget = 0, MAX_REQUEST_BYTES - _REQUEST_OVERHEAD_BYTES
            while start + size < len(texts) and size < most:
                cost = len(json.dumps(texts[start + size]).encode("utf-8")) + 2
                if size and cost > budget:
                    break
                budget -= cost
                size += 1
            yield texts[start:start + size]
            start += size

    def _embed_batch(self, texts: list[str], normalize: bool | None) -> Embeddings:
        payload: dict[str, Any] = {"inputs": texts}
        if normalize is not None:
            payload["normalize"] = normalize
        body = json.dumps(payload).encode("utf-8")
        answer = self._embed_body(body)
        if answer.dimension > 0:
            with self._lock:
                self._dimension = answer.dimension
        return answer

    def _embed_body(self, body: bytes) -> Embeddings:
        endpoint = self.endpoint_name()
        try:
            return self._invoke(endpoint, body)
        except ClientError as error:
            if _code(error) != _ENDPOINT_GONE:
                raise _refused(endpoint, error) from None
            moved_to = self._resolve()
            if moved_to == endpoint:  # the alias still names it: the request itself was refused
                raise _refused(endpoint, error) from None
        with self._lock:
            self.re_resolved += 1
        try:
            return self._invoke(moved_to, body)
        except ClientError as error:
            raise _refused(moved_to, error) from None

    def _resolve(self) -> str:
        try:
            answer = self._ssm.get_parameter(Name=self.parameter)
        except ClientError as error:
            if _code(error) == "ParameterNotFound":
                with self._lock:
                    self._cached = None
                raise ModelNotDeployedError(self.embedding_model_id, self.parameter) from None
            raise EmbedderError(f"could not read the alias {self.parameter} from SSM: {error}") from None
        name = str(answer["Parameter"]["Value"])
        with self._lock:
            self._cached = (name, self._clock())
        return name

    def _invoke(self, endpoint: str, body: bytes) -> Embeddings:
        response = self._runtime.invoke_endpoint(EndpointName=endpoint, ContentType=_JSON, Accept=_JSON, Body=body)
        try:
            answer = decode_answer_bytes(response["Body"].read())
        except AnswerError as error:
            raise EmbedderError(f"endpoint `{endpoint}` answered no usable embeddings: {error}") from None
        return Embeddings(vectors=answer.vectors, dimension=answer.dimension, endpoint_name=endpoint,
                          answer=answer.as_dict())


def _joined(answers: list[Embeddings]) -> Embeddings:
    """The batches' answers as one: their vectors in order, the last batch's answer for the rest."""
    if len(answers) == 1:
        return answers[0]
    vectors = [vector for answer in answers for vector in answer.vectors]
    last = answers[-1]
    return Embeddings(vectors=vectors, dimension=last.dimension, endpoint_name=last.endpoint_name,
                      answer={**last.answer, "embeddings": vectors})


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _refused(endpoint: str, error: ClientError) -> EndpointRefusedError:
    message = str(error.response.get("Error", {}).get("Message", "")) or str(error)
    return EndpointRefusedError(endpoint, _code(error), message)
