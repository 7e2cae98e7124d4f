"""Local stack: the embedded AWS — moto, keeping DynamoDB's atomic writes, with infra/template.yaml's resources.

The local stack and the in-process test fixtures both build their AWS from here, so what they run
on is what AWS runs: the tables, queues (with their dead-letter queues and redrive) and bucket are
created by moto's CloudFormation from the very resource definitions `infra/template.yaml` deploys
(no second copy to drift), DynamoDB evaluates a condition and writes as one step, and SQS refuses
a message over its queue's size or with a character it does not take (strict_sqs.py).

With `functions=True` (the local stack) the stack also holds what `esdeploy doctor` reads of a
deployed one: the template's roles, functions, log groups and SSM parameters, the stack's outputs,
and a role and a function for each Chalice function, the role carrying the function's policy file
(`.chalice/config.json`'s `iam_policy_file`) as the packaged stack's does. The functions only hold
their configuration: `esdeploy local` runs their handlers in-process.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from esdeploy.local.strict_sqs import keep_sqs_strict

# The local stack serves app.py from this checkout, so infra/ is beside it (as .chalice/ is).
TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"
# What the app needs of the template; the rest (roles, rules, alarms, functions) is AWS's part.
NAME_PROPERTY: Mapping[str, str] = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::S3::Bucket": "BucketName",
}
# The account's part of a stack (functions=True): what doctor reads, beside what the app uses.
ACCOUNT_PART = ("AWS::IAM::Role", "AWS::Lambda::Function", "AWS::Logs::LogGroup", "AWS::SSM::Parameter")
# The template patches every function's environment with references to its resources; the API
# function's copy says which resource each setting names.
_FUNCTION_ENVIRONMENT = ("Resources", "APIHandler", "Properties", "Environment", "Variables")
_PSEUDO_PARAMETER = "AWS::"
_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
_CONFIGURATION_ONLY = (
    "# esdeploy local runs this function's handler in-process; this one only holds its configuration.\n"
    "def handler(event, context):\n    raise NotImplementedError('esdeploy local runs app.py itself')\n"
)


class TemplateError(Exception):
    """infra/template.yaml cannot give the embedded AWS what the app needs."""


@dataclass(frozen=True)
class QueueUrls:
    requests: str
    deploy: str
    teardown: str
    dead_letters: dict[str, str]  # queue name -> the URL of its dead-letter queue (from its redrive policy)

    def url_of(self, queue_name: str) -> str:
        """The URL of one of these queues, by name (an SQS queue URL ends with its name)."""
        for url in (self.requests, self.deploy, self.teardown, *self.dead_letters.values()):
            if url.rsplit("/", 1)[-1] == queue_name:
                return url
        raise KeyError(f"no queue named {queue_name!r} here: is app.py's event source named by another stage?")


# ---- DynamoDB's guarantee ---------------------------------------------------------------------

_dynamodb_requests = threading.RLock()


def keep_dynamodb_atomic() -> None:
    """Serialise moto's DynamoDB request handling in this process, one whole request at a time.

    DynamoDB evaluates a ConditionExpression and writes in one step; moto's backend takes no lock,
    so two concurrent conditional writes on one item can both pass (16 racing POST /deploy for one
    model got two or three winners). Both the embedded server and `mock_aws()` dispatch every
    DynamoDB request through `DynamoHandler.call_action`, so one lock there gives both the
    guarantee. Idempotent; stays for the life of the process, as the guarantee should.
    """
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "_esdeploy_atomic", False):
        return

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _dynamodb_requests:
            return original(self)

    call_action._esdeploy_atomic = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def read_json_templates_directly() -> None:
    """moto's CloudFormation reads a JSON template body as JSON instead of through PyYAML's pure-Python loader.

    We hand moto the template as JSON (create_resources); PyYAML took 0.13 s of each stack to read it back,
    which the test suite pays for every test's stack. JSON is YAML, so what moto gets is the same dict;
    a body that is not JSON still goes to moto's own reader. Idempotent.
    """
    from moto.cloudformation.models import Stack

    original = Stack.parse_template
    if getattr(original, "_esdeploy_json_first", False):
        return

    def parse_template(template: str) -> dict[str, Any]:
        try:
            parsed = json.loads(template)
        except ValueError:
            return original(template)
        return parsed if isinstance(parsed, dict) else original(template)

    parse_template._esdeploy_json_first = True  # type: ignore[attr-defined]
    Stack.parse_template = staticmethod(parse_template)  # type: ignore[method-assign]


# ---- the template's resources -----------------------------------------------------------------


@functools.cache
def _infra_module(name: str) -> ModuleType:
    """A module of infra/ (beside the template): cfn_yaml.py, the one CloudFormation reader (lint_iam.py's
    too), and finalize.py, which pins a stage's parameters from its functions' environment."""
    spec = importlib.util.spec_from_file_location(f"esdeploy_infra_{name}", TEMPLATE.parent / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cfn_yaml() -> ModuleType:
    return _infra_module("cfn_yaml")


def load_cfn(path: Path) -> dict[str, Any]:
    """A CloudFormation YAML template as plain data (short tags in their long form): a copy of its
    own for each caller, parsed once per version of the file (each test's embedded AWS reads it)."""
    stat = path.stat()
    return copy.deepcopy(_parsed_cfn(path.resolve(), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parsed_cfn(path: Path, _mtime_ns: int, _size: int) -> dict[str, Any]:
    loaded = _cfn_yaml().load(path)
    if not isinstance(loaded, dict):
        raise TemplateError(f"{path} is not a CloudFormation template")
    return loaded


def references(node: Any) -> set[str]:
    """Logical ids, parameters and conditions that `node` refers to (Ref, GetAtt, ${X} in Sub, If, DependsOn)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("Ref", "Condition") and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else str(value).split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                found |= {v.split(".")[0] for v in _sub_variables(text)} - set(variables)
                found |= references(variables)
            elif key == "Fn::If" and isinstance(value, list) and value:
                found.add(str(value[0]))
                found |= references(value[1:])
            elif key == "DependsOn":
                found |= {value} if isinstance(value, str) else set(value)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


def _sub_variables(text: str) -> list[str]:
    return _SUB_VARIABLE.findall(text)


def resolve_sub(text: str, values: Mapping[str, str], where: str) -> str:
    """An `Fn::Sub` string with each `${Name}` replaced by `values[Name]`; TemplateError naming
    `where` for a name without a value."""

    def value(found: re.Match[str]) -> str:
        if found.group(1) not in values:
            raise TemplateError(f"{where} uses ${{{found.group(1)}}}, which the embedded AWS has no value for")
        return values[found.group(1)]

    return _SUB_VARIABLE.sub(value, text)


def resource_names(template: Mapping[str, Any], environment: Mapping[str, str]) -> dict[str, str]:
    """Logical id -> the name the stage's settings give it, read through the template's own
    function-environment patch (`ESDEPLOY_TASKS_TABLE: !Ref TasksTable`, ...): the same mapping
    that points the Lambdas at these resources on AWS points the embedded stack at them here."""
    variables: Any = template
    for key in _FUNCTION_ENVIRONMENT:
        variables = variables.get(key, {}) if isinstance(variables, dict) else {}
    names: dict[str, str] = {}
    for setting, reference in variables.items():
        targets = references(reference)
        if len(targets) == 1 and setting in environment:
            names[next(iter(targets))] = environment[setting]
    return names


def _chalice_functions(environment: Mapping[str, str], template: Mapping[str, Any]) -> dict[str, Any]:
    """A role (with the function's policy file) and a function (with the stage's environment and the
    template's patch of it) per function of .chalice/config.json, named as the packaged stack names them."""
    from esdeploy.iam.code_calls import logical_id
    from esdeploy.local.environment import CHALICE_CONFIG

    config = json.loads(CHALICE_CONFIG.read_text())
    variables = {k: v for k, v in environment.items() if k.startswith(("ESDEPLOY_", "POWERTOOLS_"))}
    found: dict[str, Any] = {}
    for function, settings in config.get("lambda_functions", {}).items():
        logical = logical_id(function)
        policy = json.loads((CHALICE_CONFIG.parent / settings["iam_policy_file"]).resolve().read_text())
        found[f"{logical}Role"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": _LAMBDA_TRUST,
                "Policies": [{"PolicyName": f"{logical}RolePolicy", "PolicyDocument": policy}],
            },
        }
        patch = template.get("Resources", {}).get(logical, {}).get("Properties", {})
        found[logical] = {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": f"esdeploy-{environment['ESDEPLOY_STAGE']}-{function.replace('_', '-')}",
                "Runtime": "python3.11",
                "Handler": "index.handler",
                "Role": {"Fn::GetAtt": [f"{logical}Role", "Arn"]},
                "Timeout": settings.get("lambda_timeout", 60),
                "MemorySize": settings.get("lambda_memory_size", 128),
                "Code": {"ZipFile": _CONFIGURATION_ONLY},
                "Environment": {
                    "Variables": {**variables, **patch.get("Environment", {}).get("Variables", {})}
                },
            },
        }
    return found


def _name_of(resource_type: str, name: str) -> str:
    """The name property's value for a setting's value (a role's setting is its ARN)."""
    return name.rsplit("/", 1)[-1] if resource_type == "AWS::IAM::Role" else name


def embedded_template(
    environment: Mapping[str, str], template_path: Path = TEMPLATE, *, functions: bool = False,
    outputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The plain-CloudFormation part of the template the app needs (tables, queues, bucket), for
    the stage `environment` describes: its Stage parameter, and its names for what the functions use.
    `functions`: the account's part too (roles, functions, log groups, SSM parameters, the outputs
    they make) with the stage's pinned parameters; `outputs`: more outputs (e.g. the API's URL)."""
    template = load_cfn(template_path)
    resources = template.get("Resources", {})
    chosen = {
        logical: json.loads(json.dumps(resource))  # a deep copy: names are set below
        for logical, resource in resources.items()
        if resource.get("Type") in NAME_PROPERTY
    }
    if not chosen:
        raise TemplateError(f"{template_path} defines none of {', '.join(NAME_PROPERTY)}")
    optional: dict[str, Any] = {}
    if functions:
        optional = {logical: json.loads(json.dumps(resource)) for logical, resource in resources.items()
                    if resource.get("Type") in ACCOUNT_PART}
        optional.update(_chalice_functions(environment, template))
    names_by_type = {**NAME_PROPERTY, "AWS::IAM::Role": "RoleName"}
    for logical, name in resource_names(template, environment).items():
        for found in (chosen, optional):
            if logical in found and found[logical]["Type"] in names_by_type:
                kind = found[logical]["Type"]
                found[logical].setdefault("Properties", {})[names_by_type[kind]] = _name_of(kind, name)
    conditions = template.get("Conditions", {})
    parameters = template.get("Parameters", {})
    known = set(chosen) | set(optional) | set(conditions) | set(parameters)
    # The account's part that needs what only Chalice makes (the REST API, its URL) is left out.
    while missing := [logical for logical, resource in optional.items()
                      if {r for r in references(resource) - known if not r.startswith(_PSEUDO_PARAMETER)}]:
        for logical in missing:
            del optional[logical]
            known.discard(logical)
    chosen.update(optional)
    used = references(chosen)
    used_conditions = {c: conditions[c] for c in sorted(used & set(conditions))}
    used |= references(used_conditions)
    outside = used - set(chosen) - set(conditions) - set(parameters)
    unknown = sorted(name for name in outside if not name.startswith(_PSEUDO_PARAMETER))
    if unknown:
        raise TemplateError(
            f"the tables, queues and bucket of {template_path} refer to {', '.join(unknown)}, "
            "which the embedded AWS does not create"
        )
    given = set(stage_parameters(environment, functions))
    kept_parameters: dict[str, Any] = {}
    for name in sorted(used & set(parameters)):
        parameter = {k: v for k, v in parameters[name].items() if k not in ("AllowedValues", "AllowedPattern")}
        if name not in given and "Default" not in parameter:
            raise TemplateError(f"parameter {name} of {template_path} has no default for the embedded AWS")
        kept_parameters[name] = parameter
    body: dict[str, Any] = {
        "AWSTemplateFormatVersion": template.get("AWSTemplateFormatVersion", "2010-09-09"),
        "Description": f"esdeploy {environment.get('ESDEPLOY_STAGE', '')} - embedded AWS (from {template_path.name})",
        "Parameters": kept_parameters,
        "Conditions": used_conditions,
        "Resources": chosen,
    }
    if functions or outputs:
        available = set(chosen) | set(kept_parameters) | set(used_conditions)
        body["Outputs"] = {
            name: output for name, output in template.get("Outputs", {}).items()
            if all(r in available or r.startswith(_PSEUDO_PARAMETER) for r in references(output))
        } if functions else {}
        body["Outputs"].update({name: {"Value": value} for name, value in (outputs or {}).items()})
    return body


def stage_parameters(environment: Mapping[str, str], functions: bool = False) -> dict[str, str]:
    """The stack parameters of the stage: its Stage, and with the account's part the values
    infra/finalize.py pins from the functions' environment (prefixes, the serving image)."""
    stage = environment.get("ESDEPLOY_STAGE", "")
    if not functions:
        return {"Stage": stage}
    return {str(k): str(v) for k, v in _infra_module("finalize").pinned_parameters(dict(environment)).items()}


def create_resources(
    session: Any, environment: Mapping[str, str], template_path: Path = TEMPLATE, *, functions: bool = False,
    outputs: Mapping[str, str] | None = None,
) -> QueueUrls:
    """Create the stage's tables, queues and bucket with moto's CloudFormation; the queues' URLs.

    `session` is a boto3 session against moto (in-process `mock_aws()` or the embedded server);
    `environment` is the functions' environment (ESDEPLOY_STAGE and the resource names);
    `functions` and `outputs`: see embedded_template. From here on this process's SQS refuses what
    SQS refuses (strict_sqs: message size and characters).
    """
    keep_sqs_strict()
    read_json_templates_directly()
    stage = environment.get("ESDEPLOY_STAGE", "")
    if not stage:
        raise TemplateError("ESDEPLOY_STAGE is not set: the template's resources are named by stage")
    body = embedded_template(environment, template_path, functions=functions, outputs=outputs)
    cloudformation = session.client("cloudformation")
    stack = f"esdeploy-{stage}"
    parameters = [{"ParameterKey": name, "ParameterValue": value}
                  for name, value in stage_parameters(environment, functions).items() if name in body["Parameters"]]
    cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps(body), Parameters=parameters)
    (created,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    if created["StackStatus"] != "CREATE_COMPLETE":
        raise TemplateError(
            f"the embedded stack {stack} is {created['StackStatus']}: {created.get('StackStatusReason')}"
        )
    _what_moto_skips(session, cloudformation.describe_stack_resources(StackName=stack)["StackResources"], body)
    return _queue_urls(session.client("sqs"), environment)


def _what_moto_skips(session: Any, created: list[dict[str, Any]], body: Mapping[str, Any]) -> None:
    """Apply the template's properties that moto's CloudFormation does not (a table's TTL), from
    the template as well: the app reads them back (describe_time_to_live) and must find them."""
    dynamodb = session.client("dynamodb")
    for resource in created:
        props = body["Resources"].get(resource["LogicalResourceId"], {}).get("Properties", {})
        ttl = props.get("TimeToLiveSpecification")
        if resource["ResourceType"] == "AWS::DynamoDB::Table" and ttl:
            dynamodb.update_time_to_live(
                TableName=resource["PhysicalResourceId"],
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
            )


def _queue_urls(sqs: Any, environment: Mapping[str, str]) -> QueueUrls:
    def url(name: str) -> str:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])

    names = {
        kind: environment[setting]
        for kind, setting in (
            ("requests", "ESDEPLOY_REQUESTS_QUEUE"),
            ("deploy", "ESDEPLOY_DEPLOY_QUEUE"),
            ("teardown", "ESDEPLOY_TEARDOWN_QUEUE"),
        )
    }
    urls = {kind: url(name) for kind, name in names.items()}
    dead_letters: dict[str, str] = {}
    for kind, name in names.items():
        attributes = sqs.get_queue_attributes(QueueUrl=urls[kind], AttributeNames=["RedrivePolicy"])["Attributes"]
        target = json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"]
        dead_letters[name] = url(target.rsplit(":", 1)[-1])
    return QueueUrls(
        requests=urls["requests"], deploy=urls["deploy"], teardown=urls["teardown"], dead_letters=dead_letters
    )
