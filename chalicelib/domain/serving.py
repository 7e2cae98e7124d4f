"""Domain layer: the two servings of a model (our handler, Hugging Face TEI), their request limits, and which
processor (GPU or CPU) an instance type has."""
from __future__ import annotations

import re
from enum import StrEnum

from chalicelib.domain import invoke_rules


class Serving(StrEnum):
    """What runs inside the endpoint: `handler` is serving/inference.py in AWS's Hugging Face PyTorch
    inference image; `tei` is AWS's text-embeddings-inference image, which reads the model folder itself."""

    HANDLER = "handler"
    TEI = "tei"


class Processor(StrEnum):
    GPU = "gpu"
    CPU = "cpu"


class Dtype(StrEnum):
    """The precision a deploy asks its serving to run in (None in the config: the serving's default,
    float16 on a GPU and float32 on a CPU for both)."""

    FLOAT16 = "float16"
    FLOAT32 = "float32"


# The TEI version whose images, routes, limits and model support esdeploy is built against: the newest
# sagemaker-core (2.27) lists in its huggingface-tei / huggingface-tei-cpu image tables.
TEI_VERSION = "1.8.2"
# TEI refuses a request with more inputs than this (--max-client-batch-size, default 32, 413 past it);
# esdeploy sets it explicitly on every TEI endpoint, and the embedder splits batches at it.
TEI_MAX_CLIENT_BATCH_SIZE = 32
# The handler's: the invoke rules' (chalicelib/domain/invoke_rules.py).
MAX_TEXTS_PER_REQUEST = {Serving.HANDLER: invoke_rules.MAX_TEXTS_PER_REQUEST, Serving.TEI: TEI_MAX_CLIENT_BATCH_SIZE}
# What a caller that does not know which serving answers (the alias can move between them) may send at once.
SAFE_TEXTS_PER_REQUEST = min(MAX_TEXTS_PER_REQUEST.values())

_FAMILY = re.compile(r"^ml\.(?P<family>[a-z0-9-]+)\.[a-z0-9-]+$")


def processor_of(instance_type: str) -> Processor | None:
    """GPU or CPU, by the instance family's first letter (g*, p*: GPU), as sagemaker-core's
    image_uris._processor decides which image flavour a type gets; None for Inferentia and Trainium
    (inf*, trn*: Neuron images, which neither serving has) and for what is not an instance type."""
    found = _FAMILY.fullmatch(instance_type)
    if found is None:
        return None
    family = found["family"]
    if family.startswith(("inf", "trn")):
        return None
    return Processor.GPU if family[0] in ("g", "p") else Processor.CPU
