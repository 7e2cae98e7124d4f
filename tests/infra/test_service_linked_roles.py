"""infra/service-linked-roles.sh makes the role Application Auto Scaling needs, once, and deploy.sh runs it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from infra_support import INFRA

from esdeploy.iam.aws_checks import SAGEMAKER_SCALING_ROLE, SAGEMAKER_SCALING_SERVICE


def run_with_fake_aws(tmp_path: Path, role_exists: bool) -> tuple[int, list[str], str]:
    """The script with an `aws` on PATH that records each call and knows whether the role exists."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "aws"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {calls}\n'
        f'if [ "$1 $2" = "iam get-role" ]; then exit {0 if role_exists else 254}; fi\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(INFRA / "service-linked-roles.sh")], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    return done.returncode, calls.read_text().splitlines() if calls.exists() else [], done.stdout


def test_a_missing_role_is_created_for_the_service_aws_checks_names(tmp_path: Path) -> None:
    code, calls, out = run_with_fake_aws(tmp_path, role_exists=False)
    assert code == 0
    assert calls == [
        f"iam get-role --role-name {SAGEMAKER_SCALING_ROLE}",
        f"iam create-service-linked-role --aws-service-name {SAGEMAKER_SCALING_SERVICE}",
    ]
    assert f"creating the service-linked role {SAGEMAKER_SCALING_ROLE}" in out


def test_an_existing_role_is_left_alone(tmp_path: Path) -> None:
    code, calls, _ = run_with_fake_aws(tmp_path, role_exists=True)
    assert code == 0
    assert calls == [f"iam get-role --role-name {SAGEMAKER_SCALING_ROLE}"]


def test_deploy_runs_it_before_the_stack_is_deployed() -> None:
    script = (INFRA / "deploy.sh").read_text()
    assert script.index("infra/service-linked-roles.sh") < script.index("aws cloudformation deploy")
