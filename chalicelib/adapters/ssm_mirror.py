"""Adapters: mirrors each model's live endpoint to an SSM parameter for other clients."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.adapters.aws_errors import AwsCalls, error_code
from chalicelib.domain.models import Alias
from chalicelib.domain.names import alias_parameter

_ssm = AwsCalls("SSM")


def _not_found(exc: ClientError) -> bool:
    return error_code(exc) == "ParameterNotFound"


class SsmAliasMirror:
    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix.rstrip("/")

    def parameter_name(self, embedding_model_id: str) -> str:
        return alias_parameter(self._prefix, embedding_model_id)

    def publish(self, alias: Alias) -> None:
        if not alias.live_variant:
            self.remove(alias.embedding_model_id)
            return
        live = alias.live_variant
        _ssm(
            "mirror the alias to SSM",
            lambda: self._client.put_parameter(
                Name=self.parameter_name(alias.embedding_model_id),
                Value=live,
                Type="String",
                Overwrite=True,
                Description=f"Live SageMaker endpoint of {alias.embedding_model_id} (esdeploy)",
            ),
        )

    def remove(self, embedding_model_id: str) -> None:
        _ssm(
            "remove the alias from SSM",
            lambda: self._client.delete_parameter(Name=self.parameter_name(embedding_model_id)),
            tolerate=_not_found,
        )

    def published(self, embedding_model_id: str) -> str | None:
        answer = _ssm(
            "read the alias's copy in SSM",
            lambda: self._client.get_parameter(Name=self.parameter_name(embedding_model_id)),
            tolerate=_not_found,
        )
        return str(answer["Parameter"]["Value"]) if answer else None
