"""Who may call the API, per stage: SigV4 on every route of a deployed stage, none on the local stack."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from esdeploy.local.environment import CHALICE_CONFIG, LOCAL_STAGE, stage_environment
from tests.console_script import ROOT

# app.py decides at import, as Chalice does when it packages a stage: a fresh interpreter per stage.
AUTHORIZERS_OF_ROUTES = (
    "import json, app; "
    "print(json.dumps(sorted({type(e.authorizer).__name__ for m in app.app.routes.values() for e in m.values()})))"
)


def route_authorizers(stage: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESDEPLOY_")}
    env.update(stage_environment(stage))
    done = subprocess.run(
        [sys.executable, "-c", AUTHORIZERS_OF_ROUTES], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("stage", sorted(set(json.loads(CHALICE_CONFIG.read_text())["stages"]) - {LOCAL_STAGE}))
def test_every_route_of_a_deployed_stage_requires_sigv4(stage: str) -> None:
    assert route_authorizers(stage) == ["IAMAuthorizer"]


def test_the_local_stack_serves_every_route_without_auth() -> None:
    assert route_authorizers(LOCAL_STAGE) == ["NoneType"]
