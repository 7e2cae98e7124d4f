"""Operator tool layer: embeds through a model's alias by calling SageMaker Runtime directly (no API hop).

The alias lives in SSM (`<prefix>/models/<id>/endpoint`, written by the product at every swap,
rollback and delete). An Embedder caches it for a short TTL. When SageMaker refuses the cached
endpoint (ValidationError: it was torn down after a swap, or a rollback moved the alias away),
it reads the alias again once and, if the alias moved, sends the same request to the new
endpoint: a caller does not fail across a swap, a rollback or the old variant's teardown.

Either serving may answer (the alias can move from a handler variant to a TEI one): answers are read by
chalicelib.adapters.serving_wire, and a batch goes out in requests of at most 32 texts (TEI's
MAX_CLIENT_BATCH_SIZE), all to one endpoint, so that every vector of one answer comes from one variant.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.serving_wire import AnswerError, decode_answer_bytes
from chalicelib.domain.names import alias_parameter
from chalicelib.domain.serving import SAFE_TEXTS_PER_REQUEST

DEFAULT_ALIAS_TTL_SECONDS = 10.0
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
        self._batch = max_texts_per_request
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # endpoint name, read at
        self.re_resolved = 0  # how often a refused endpoint sent it back to SSM (and the alias had moved)

    def endpoint_name(self) -> str:
        """The live endpoint as the alias says (read from SSM at most once per TTL)."""
        with self._lock:
            cached = self._cached
        if cached is not None and self._clock() - cached[1] < self._ttl:
            return cached[0]
        return self._resolve()

    def embed(self, texts: Sequence[str], *, normalize: bool | None = None) -> Embeddings:
        if isinstance(texts, str) or not texts:
            raise ValueError("texts must be a non-empty list of strings")
        options: dict[str, Any] = {} if normalize is None else {"normalize": normalize}
        texts = list(texts)
        bodies = [
            json.dumps({"inputs": texts[start:start + self._batch], **options}).encode("utf-8")
            for start in range(0, len(texts), self._batch)
        ]
        endpoint = self.endpoint_name()
        try:
            return self._invoke(endpoint, bodies)
        except ClientError as error:
            if _code(error) != _ENDPOINT_GONE:
                raise _refused(endpoint, error) from None
            moved_to = self._resolve()
            if moved_to == endpoint:  # the alias still names it: the request itself was refused
                raise _refused(endpoint, error) from None
        with self._lock:
            self.re_resolved += 1
        try:
            # All of the batch again, on the new variant: one answer never mixes two versions' vectors.
            return self._invoke(moved_to, bodies)
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

    def _invoke(self, endpoint: str, bodies: Sequence[bytes]) -> Embeddings:
        answers = []
        for body in bodies:
            response = self._runtime.invoke_endpoint(EndpointName=endpoint, ContentType=_JSON, Accept=_JSON, Body=body)
            try:
                answers.append(decode_answer_bytes(response["Body"].read()))
            except AnswerError as error:
                raise EmbedderError(f"endpoint `{endpoint}` answered no usable embeddings: {error}") from None
        vectors = [vector for answer in answers for vector in answer.vectors]
        answer = {**answers[0].as_dict(), "embeddings": vectors}
        return Embeddings(vectors=vectors, dimension=answers[0].dimension, endpoint_name=endpoint, answer=answer)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _refused(endpoint: str, error: ClientError) -> EndpointRefusedError:
    message = str(error.response.get("Error", {}).get("Message", "")) or str(error)
    return EndpointRefusedError(endpoint, _code(error), message)
