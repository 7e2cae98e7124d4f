"""Operator tool layer: each surface in its own words. The API names its fields and routes; the CLI
turns what the API says into its flags and commands before a person reads it; esdeploy.Client
(Python) names its keyword arguments. DEPLOY_OPTIONS is the one table of which is which.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DeployOption:
    """One deploy setting: the API's `config` field, esdeploy.Client.deploy's keyword, the CLI's flag."""

    field: str
    keyword: str
    flag: str


DEPLOY_OPTIONS: tuple[DeployOption, ...] = (
    DeployOption("model_data_url", "artifact", "--artifact"),
    DeployOption("instance_type", "instance_type", "--instance-type"),
    DeployOption("initial_instance_count", "instance_count", "--instance-count"),
    DeployOption("image_uri", "image_uri", "--image-uri"),
    DeployOption("bake_seconds", "bake_seconds", "--bake-seconds"),
    DeployOption("parity_check", "skip_parity_check", "--skip-parity-check"),
    DeployOption("promotion", "manual_promotion", "--manual-promotion"),
    DeployOption("promotion_timeout_seconds", "promotion_timeout_seconds", "--promotion-timeout"),
    DeployOption("autoscaling", "autoscaling", "--autoscaling"),
    DeployOption("rollback_alarms", "rollback_alarms", "--rollback-alarm"),
    DeployOption("max_5xx_errors_per_minute", "max_5xx_errors_per_minute", "--max-5xx-per-minute"),
    DeployOption("max_model_latency_ms", "max_model_latency_ms", "--max-latency-ms"),
    DeployOption("serving", "serving", "--serving"),
    DeployOption("dtype", "dtype", "--dtype"),
)
_FLAG_OF = {option.field: option.flag for option in DEPLOY_OPTIONS}
_ID = r"[A-Za-z0-9][A-Za-z0-9._-]*"

# The API's phrases with a value, then its routes, then its bare field names; in this order.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'config\.promotion "manual"'), "--manual-promotion"),
    (re.compile(r'config\.promotion "auto"'), "no --manual-promotion"),
    (re.compile(r"config\.parity_check=skip"), "--skip-parity-check"),
    (re.compile(r'"target": "candidate"'), "--candidate"),
    (re.compile(rf"POST /deploy/({_ID})/promote"), r"esdeploy promote \1"),
    (re.compile(rf"POST /deploy/({_ID})/cancel"), r"esdeploy cancel \1"),
    (re.compile(rf"POST /models/({_ID})/rollback"), r"esdeploy rollback \1"),
)
_FIELD_LABEL = re.compile(r"\bfield `(config\.[a-z0-9_.]+)`")
_FIELD_WITH_VALUE = re.compile(r"\bconfig\.([a-z0-9_]+)=([^\s;,)]+)")
_FIELD = re.compile(r"\bconfig\.([a-z0-9_]+)\b")


def for_the_cli(text: str) -> str:
    """What the API said, in the CLI's words: `config.instance_type` is `--instance-type`,
    `POST /deploy/t1/promote` is `esdeploy promote t1`. Anything else stays as the API said it."""
    for pattern, words in _PHRASES:
        text = pattern.sub(words, text)
    text = _FIELD_LABEL.sub(lambda m: f"option `{flag_of(m[1])}`" if flag_of(m[1]) else m[0], text)
    text = _FIELD_WITH_VALUE.sub(lambda m: f"{_FLAG_OF[m[1]]} {m[2]}" if m[1] in _FLAG_OF else m[0], text)
    return _FIELD.sub(lambda m: _FLAG_OF.get(m[1], m[0]), text)


def flag_of(field: str) -> str | None:
    """The CLI flag of an API `field` (`config.instance_type`; `config.autoscaling.max_instances` is
    part of `--autoscaling`), if the CLI has one."""
    if not field.startswith("config."):
        return None
    return _FLAG_OF.get(field.removeprefix("config.").split(".", 1)[0])
