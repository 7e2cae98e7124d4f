"""cfn-lint, checkov and parliament (IAM) over the packaged templates (tools from .venv-infra)."""
from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml
from infra_support import INFRA, STAGES, checkov_skips


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


def _lint_iam(infra_tool: Any, *templates: Any) -> subprocess.CompletedProcess[str]:
    """infra/lint_iam.py (parliament) in .venv-infra, as `make infra-check` runs it."""
    return subprocess.run(
        [str(infra_tool("python")), str(INFRA / "lint_iam.py"), "--json", *map(str, templates)],
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_parliament_finds_nothing_that_is_not_fixed_or_suppressed(packaged: Any, infra_tool: Any) -> None:
    templates = [packaged(stage)[0] / "sam.yaml" for stage in STAGES]
    done = _lint_iam(infra_tool, *templates)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["findings"] == [] and report["stale_suppressions"] == []
    # Every policy file, and per stage each function role plus the template's own roles.
    files = len(list((INFRA / "iam").glob("*.json")))
    assert report["policies"] >= files + len(STAGES) * (files + 2), report["policies"]


def test_parliament_fails_on_a_policy_nobody_suppressed(packaged: Any, infra_tool: Any, tmp_path: Any) -> None:
    """A role added to the template with a mistyped action and PassRole on any role: both named, exit 1."""
    out, _ = packaged("dev")
    text = (out / "sam.yaml").read_text().replace("\nResources:\n", """
Resources:
  CarelessRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Version: '2012-10-17', Statement: []}
      Policies:
        - PolicyName: careless
          PolicyDocument:
            Version: '2012-10-17'
            Statement:
              - {Effect: Allow, Action: 's3:GetObjct', Resource: '*'}
              - {Effect: Allow, Action: 'iam:PassRole', Resource: '*'}
""", 1)
    copy = tmp_path / "dev"
    copy.mkdir()
    (copy / "sam.yaml").write_text(text)
    (copy / "parameters.txt").write_text((out / "parameters.txt").read_text())
    done = _lint_iam(infra_tool, copy / "sam.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    found = {(f["policy"], f["issue"]) for f in json.loads(done.stdout)["findings"]}
    assert ("dev:CarelessRole/careless", "UNKNOWN_ACTION") in found
    assert ("dev:CarelessRole/careless", "RESOURCE_STAR") in found


def test_every_parliament_suppression_has_a_one_line_reason() -> None:
    suppressions = yaml.safe_load((INFRA / ".parliament.yaml").read_text())["suppressions"]
    assert suppressions, "infra/.parliament.yaml suppresses nothing: drop the file's list or keep it honest"
    for entry in suppressions:
        assert entry["issue"] and entry["policy"], entry
        assert len(str(entry.get("reason", ""))) >= 20 and "\n" not in str(entry["reason"]), entry
