"""Services: turning a deploy request's `config` into its one typed form, DeployConfig, under the stage's
rules (once), with its artifact pinned (the exact key and content hash) at submit."""
from __future__ import annotations

import re
from dataclasses import replace

from chalicelib.config import Settings
from chalicelib.domain.artifacts import (
    CONTENT_HASH,
    PinnedArtifact,
    S3UrlError,
    packaged_serving,
    parse_s3_url,
    read_pointer,
)
from chalicelib.domain.commands import DeployConfigRequest
from chalicelib.domain.errors import ArtifactRefusedError, InvalidRequestError
from chalicelib.domain.models import (
    ALARM_NAME_MAX,
    MAX_ROLLBACK_ALARMS,
    DeployConfig,
    ParityCheck,
    Promotion,
    RollbackAlarms,
    ScalingPolicy,
)
from chalicelib.domain.serving import Dtype, Processor, Serving, processor_of
from chalicelib.ports import Artifacts

# What a SageMaker container image reference looks like (ECR, tag or digest); the execution
# role may pull only our serving images, so anything else would fail 10 minutes later.
_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/(?P<repository>[a-z0-9._/-]+)"
    r"(:[\w.-]+|@sha256:[a-f0-9]{64})$"
)
_URL_FIELD = "config.model_data_url"


def image_region(image_uri: str) -> str | None:
    """The region of an ECR image URI, or None when it is not one."""
    found = _IMAGE_URI.fullmatch(image_uri)
    return found["region"] if found else None


def validate_deploy_request(settings: Settings, given: DeployConfigRequest) -> DeployConfig:
    """Every rule that needs no storage; `model_data_url` stays as given ("" for the default) and
    nothing is pinned yet. InvalidRequestError names the field."""
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
    if given.model_data_url is not None:
        _check_model_data_url(settings, given.model_data_url)
    serving = Serving(given.serving or Serving.HANDLER.value)
    image_uri = _image_uri(settings, given.image_uri, serving, instance_type)
    bake = settings.default_bake_seconds if given.bake_seconds is None else given.bake_seconds
    if bake > settings.max_bake_seconds:
        raise InvalidRequestError(
            f"config.bake_seconds {bake} is over the limit of {settings.max_bake_seconds}",
            field="config.bake_seconds",
        )
    promotion = Promotion(given.promotion or Promotion.AUTO.value)
    timeout = _promotion_timeout(settings, promotion, given.promotion_timeout_seconds)
    return DeployConfig(
        instance_type=instance_type,
        initial_instance_count=count,
        model_data_url=given.model_data_url or "",
        image_uri=image_uri,
        bake_seconds=bake,
        parity_check=ParityCheck(given.parity_check or ParityCheck.REQUIRED.value),
        promotion=promotion,
        promotion_timeout_seconds=timeout,
        match_live_instance_count=given.initial_instance_count is None,
        autoscaling=_autoscaling(settings, given.autoscaling),
        alarms=RollbackAlarms(
            names=_rollback_alarms(given.rollback_alarms),
            max_5xx_errors_per_minute=given.max_5xx_errors_per_minute,
            max_model_latency_ms=given.max_model_latency_ms,
        ),
        serving=serving,
        dtype=Dtype(given.dtype) if given.dtype else None,
    )


def _rollback_alarms(given: tuple[str, ...] | None) -> tuple[str, ...]:
    """The caller's alarm names, each once; the schema checked their number and length."""
    field = "config.rollback_alarms"
    names = given or ()
    if len(names) > MAX_ROLLBACK_ALARMS:
        raise InvalidRequestError(
            f"{field} names {len(names)} alarms; at most {MAX_ROLLBACK_ALARMS} are watched", field=field
        )
    seen: set[str] = set()
    for index, name in enumerate(names):
        if not name.strip() or len(name) > ALARM_NAME_MAX:
            raise InvalidRequestError(
                f"{field}[{index}] {name[:40]!r} is not a CloudWatch alarm name (1-{ALARM_NAME_MAX} characters, "
                "not blank)",
                field=field,
            )
        if name in seen:
            raise InvalidRequestError(f"{field} names {name!r} twice; name each alarm once", field=field)
        seen.add(name)
    return names


