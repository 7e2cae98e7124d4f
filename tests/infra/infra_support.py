"""Helpers for tests/infra: load templates, package a stage, walk IAM, cut the SAM part out."""
from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# The one CloudFormation reader (infra/cfn_yaml.py, via the embedded AWS): what the local stack reads, checks read.
from esdeploy.local.embedded_aws import load_cfn, references

__all__ = ["load_cfn", "references"]

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
STAGES = ("dev", "prod")
# Where the linters live (requirements-infra.txt); they conflict with the app's dependencies.
INFRA_VENV = Path(os.environ.get("ESDEPLOY_INFRA_VENV", ROOT / ".venv-infra"))


def chalice_config() -> dict[str, Any]:
    return json.loads((ROOT / ".chalice" / "config.json").read_text())


def stage_environment(stage: str) -> dict[str, str]:
    """The environment Chalice gives every function of `stage` (top level, then the stage)."""
    config = chalice_config()
    return {**config.get("environment_variables", {}), **config["stages"][stage]["environment_variables"]}


def function_settings(function: str) -> dict[str, Any]:
    return chalice_config().get("lambda_functions", {}).get(function, {})


def project_dir() -> Path:
    """The Chalice project to package; ESDEPLOY_INFRA_PROJECT_DIR lets infra work proceed on a
    stand-in app before the real app.py exists."""
    return Path(os.environ.get("ESDEPLOY_INFRA_PROJECT_DIR", ROOT))


def package(stage: str, out: Path) -> dict[str, Any]:
    """Run infra/package.sh (what `make package` runs) and load the result."""
    env = {**os.environ, "PROJECT_DIR": str(project_dir()), "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        ["bash", str(INFRA / "package.sh"), stage, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"infra/package.sh {stage} failed:\n{done.stdout}\n{done.stderr}")
    return yaml.safe_load((out / "sam.yaml").read_text())


def parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    return {name: str(p["Default"]) for name, p in template["Parameters"].items() if "Default" in p}


def substitute(value: Any, params: dict[str, str]) -> Any:
    """Resolve a plain string or a `Fn::Sub` whose variables are all parameters (names only)."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in params:
                raise KeyError(f"{key} is not a known parameter in {value['Fn::Sub']!r}")
            return params[key]

        return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", one, value["Fn::Sub"])
    return value


def without_serverless(template: dict[str, Any]) -> dict[str, Any]:
    """The plain-CloudFormation part: no SAM transform, no SAM resources, nothing that needs them."""
    resources = template["Resources"]
    dropped = {name for name, res in resources.items() if res["Type"].startswith("AWS::Serverless::")}
    grew = True
    while grew:
        grew = False
        for name, res in resources.items():
            if name not in dropped and references(res) & dropped:
                dropped.add(name)
                grew = True
    return {
        **{k: v for k, v in template.items() if k not in ("Transform", "Resources", "Outputs")},
        "Resources": {n: r for n, r in resources.items() if n not in dropped},
        "Outputs": {n: o for n, o in template.get("Outputs", {}).items() if not references(o) & dropped},
    }


def policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`Resource/PolicyName`, document) for every identity policy in the template."""
    for name, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield f"{name}/{policy.get('PolicyName')}", policy["PolicyDocument"]
        elif res.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield name, props["PolicyDocument"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard_allowlist() -> dict[str, str]:
    """infra/iam/wildcard-resources.txt: action -> why it may have Resource "*"."""
    allowed = {}
    for line in (INFRA / "iam" / "wildcard-resources.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            action, _, reason = line.strip().partition(" ")
            allowed[action] = reason.strip()
    return allowed


def aws_check_wildcards() -> dict[str, str]:
    """Actions AWS's own checks require on Resource "*" (esdeploy/iam/aws_checks.py) -> the rule and its source.

    Not ours to narrow: Application Auto Scaling validates that its caller holds them on "*", and
    CloudWatch shows composite alarms only to a DescribeAlarms scoped to "*"."""
    from esdeploy.iam.aws_checks import OWN_CHECKS

    return {requirement.action: f"{check.why} ({check.source})"
            for check in OWN_CHECKS for requirement in check.requires if requirement.resource == "*"}


def checkov_skips() -> dict[str, str]:
    """infra/.checkov.yaml skip-check entries -> the reason written on the same line."""
    listed = yaml.safe_load((INFRA / ".checkov.yaml").read_text()).get("skip-check", [])
    reasons = {}
    for line in (INFRA / ".checkov.yaml").read_text().splitlines():
        match = re.match(r"^\s*-\s*(CKV\w*_\d+)\s*(?:#\s*(.*))?$", line)
        if match:
            reasons[match.group(1)] = (match.group(2) or "").strip()
    return {check: reasons.get(check, "") for check in listed}
