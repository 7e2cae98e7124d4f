"""cfn-lint and checkov over the packaged templates (tools from .venv-infra)."""
from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from infra_support import STAGES, checkov_skips


@pytest.mark.parametrize("stage", STAGES)
def test_cfn_lint_finds_no_errors(packaged: Any, infra_tool: Any, stage: str) -> None:
    out, _ = packaged(stage)
    done = subprocess.run(
        [str(infra_tool("cfn-lint")), "--format", "parseable", str(out / "sam.yaml")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ":E" in line]
    # cfn-lint's exit code is a bit mask: 2 = errors (4 = warnings, 8 = informational).
    assert not errors and not done.returncode & 2, done.stdout + done.stderr


def test_every_checkov_skip_has_a_reason() -> None:
    skips = checkov_skips()
    assert skips, "infra/.checkov.yaml lists no skips"
    missing = [check for check, reason in skips.items() if len(reason) < 20]
    assert not missing, f"skips without a one-line reason in infra/.checkov.yaml: {missing}"


def _checkov_failures(infra_tool: Any, path: Any) -> set[str]:
    # No config file here: every check runs, and this test compares the failures with the skips.
    done = subprocess.run(
        [str(infra_tool("checkov")), "--framework", "cloudformation", "--skip-download", "--quiet",
         "--output", "json", "--file", str(path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    assert all(r.get("summary", {}).get("parsing_errors", 0) == 0 for r in reports), done.stdout
    return {f["check_id"] for r in reports for f in r.get("results", {}).get("failed_checks", [])}


def test_checkov_fails_only_on_listed_skips(packaged: Any, infra_tool: Any) -> None:
    skips = checkov_skips()
    seen: set[str] = set()
    for stage in STAGES:
        out, _ = packaged(stage)
        failed = _checkov_failures(infra_tool, out / "sam.yaml")
        assert not failed - set(skips), f"{stage}: checkov failures not in infra/.checkov.yaml: {failed - set(skips)}"
        seen |= failed
    # A skip nothing needs any more hides the next regression of that check: drop it.
    assert not set(skips) - seen, f"stale skips in infra/.checkov.yaml: {set(skips) - seen}"