def _autoscaling(settings: Settings, given: ScalingPolicy | None) -> ScalingPolicy | None:
    if given is None:
        return None
    field = "config.autoscaling"
    if given.max_instances < given.min_instances:
        raise InvalidRequestError(
            f"{field}.max_instances {given.max_instances} is below min_instances {given.min_instances}",
            field=f"{field}.max_instances",
        )
    if given.max_instances > settings.max_instance_count:
        raise InvalidRequestError(
            f"{field}.max_instances {given.max_instances} is over the stage's limit of {settings.max_instance_count}",
            field=f"{field}.max_instances",
        )
    return given


def _promotion_timeout(settings: Settings, promotion: Promotion, given: int | None) -> int | None:
    """How long a manual candidate may wait; only a manual promotion has one."""
    field = "config.promotion_timeout_seconds"
    if promotion is Promotion.AUTO:
        if given is not None:
            raise InvalidRequestError(f'{field} applies only with config.promotion "manual"', field=field)
        return None
    timeout = settings.default_promotion_timeout_seconds if given is None else given
    if timeout > settings.max_promotion_timeout_seconds:
        raise InvalidRequestError(
            f"{field} {timeout} is over the stage's limit of {settings.max_promotion_timeout_seconds}",
            field=field,
        )
    return timeout


def pin_artifact(
    artifacts: Artifacts, settings: Settings, embedding_model_id: str, config: DeployConfig
) -> DeployConfig:
    """The validated config with its artifact pinned: the model's "latest" pointer read now (once),
    or the explicit `model_data_url` with the content hash of the manifest inside it."""
    if not config.model_data_url:
        pinned = _latest(settings, artifacts, embedding_model_id)
    else:
        pinned = _pin_explicit(artifacts, config.model_data_url)
    if pinned.serving is not config.serving:
        raise InvalidRequestError(
            f"config.serving is {config.serving.value!r}, but the artifact {pinned.model_data_url} was packaged for "
            f"{pinned.serving.value!r} (its manifest's serving): deploy it with config.serving "
            f"{pinned.serving.value!r}, or package the model again with "
            f"esdeploy package --serving {config.serving.value}",
            field="config.serving",
        )
    return replace(config, model_data_url=pinned.model_data_url, content_hash=pinned.content_hash)


def _check_model_data_url(settings: Settings, url: str) -> None:
    root = settings.artifact_root_url
    try:
        location = parse_s3_url(url)
    except S3UrlError as error:
        raise InvalidRequestError(f"{_URL_FIELD} {url!r} {error}", field=_URL_FIELD) from None
    if not settings.artifact_layout.holds(location) or not location.key.endswith(".tar.gz"):
        raise InvalidRequestError(f"{_URL_FIELD} {url!r} must be a .tar.gz under {root}", field=_URL_FIELD)


def _latest(settings: Settings, artifacts: Artifacts, embedding_model_id: str) -> PinnedArtifact:
    layout = settings.artifact_layout
    pointer = layout.pointer(embedding_model_id)
    upload = layout.root_url.rstrip("/")
    try:
        data = artifacts.read_pointer(pointer.url)
    except ArtifactRefusedError as error:
        raise InvalidRequestError(f"{_URL_FIELD}: {error}", field=_URL_FIELD) from None
    if data is None:
        raise InvalidRequestError(
            f"model `{embedding_model_id}` has no uploaded artifact ({pointer.url} does not exist): upload one "
            f"first (esdeploy package MODEL_DIR --model-id {embedding_model_id} --upload {upload}),"
            f" or name one in {_URL_FIELD}",
            field=_URL_FIELD,
        )
    try:
        return read_pointer(data, layout, embedding_model_id)
    except ValueError as error:
        raise InvalidRequestError(
            f"the latest-artifact pointer {pointer.url} {error}; upload the model again with esdeploy package "
            f"--upload, or name an artifact in {_URL_FIELD}",
            field=_URL_FIELD,
        ) from None


