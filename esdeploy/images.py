"""Operator tool layer: which AWS image serves an artifact — the Hugging Face PyTorch inference image for the
handler, the text-embeddings-inference image for TEI — looked up offline in sagemaker-core's tables."""

from __future__ import annotations

import os
import re

from chalicelib.domain.serving import TEI_VERSION, Processor, Serving, processor_of

# The container the handler is verified against: transformers 4.49 on PyTorch 2.6.
TRANSFORMERS_VERSION = "4.49.0"
BASE_FRAMEWORK_VERSION = "pytorch2.6.0"
DEFAULT_INSTANCE_TYPE = "ml.g5.xlarge"
DEFAULT_REGION = "us-east-1"
# sagemaker-core's image tables for TEI: one per processor (huggingface-tei has only GPU images,
# huggingface-tei-cpu only CPU ones), both at TEI_VERSION.
TEI_FRAMEWORKS = {Processor.GPU: "huggingface-tei", Processor.CPU: "huggingface-tei-cpu"}


class ImageLookupError(ValueError):
    """No serving image is known for this region / instance type."""


def default_region() -> str:
    """The region boto3 would pick from the environment, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def serving_image_uri(region: str, instance_type: str, serving: Serving = Serving.HANDLER) -> str:
    """The ECR URI of the serving's image for the region; its GPU or CPU flavour follows the instance type.

    sagemaker-core ships the image tables as data files, so this needs no network and no credentials.
    """
    # Imported here: sagemaker-core takes a second or two to import, and only packaging needs it.
    from sagemaker.core import image_uris

    if not re.fullmatch(r"ml\.[a-z0-9-]+\.[a-z0-9-]+", instance_type):
        raise ImageLookupError(f"instance type {instance_type!r} is not a SageMaker type like 'ml.g5.xlarge'")
    processor = processor_of(instance_type)
    if serving is Serving.TEI and processor is None:
        raise ImageLookupError(
            f"TEI has no image for instance type {instance_type!r}: its images are for GPU (ml.g*, ml.p*) "
            "and CPU instance types"
        )
    try:
        if serving is Serving.TEI:
            assert processor is not None
            uri = image_uris.retrieve(
                TEI_FRAMEWORKS[processor],
                region=region,
                version=TEI_VERSION,
                instance_type=instance_type,
                image_scope="inference",
            )
        else:
            uri = image_uris.retrieve(
                "huggingface",
                region=region,
                version=TRANSFORMERS_VERSION,
                base_framework_version=BASE_FRAMEWORK_VERSION,
                instance_type=instance_type,
                image_scope="inference",
            )
    except (ValueError, KeyError) as exc:
        raise ImageLookupError(
            f"no {serving.value} image for region {region!r}, instance type {instance_type!r}: {exc}"
        ) from None
    return str(uri)
