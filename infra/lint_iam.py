"""Infra: parliament (IAM policy lint) over infra/iam/*.json and the packaged templates' inline policies.

Runs in .venv-infra (`make infra-check`, tests/infra/test_infra_lint.py). The policies hold
CloudFormation intrinsics (`Fn::Sub` of ARNs, `Fn::GetAtt` of a queue's Arn); they are resolved
with the stage's parameters and well-formed stand-in ARNs, so that parliament sees the ARN shapes
AWS will see. Every finding must be fixed or suppressed in infra/.parliament.yaml with a one-line
reason; a suppression that no finding needs any more is reported too (it would hide the next one).

    python infra/lint_iam.py [--json] [out/dev/sam.yaml ...]

Exit status: 0 clean, 1 findings or stale suppressions, 2 a bad config or template.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cfn_yaml  # infra/cfn_yaml.py: Python puts a script's own folder first on sys.path
import yaml

INFRA = Path(__file__).resolve().parent
POLICY_FILES = INFRA / "iam"
CONFIG = INFRA / ".parliament.yaml"
# Stand-ins for what only a real account knows; the ARN shapes are what parliament checks.
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": "",
}
# How a resource's Arn (GetAtt X.Arn, ${X.Arn}) looks, by type; its name is the resource's own
# name property when the template sets one, else its logical id.
ARN_FORMATS = {
    "AWS::SQS::Queue": ("QueueName", "arn:aws:sqs:us-east-1:123456789012:{name}"),
    "AWS::DynamoDB::Table": ("TableName", "arn:aws:dynamodb:us-east-1:123456789012:table/{name}"),
    "AWS::S3::Bucket": ("BucketName", "arn:aws:s3:::{name}"),
    "AWS::SNS::Topic": ("TopicName", "arn:aws:sns:us-east-1:123456789012:{name}"),
    "AWS::IAM::Role": ("RoleName", "arn:aws:iam::123456789012:role/{name}"),
    "AWS::Lambda::Function": ("FunctionName", "arn:aws:lambda:us-east-1:123456789012:function:{name}"),
    "AWS::Serverless::Function": ("FunctionName", "arn:aws:lambda:us-east-1:123456789012:function:{name}"),
    "AWS::Logs::LogGroup": ("LogGroupName", "arn:aws:logs:us-east-1:123456789012:log-group:{name}"),
    "AWS::Events::Rule": ("Name", "arn:aws:events:us-east-1:123456789012:rule/{name}"),
}


class LintError(Exception):
    """A template or config this script cannot read: exit 2, never a false "clean"."""


@dataclass(frozen=True)
class Finding:
    policy: str  # where the policy is: a file under infra/iam or `<stage>:<Resource>/<PolicyName>`
    issue: str
    severity: str
    title: str
    detail: Any
    location: dict[str, Any]

    @property
    def actions(self) -> list[str]:
        """The action(s) a finding names: parliament's checks say `action`, its community auditors `actions`,
        and RESOURCE_STAR lists them as its detail."""
        named = self.location.get("actions") or self.location.get("action") or []
        if not named and isinstance(self.detail, list) and all(":" in str(item) for item in self.detail):
            named = self.detail
        return [str(a) for a in (named if isinstance(named, list) else [named])]

    def line(self) -> str:
        where = f" ({', '.join(self.actions)})" if self.actions else ""
        return f"{self.severity} {self.issue}{where} in {self.policy}: {self.title}; {json.dumps(self.detail)}"


@dataclass(frozen=True)
class Suppression:
    issue: str
    policy: str  # a regex, matched in full against Finding.policy
    action: str | None
    reason: str

    def covers(self, finding: Finding, action: str | None = None) -> bool:
        """Whether this suppression covers the finding (one `action` of it; None: any part of it)."""
        if finding.issue != self.issue or re.fullmatch(self.policy, finding.policy) is None:
            return False
        if self.action is None:
            return True
        actions = [action] if action is not None else finding.actions
        return any(re.fullmatch(self.action, named, re.IGNORECASE) for named in actions)


def is_open(finding: Finding, suppressions: list[Suppression]) -> bool:
    """A finding stays open unless every action it names is covered (one suppressed action must not
    hide another in the same finding); a finding that names none needs a suppression without action."""
    if not finding.actions:
        return not any(s.covers(finding) and s.action is None for s in suppressions)
    return any(not any(s.covers(finding, action) for s in suppressions) for action in finding.actions)


# ---- CloudFormation, just enough to read policy documents --------------------------------------


def load_template(path: Path) -> dict[str, Any]:
    loaded = cfn_yaml.load(path)
    if not isinstance(loaded, dict) or "Resources" not in loaded:
        raise LintError(f"{path} is not a CloudFormation template")
    return loaded


@dataclass
class Resolver:
    """Fn::Sub / Ref / GetAtt with the stage's parameter values and stand-in ARNs."""

    parameters: dict[str, str]
    resources: dict[str, Any]

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::Sub"}:
            text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            local = {name: str(self(value)) for name, value in variables.items()}
            return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: local.get(m.group(1)) or self.name(m.group(1)), text)
        if set(node) == {"Ref"}:
            return self.name(node["Ref"])
        if set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            logical, attribute = (target[0], target[1]) if isinstance(target, list) else target.split(".", 1)
            return self.name(f"{logical}.{attribute}")
        return {key: self(value) for key, value in node.items()}

    def name(self, reference: str) -> str:
        if reference in PSEUDO:
            return PSEUDO[reference]
        if reference in self.parameters:
            return self.parameters[reference]
        logical, _, attribute = reference.partition(".")
        resource = self.resources.get(logical)
        if resource is None:
            raise LintError(f"a policy refers to {reference!r}, which is no parameter or resource of the template")
        name_property, arn = ARN_FORMATS.get(resource.get("Type", ""), ("", ""))
        name = self(resource.get("Properties", {}).get(name_property)) or logical
        if attribute == "Arn" or (not attribute and resource.get("Type") == "AWS::SNS::Topic"):
            if not arn:
                raise LintError(f"no stand-in ARN for {resource.get('Type')} ({reference})")
            return arn.format(name=name)
        return str(name)