def _pin_explicit(artifacts: Artifacts, url: str) -> PinnedArtifact:
    try:
        manifest = artifacts.read_manifest(url)
    except ArtifactRefusedError as error:
        raise InvalidRequestError(f"{_URL_FIELD}: {error}", field=_URL_FIELD) from None
    if manifest is None:
        raise InvalidRequestError(f"{_URL_FIELD}: there is no artifact at {url}", field=_URL_FIELD)
    content_hash = manifest.get("content_sha256")
    if not isinstance(content_hash, str) or not CONTENT_HASH.fullmatch(content_hash):
        raise InvalidRequestError(
            f"{_URL_FIELD}: the manifest inside {url} has no content_sha256 of 64 lowercase hex digits "
            "(was it made by esdeploy package?)",
            field=_URL_FIELD,
        )
    try:
        serving = packaged_serving(manifest)
    except ValueError as error:
        raise InvalidRequestError(f"{_URL_FIELD}: the manifest inside {url} {error}", field=_URL_FIELD) from None
    return PinnedArtifact(url, content_hash, serving)


def _image_uri(settings: Settings, given: str | None, serving: Serving, instance_type: str) -> str:
    """The image to serve with: given (checked) or the stage's for the serving and the instance type's
    processor (GPU or CPU), in the region we deploy to."""
    if given is not None and not _IMAGE_URI.fullmatch(given):
        raise InvalidRequestError(
            f"config.image_uri {given!r} is not an ECR image reference "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG)",
            field="config.image_uri",
        )
    processor = processor_of(instance_type)
    if processor is None:
        raise InvalidRequestError(
            f"config.instance_type {instance_type!r} has no {serving.value} image: both servings run on GPU "
            "(ml.g*, ml.p*) or CPU instance types, not on Inferentia or Trainium",
            field="config.instance_type",
        )
    image = given or settings.serving_image(serving, processor)
    if image is None:
        raise InvalidRequestError(
            _no_stage_image(serving, processor, instance_type), field="config.image_uri"
        )
    region = image_region(image)
    if settings.region and region and region != settings.region:
        source = (
            "config.image_uri"
            if given
            else f"the stage's {serving.value} image for {processor.value} instance types"
            if f"{serving.value}-{processor.value}" in settings.serving_images
            else "the stage's default image"
        )
        raise InvalidRequestError(
            f"{source} {image} is in {region}, but esdeploy deploys to {settings.region}: SageMaker pulls "
            f"images only from its own region. Use the image for {settings.region}"
            + ("" if given else " (re-package the stage: AWS_REGION=" + settings.region + " infra/package.sh STAGE)"),
            field="config.image_uri",
        )
    if given is not None:
        _check_pull_scope(settings, given)
    return image


def _no_stage_image(serving: Serving, processor: Processor, instance_type: str) -> str:
    # The words of the API: fields and what to do, not the settings behind them (docs/infra.md names those).
    return (
        f"this stage has no {serving.value} image for {processor.value} instance types such as {instance_type} "
        "(packaging the stage resolves one for its region: docs/infra.md): name one in config.image_uri, "
        "or choose another instance type"
    )


def _check_pull_scope(settings: Settings, given: str) -> None:
    """The stage's execution role may pull only from the repositories of the stage's own serving
    images, in the stage's region (infra/template.yaml, PullServingImage: the handler's repository,
    which infra/finalize.py derives from the default image, and TEI's `tei` and `tei-cpu`). Any tag or
    digest of them is fine; another repository or account would be created, then fail when SageMaker
    cannot pull it, minutes later. A stage that names no image names no scope: nothing is assumed."""
    image = _IMAGE_URI.fullmatch(given)
    stage_images = [_IMAGE_URI.fullmatch(uri) for uri in (settings.default_image_uri, *settings.serving_images.values())
                    if uri]
    scopes = {(m["account"], settings.region or m["region"], m["repository"]) for m in stage_images if m}
    if image is None or not scopes or (image["account"], image["region"], image["repository"]) in scopes:
        return
    allowed = ", ".join(sorted(f"{account}.dkr.ecr.{region}.amazonaws.com/{repository}"
                               for account, region, repository in scopes))
    raise InvalidRequestError(
        f"config.image_uri {given} is not in a repository this stage's SageMaker execution role may pull "
        f"from ({allowed}), so SageMaker could not start it. Name a tag or digest of one of them, or "
        "package the stage with this image as its default (docs/infra.md)",
        field="config.image_uri",
    )
