"""Hand-written IAM stays narrow: `*` resources only for the documented actions.

The policy files and infra/template.yaml are checked as written (no app.py needed), and the
packaged templates again, so a policy Chalice would add (autogen) is caught too.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pytest
from infra_support import (
    INFRA,
    STAGES,
    as_list,
    aws_check_wildcards,
    load_cfn,
    policy_documents,
    wildcard_allowlist,
)

from esdeploy.iam.code_calls import logical_id

POLICY_FILES = sorted((INFRA / "iam").glob("*.json"))


def wildcard_scope(arn: str) -> bool:
    """An ARN written by us names region and account through pseudo parameters, never `*`."""
    parts = arn.split(":")
    return arn.startswith("arn:") and len(parts) > 4 and ("*" in parts[3] or "*" in parts[4])


def written_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = [(f"infra/iam/{path.name}", json.loads(path.read_text())) for path in POLICY_FILES]
    template = {"Resources": load_cfn(INFRA / "template.yaml")["Resources"]}
    return documents + list(policy_documents(template))


def problems(documents: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    allowed = {**wildcard_allowlist(), **aws_check_wildcards()}
    found = []
    for where, document in documents:
        for statement in as_list(document["Statement"]):
            label = f"{where}:{statement.get('Sid', '?')}"
            if "NotAction" in statement or "NotResource" in statement:
                found.append(f"{label}: NotAction/NotResource")
            if statement["Effect"] != "Allow":
                continue
            actions = as_list(statement["Action"])
            resources = as_list(statement["Resource"])
            found += [f"{label}: wildcard action {a}" for a in actions if "*" in a]
            if "*" in resources:
                found += [f"{label}: {a} on Resource '*'" for a in actions if a not in allowed]
            for resource in resources:
                text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
                if isinstance(text, str) and wildcard_scope(text):
                    found.append(f"{label}: {text} has a wildcard region or account")
    return found


def test_policy_files_exist_and_are_referenced_by_chalice_config() -> None:
    config = (INFRA.parent / ".chalice" / "config.json").read_text()
    assert POLICY_FILES
    for path in POLICY_FILES:
        assert f"../infra/iam/{path.name}" in config, path.name


def test_written_policies_use_star_only_for_documented_actions() -> None:
    assert problems(written_documents()) == []


def test_the_allowlist_is_short_and_explained() -> None:
    allowed = wildcard_allowlist()
    assert 0 < len(allowed) <= 8
    assert all(len(reason) >= 20 for reason in allowed.values()), allowed


def test_star_beyond_the_allowlist_is_only_what_aws_itself_requires_on_star() -> None:
    """Application Auto Scaling's validation of its caller and composite alarms need "*" (documented,
    esdeploy/iam/aws_checks.py): those grants are the deploy worker's alone, each with its source."""
    required = aws_check_wildcards()
    assert required and all("https://docs.aws.amazon.com/" in reason for reason in required.values())
    granted = {
        (where.split("#")[0], action)
        for where, document in written_documents()
        for statement in as_list(document["Statement"])
        if statement["Effect"] == "Allow" and statement.get("Resource") == "*"
        for action in as_list(statement["Action"])
        if action in required and action not in wildcard_allowlist()
    }
    assert granted == {("infra/iam/deploy-worker.json", action) for action in required}


def test_pass_role_only_for_the_execution_role_and_only_to_sagemaker() -> None:
    seen = 0
    for where, document in written_documents():
        for statement in as_list(document["Statement"]):
            if "iam:PassRole" not in as_list(statement.get("Action", [])):
                continue
            seen += 1
            assert as_list(statement["Action"]) == ["iam:PassRole"], where
            assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}, where
            assert statement["Condition"] == {
                "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
            }, where
    assert seen == 1, "exactly the deploy worker's policy may pass the execution role"


def test_sagemaker_actions_are_limited_to_our_prefix() -> None:
    allowed = {**wildcard_allowlist(), **aws_check_wildcards()}
    for where, document in written_documents():
        for statement in as_list(document["Statement"]):
            actions = [a for a in as_list(statement.get("Action", [])) if a.startswith("sagemaker:")]
            if not actions or set(actions) <= set(allowed):
                continue
            for resource in as_list(statement["Resource"]):
                arn = resource["Fn::Sub"]
                assert re.search(r":(model|endpoint-config|endpoint)/\$\{ResourcePrefix\}-\*$", arn), (where, arn)


@pytest.mark.parametrize("stage", STAGES)
def test_packaged_policies_use_star_only_for_documented_actions(packaged: Any, stage: str) -> None:
    _, template = packaged(stage)
    documents = list(policy_documents(template))
    roles = {name for name, res in template["Resources"].items() if res["Type"] == "AWS::IAM::Role"}
    # one role per function (autogen_policy false) plus the SageMaker execution role
    assert "DefaultRole" not in roles and "SageMakerExecutionRole" in roles
    assert problems(documents) == []


@pytest.mark.parametrize("stage", STAGES)
def test_each_packaged_function_role_carries_exactly_its_policy_file(packaged: Any, stage: str) -> None:
    """tests/iam evaluates the files; this proves the stack ships those files and nothing more."""
    _, template = packaged(stage)
    resources = template["Resources"]
    config = json.loads((INFRA.parent / ".chalice" / "config.json").read_text())
    attached = [r for r in resources.values() if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")]
    assert attached == [], "a policy attached beside the function roles escapes tests/iam"
    roles = set()
    for logical, function in resources.items():
        if function["Type"] != "AWS::Serverless::Function":
            continue
        handler = function["Properties"]["Handler"].split(".", 1)[1]
        name = "api_handler" if handler == "app" else handler
        assert logical == logical_id(name), "esdeploy doctor finds each function by this logical id"
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        roles.add(role)
        props = resources[role]["Properties"]
        assert "ManagedPolicyArns" not in props, logical
        (policy,) = props["Policies"]
        written = (INFRA.parent / ".chalice" / config["lambda_functions"][name]["iam_policy_file"]).resolve()
        assert policy["PolicyDocument"] == json.loads(written.read_text()), logical
    assert len(roles) == 7, "each function has a role of its own"
