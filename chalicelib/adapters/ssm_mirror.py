"""Adapters: mirrors each model's live endpoint to an SSM parameter for other clients."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import error_code, raise_retryable_or
from chalicelib.domain.models import Alias


class SsmAliasMirror:
    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix.rstrip("/")

    def parameter_name(self, embedding_model_id: str) -> str:
        return f"{self._prefix}/models/{embedding_model_id}/endpoint"

    def publish(self, alias: Alias) -> None:
        if not alias.live_variant:
            self.remove(alias.embedding_model_id)
            return
        try:
            self._client.put_parameter(
                Name=self.parameter_name(alias.embedding_model_id),
                Value=alias.live_variant,
                Type="String",
                Overwrite=True,
                Description=f"Live SageMaker endpoint of {alias.embedding_model_id} (esdeploy)",
            )
        except ClientError as exc:
            raise_retryable_or(exc, "mirroring the alias to SSM")

    def remove(self, embedding_model_id: str) -> None:
        try:
            self._client.delete_parameter(Name=self.parameter_name(embedding_model_id))
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise_retryable_or(exc, "removing the alias from SSM")
