"""Local stack: the `local` stage's environment — .chalice/config.json's, plus the embedded AWS to reach."""
from __future__ import annotations

import json
from pathlib import Path

# The local stack serves app.py from this checkout, so the stages' config is beside it.
CHALICE_CONFIG = Path(__file__).resolve().parents[2] / ".chalice" / "config.json"
LOCAL_STAGE = "local"
LOCAL_REGION = "us-east-1"
# How long a local endpoint stays Creating at least (`esdeploy local --endpoint-creation-seconds`,
# a local-only knob): by default only until its model has loaded.
CREATION_SECONDS = 0.0


def stage_environment(stage: str | None, config_path: Path = CHALICE_CONFIG) -> dict[str, str]:
    """What Chalice gives every function of `stage`: the shared variables, then the stage's own
    (None: the shared ones only). Settings left out take config.py's defaults."""
    config = json.loads(config_path.read_text())
    env = dict(config.get("environment_variables", {}))
    if stage is not None:
        env.update(config["stages"][stage].get("environment_variables", {}))
    return env


def local_environment(aws_endpoint: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the app and boto3 when the AWS services are an embedded moto server."""
    env = {
        **stage_environment(LOCAL_STAGE),
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    env.update(overrides or {})
    return env