def stage_parameters(template: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """The template's defaults, then the values the stage is deployed with."""
    values = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    return {**values, **given}


def packaged_parameters(template_path: Path) -> dict[str, str]:
    """infra/package.sh writes the stage's parameter values beside its template (parameters.txt)."""
    path = template_path.parent / "parameters.txt"
    if not path.exists():
        raise LintError(f"{path} is missing: lint a template that infra/package.sh wrote")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def template_policies(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, resolved document) of every identity policy in a packaged template (out/<stage>/sam.yaml)."""
    template = load_template(path)
    parameters = stage_parameters(template, packaged_parameters(path))
    stage = parameters.get("Stage", path.parent.name)
    resolve = Resolver(parameters, template["Resources"])
    for logical, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource.get("Type") in ("AWS::IAM::Role", "AWS::Serverless::Function"):
            for policy in properties.get("Policies", []):
                if isinstance(policy, dict) and "PolicyDocument" in policy:
                    label = f"{stage}:{logical}/{policy.get('PolicyName', '?')}"
                    yield label, resolve(policy["PolicyDocument"])
        elif resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield f"{stage}:{logical}", resolve(properties["PolicyDocument"])


def file_policies(template: dict[str, Any], stage: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """infra/iam/*.json as written, resolved with the stage's parameters (the unpackaged template's)."""
    resolve = Resolver(stage_parameters(template, {"Stage": stage}), template["Resources"])
    for path in sorted(POLICY_FILES.glob("*.json")):
        yield f"infra/iam/{path.name}", resolve(json.loads(path.read_text()))


# ---- parliament ---------------------------------------------------------------------------------


def lint(label: str, document: dict[str, Any]) -> list[Finding]:
    """parliament's own checks and its community auditors (privilege escalation, credentials exposure, ...)."""
    import parliament
    from parliament import analyze_policy_string, enhance_finding, override_config

    # The community auditors' titles and severities live in their own config; parliament's CLI loads it the same way.
    override_config(str(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml"))
    policy = analyze_policy_string(json.dumps(document), label, include_community_auditors=True)
    findings = []
    for raw in policy.findings:
        finding = enhance_finding(raw)
        findings.append(
            Finding(label, finding.issue, finding.severity, finding.title, finding.detail, dict(finding.location))
        )
    return findings


def load_suppressions(path: Path = CONFIG) -> list[Suppression]:
    data = yaml.safe_load(path.read_text()) or {}
    suppressions = []
    for index, entry in enumerate(data.get("suppressions", [])):
        missing = [key for key in ("issue", "policy", "reason") if not str(entry.get(key, "")).strip()]
        if missing:
            raise LintError(f"{path.name}: suppression #{index + 1} has no {', '.join(missing)}")
        reason = str(entry["reason"]).strip()
        if "\n" in reason or len(reason) < 20:
            raise LintError(f"{path.name}: suppression #{index + 1} needs a one-line reason (20+ characters)")
        suppressions.append(Suppression(entry["issue"], entry["policy"], entry.get("action"), reason))
    return suppressions


def run(templates: list[Path], suppressions: list[Suppression]) -> tuple[list[Finding], list[Suppression], int]:
    """(findings nobody suppressed, suppressions nobody needed, policies linted)."""
    template = load_template(INFRA / "template.yaml")
    policies = list(file_policies(template, "dev"))
    for path in templates:
        policies += list(template_policies(path))
    findings = [finding for label, document in policies for finding in lint(label, document)]
    open_findings = [f for f in findings if is_open(f, suppressions)]
    stale = [s for s in suppressions if not any(s.covers(f) for f in findings)]
    return open_findings, stale, len(policies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/lint_iam.py", description=__doc__.splitlines()[0])
    parser.add_argument("templates", nargs="*", type=Path, help="packaged templates (out/<stage>/sam.yaml)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    try:
        open_findings, stale, count = run(args.templates, load_suppressions())
    except (LintError, OSError, yaml.YAMLError) as error:
        print(f"lint_iam: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({
            "policies": count,
            "findings": [f.__dict__ for f in open_findings],
            "stale_suppressions": [s.__dict__ for s in stale],
        }, indent=2, default=str))
    else:
        for finding in open_findings:
            print(finding.line())
        for suppression in stale:
            print(f"stale suppression in {CONFIG.name}: {suppression.issue} for {suppression.policy} "
                  f"(nothing needs it any more: remove it)")
        print(f"parliament: {count} policies, {len(open_findings)} findings, {len(stale)} stale suppressions")
    return 1 if open_findings or stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
