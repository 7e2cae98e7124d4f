"""Test support: the policy documents we ship, per principal, resolved for one test stack.

A Lambda function's policy is the file `.chalice/config.json` names for it
(`lambda_functions.<name>.iam_policy_file`, else the top-level `iam_policy_file`); Chalice copies
it into the function's role verbatim (tests/infra checks the packaged roles carry exactly these).
The SageMaker execution role's policy is inline in infra/template.yaml. Their CloudFormation
references are resolved with the names the app under test was configured with, so a policy that
names another table, queue, bucket or prefix than the app uses denies the call.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from esdeploy.iam.code_calls import ECR_IMAGE, StageNames, logical_id
from esdeploy.iam.evaluation import CannotEvaluateError, Statement
from tests.infra.infra_support import load_cfn

ROOT = Path(__file__).resolve().parents[2]
CHALICE_DIR = ROOT / ".chalice"
TEMPLATE = ROOT / "infra" / "template.yaml"
EXECUTION_ROLE = "SageMakerExecutionRole"
# The account of AWS's text-embeddings-inference images in us-east-1 (sagemaker-core's huggingface-tei table).
TEI_IMAGE_ACCOUNT = "683313688378"


@dataclass(frozen=True)
class StackValues:
    """What CloudFormation would substitute into the policies, for the stack the test mimics."""

    region: str
    account: str
    stage: str
    resource_prefix: str
    artifact_bucket: str
    artifact_prefix: str  # without the trailing slash, as infra/finalize.py pins it
    ssm_prefix: str
    sagemaker_role_arn: str
    default_image_uri: str

    @classmethod
    def from_settings(cls, settings: Any, region: str, account: str) -> StackValues:
        return cls(
            region=region,
            account=account,
            stage=settings.stage,
            resource_prefix=settings.resource_prefix,
            artifact_bucket=settings.artifact_bucket,
            artifact_prefix=settings.artifact_prefix.strip("/"),
            ssm_prefix="/" + settings.ssm_prefix.strip("/"),
            sagemaker_role_arn=settings.sagemaker_role_arn,
            default_image_uri=settings.default_image_uri,
        )

    def variables(self) -> dict[str, str]:
        image = ECR_IMAGE.match(self.default_image_uri)
        found = {
            "AWS::Partition": "aws",
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "Stage": self.stage,
            "ResourcePrefix": self.resource_prefix,
            "ArtifactPrefix": self.artifact_prefix,
            "SsmPrefix": self.ssm_prefix,
            "ArtifactBucket": self.artifact_bucket,
            "ArtifactBucket.Arn": f"arn:aws:s3:::{self.artifact_bucket}",
            f"{EXECUTION_ROLE}.Arn": self.sagemaker_role_arn,
        }
        if image:
            found["ServingImageAccount"] = image["account"]
            found["ServingImageRepository"] = image["repo"]
        found["TeiImageAccount"] = TEI_IMAGE_ACCOUNT
        return found


def resolve(node: Any, variables: Mapping[str, str], where: str) -> Any:
    """Resolve Fn::Sub / Ref / Fn::GetAtt; anything else CloudFormation-ish is refused."""
    if isinstance(node, list):
        return [resolve(item, variables, where) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"]
        if not isinstance(text, str):
            raise CannotEvaluateError(f"{where}: Fn::Sub with a variable map is not supported here")

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name not in variables:
                raise CannotEvaluateError(f"{where}: ${{{name}}} is not a value tests/iam/policies.py knows")
            return variables[name]

        return re.sub(r"\$\{([^}]+)\}", one, text)
    if set(node) == {"Ref"}:
        return resolve({"Fn::Sub": "${" + node["Ref"] + "}"}, variables, where)
    if set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        name = ".".join(target) if isinstance(target, list) else target
        return resolve({"Fn::Sub": "${" + name + "}"}, variables, where)
    if any(key.startswith("Fn::") for key in node):
        raise CannotEvaluateError(f"{where}: {sorted(node)} is not supported in a policy here")
    return {key: resolve(value, variables, where) for key, value in node.items()}


@lru_cache(maxsize=1)
def chalice_config() -> dict[str, Any]:
    return json.loads((CHALICE_DIR / "config.json").read_text())


def function_names() -> list[str]:
    return sorted(chalice_config().get("lambda_functions", {}))


def policy_file(function: str) -> Path:
    config = chalice_config()
    name = config.get("lambda_functions", {}).get(function, {}).get("iam_policy_file") or config.get("iam_policy_file")
    if not name:
        raise CannotEvaluateError(f"{function} has no iam_policy_file in .chalice/config.json")
    return (CHALICE_DIR / name).resolve()


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))




def template_functions() -> list[str]:
    """Functions infra/template.yaml defines itself (not Chalice), by snake-case name."""
    resources = load_cfn(TEMPLATE)["Resources"]
    return sorted(re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
                  for name, res in resources.items() if res.get("Type") == "AWS::Lambda::Function")


@lru_cache(maxsize=64)
def function_policy(function: str, values: StackValues) -> tuple[tuple[Statement, ...], tuple[str, ...]]:
    """(statements, their sources) of the role `function` runs with: the file Chalice copies into
    its role, or the inline policies of the role infra/template.yaml gives a function of its own."""
    if function not in chalice_config().get("lambda_functions", {}):
        resources = load_cfn(TEMPLATE)["Resources"]
        function_resource = resources.get(logical_id(function), {})
        if function_resource.get("Type") != "AWS::Lambda::Function":
            raise CannotEvaluateError(f"{function} is neither in .chalice/config.json nor in infra/template.yaml")
        return role_policy(function_resource["Properties"]["Role"]["Fn::GetAtt"][0], values)
    path = policy_file(function)
    where = _relative(path)
    document = resolve(json.loads(path.read_text()), values.variables(), where)
    return tuple(Statement.from_document(where, document)), (where,)


@lru_cache(maxsize=16)
def role_policy(role: str, values: StackValues) -> tuple[tuple[Statement, ...], tuple[str, ...]]:
    """(statements, sources) of the inline policies of a role in infra/template.yaml."""
    props = load_cfn(TEMPLATE)["Resources"][role]["Properties"]
    statements: list[Statement] = []
    sources = []
    for policy in props.get("Policies", []):
        where = f"infra/template.yaml:{role}/{policy['PolicyName']}"
        document = resolve(policy["PolicyDocument"], values.variables(), where)
        statements += Statement.from_document(where, document)
        sources.append(where)
    if props.get("ManagedPolicyArns"):
        raise CannotEvaluateError(f"{role} has managed policies, which tests/iam cannot read")
    return tuple(statements), tuple(sources)


def execution_role_policy(values: StackValues) -> tuple[tuple[Statement, ...], tuple[str, ...]]:
    """(statements, sources) of the role SageMaker assumes to run our endpoints."""
    return role_policy(EXECUTION_ROLE, values)


# Queues of the stage as the stack outputs name them (doctor reads them there), by logical id.
QUEUES = ("RequestsQueue", "DeployTasksQueue", "TeardownTasksQueue")
DEAD_LETTER_QUEUES = ("RequestsDeadLetterQueue", "DeployTasksDeadLetterQueue", "TeardownTasksDeadLetterQueue")


def stage_names(settings: Any, region: str, account: str) -> StageNames:
    """The test stage's names, in the form `esdeploy doctor` reads a deployed stage's (esdeploy/iam/code_calls.py)."""
    values = StackValues.from_settings(settings, region, account)
    resources = load_cfn(TEMPLATE)["Resources"]
    queues = dict(zip(QUEUES, (settings.requests_queue, settings.deploy_queue, settings.teardown_queue), strict=True))
    for logical in DEAD_LETTER_QUEUES:
        queues[logical] = str(resolve(resources[logical]["Properties"]["QueueName"], values.variables(), logical))
    return StageNames(
        partition="aws", region=region, account=account, stage=settings.stage,
        resource_prefix=settings.resource_prefix, tasks_table=settings.tasks_table, models_table=settings.models_table,
        queues=queues, artifact_bucket=settings.artifact_bucket, artifact_prefix=values.artifact_prefix,
        ssm_prefix=values.ssm_prefix, execution_role_arn=settings.sagemaker_role_arn,
        image_uri=settings.default_image_uri or "",
    )
