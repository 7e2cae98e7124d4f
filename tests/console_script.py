"""Test helpers: the installed `esdeploy` console script, run as a user runs it (own env, cwd outside the repo)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_esdeploy() -> str:
    """The console script pip put beside this interpreter: what a user types, not `python -m esdeploy`."""
    script = Path(sys.executable).parent / "esdeploy"
    assert script.exists(), f"{script} is missing: `pip install -e .` (make venv) installs it"
    return str(script)


def user_env(**extra: str) -> dict[str, str]:
    """This environment without the ESDEPLOY_* / AWS_* settings a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESDEPLOY_", "AWS_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def no_aws_credentials(directory: Path) -> dict[str, str]:
    """Settings under which botocore finds no credentials at all and asks no metadata service."""
    return {
        "AWS_CONFIG_FILE": str(directory / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(directory / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def esdeploy(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    assert cwd != ROOT and ROOT not in cwd.parents, "run it from outside the repo, as a user does"
    return subprocess.run(
        [installed_esdeploy(), *args], cwd=cwd, env=env or user_env(), capture_output=True, text=True, timeout=timeout
    )
