"""Domain layer: which ids we accept and the SageMaker-safe names derived from them."""
from __future__ import annotations

import hashlib
import re

# Ids travel in URL paths, DynamoDB keys, SSM parameter names and SageMaker tags, so they
# keep to characters all of those accept. Underscores and dots are fine here; SageMaker
# names are not, which is why resource names are derived (sanitised + hashed), never copied.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ID_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"

SAGEMAKER_NAME_MAX = 63
_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_HASH_LEN = 8
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def is_valid_id(value: str) -> bool:
    return bool(ID_PATTERN.fullmatch(value))


def short_hash(value: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:length]


def slug(value: str) -> str:
    """Lower-case, every run of disallowed characters becomes one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")


def variant_name(prefix: str, embedding_model_id: str, task_id: str) -> str:
    """The one name of a variant's Model, EndpointConfig and Endpoint.

    `<prefix>-<slug of model id>-<hash of model id>-<hash of task id>`: readable in the console,
    deterministic (a redelivered step finds what it made), and the hashes keep two ids that
    sanitise alike (`a_b` vs `a-b`) apart. Always within SageMaker's 63 characters.
    """
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"resource prefix {prefix!r} must match {PREFIX_PATTERN.pattern}")
    tail = f"{short_hash(embedding_model_id)}-{short_hash(task_id)}"
    room = SAGEMAKER_NAME_MAX - len(prefix) - len(tail) - 2
    readable = slug(embedding_model_id)[:room].strip("-")
    name = f"{prefix}-{readable}-{tail}" if readable else f"{prefix}-{tail}"
    assert len(name) <= SAGEMAKER_NAME_MAX and _SAGEMAKER_NAME.fullmatch(name), name
    return name


def model_name_prefix(prefix: str, embedding_model_id: str) -> str:
    """What every variant name of this model starts with (to find all of them)."""
    tail = short_hash(embedding_model_id)
    room = SAGEMAKER_NAME_MAX - len(prefix) - len(tail) - _HASH_LEN - 3
    readable = slug(embedding_model_id)[:room].strip("-")
    return f"{prefix}-{readable}-{tail}-" if readable else f"{prefix}-{tail}-"


def alias_parameter(ssm_prefix: str, embedding_model_id: str) -> str:
    """The SSM parameter that holds a model's live endpoint name: written by the product, read by callers."""
    return f"{ssm_prefix.rstrip('/')}/models/{embedding_model_id}/endpoint"


# esdeploy's own alarms of a variant (docs/api.md): created at the swap, deleted with the variant.
ALARM_5XX_SUFFIX = "-invocation-5xx"
ALARM_LATENCY_SUFFIX = "-model-latency"


def resource_name_prefix(prefix: str) -> str:
    """What every name of a stage's resources starts with: its variants, their alarms, and the alarms
    whose state changes EventBridge routes to the deploy worker (infra/template.yaml,
    AlarmStateChangeRule, `${ResourcePrefix}-`)."""
    return f"{prefix}-"


def variant_alarm_names(variant: str) -> tuple[str, str]:
    """The names of the two CloudWatch alarms esdeploy keeps on a variant: 5XX errors, model latency."""
    return f"{variant}{ALARM_5XX_SUFFIX}", f"{variant}{ALARM_LATENCY_SUFFIX}"
