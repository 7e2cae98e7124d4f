"""Services: turning a deploy request's `config` into a DeployConfig under the stage's rules."""
from __future__ import annotations

import re

from chalicelib.config import Settings
from chalicelib.domain.commands import DeployConfigRequest
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.models import DeployConfig

# What a SageMaker container image reference looks like (ECR, tag or digest); the execution
# role may pull only our serving images, so anything else would fail 10 minutes later.
_IMAGE_URI = re.compile(
    r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[a-f0-9]{64})$"
)


def resolve_deploy_config(
    settings: Settings, embedding_model_id: str, given: DeployConfigRequest
) -> DeployConfig:
    instance_type = given.instance_type or settings.default_instance_type
    if instance_type not in settings.allowed_instance_types:
        raise InvalidRequestError(
            f"config.instance_type {instance_type!r} is not allowed; choose one of "
            + ", ".join(settings.allowed_instance_types),
            field="config.instance_type",
        )
    count = given.initial_instance_count or 1
    if count > settings.max_instance_count:
        raise InvalidRequestError(
            f"config.initial_instance_count {count} is over the limit of "
            f"{settings.max_instance_count}",
            field="config.initial_instance_count",
        )
    url = given.model_data_url or settings.conventional_model_data_url(embedding_model_id)
    root = settings.artifact_root_url
    if not url.startswith(root) or ".." in url.split("/") or not url.endswith(".tar.gz"):
        raise InvalidRequestError(
            f"config.model_data_url {url!r} must be a .tar.gz under {root}",
            field="config.model_data_url",
        )
    image_uri = given.image_uri or settings.default_image_uri
    if given.image_uri is not None and not _IMAGE_URI.fullmatch(image_uri):
        raise InvalidRequestError(
            f"config.image_uri {image_uri!r} is not an ECR image reference "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG)",
            field="config.image_uri",
        )
    bake = settings.default_bake_seconds if given.bake_seconds is None else given.bake_seconds
    if bake > settings.max_bake_seconds:
        raise InvalidRequestError(
            f"config.bake_seconds {bake} is over the limit of {settings.max_bake_seconds}",
            field="config.bake_seconds",
        )
    return DeployConfig(
        instance_type=instance_type,
        initial_instance_count=count,
        model_data_url=url,
        image_uri=image_uri,
        bake_seconds=bake,
    )
