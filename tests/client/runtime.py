"""A SageMaker Runtime stand-in for the embedder's tests: answers from the fake hosting, refuses as AWS does.

moto answers InvokeEndpoint for any endpoint name, even one that never existed, so it cannot show
what the embedder does when an endpoint is gone. This one raises the ClientError AWS raises then.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError


def gone(name: str) -> ClientError:
    """What InvokeEndpoint raises for an endpoint that does not exist (any more)."""
    return ClientError(
        {
            "Error": {"Code": "ValidationError", "Message": f"Endpoint {name} of account 123456789012 not found."},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "InvokeEndpoint",
    )


def model_error(name: str, status: int, message: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ModelError", "Message": f"Received client error ({status}) from primary: {message}"},
            "OriginalStatusCode": status,
            "ResponseMetadata": {"HTTPStatusCode": 424},
        },
        "InvokeEndpoint",
    )


class StubRuntime:
    """`invoke_endpoint` for the endpoints in `answer_for`; every other name is gone. Records each call."""

    def __init__(self, answer_for: Callable[[str, dict[str, Any]], dict[str, Any] | ClientError | None]) -> None:
        self._answer_for = answer_for
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def invoke_endpoint(self, *, EndpointName: str, Body: bytes, ContentType: str, Accept: str) -> dict[str, Any]:
        assert ContentType == Accept == "application/json"
        payload = json.loads(Body)
        self.calls.append((EndpointName, payload))
        answer = self._answer_for(EndpointName, payload)
        if answer is None:
            raise gone(EndpointName)
        if isinstance(answer, ClientError):
            raise answer
        return {"Body": io.BytesIO(json.dumps(answer).encode()), "ContentType": "application/json"}

    @property
    def endpoints(self) -> list[str]:
        return [name for name, _ in self.calls]


class CountingSsm:
    """A real (moto) SSM client that counts the alias reads."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reads = 0

    def get_parameter(self, **kwargs: Any) -> Any:
        self.reads += 1
        return self._client.get_parameter(**kwargs)
