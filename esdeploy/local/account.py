"""Local stack: the account's part of the embedded AWS that moto lacks — SageMaker's Service Quotas and IAM's simulator.

`esdeploy doctor` asks an account three things moto cannot answer: the SageMaker quotas (moto's
Service Quotas knows only vpc), `iam:SimulatePrincipalPolicy` (moto has none) and the name of the
service-linked role Application Auto Scaling uses for SageMaker (moto's CreateServiceLinkedRole
names it `..._Sagemaker`, AWS `..._SageMakerEndpoint`). These routes answer them in AWS's wire
shapes; everything else goes on to moto. The simulator evaluates the principal's policies as
moto holds them with esdeploy/iam/evaluation.py, the evaluator tests/iam applies to every call.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from esdeploy.iam.aws_checks import SAGEMAKER_SCALING_ROLE, SAGEMAKER_SCALING_SERVICE
from esdeploy.iam.evaluation import CannotEvaluateError, Request, Statement, evaluate

SERVICE_QUOTAS_TARGET = "ServiceQuotasV20190624."
SAGEMAKER = "sagemaker"
# Blue and green run side by side during a swap: two instances of the type, per model.
SIDE_BY_SIDE = 2
_IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
# Service-linked roles AWS names otherwise than moto does (service principal -> AWS's role name).
_SERVICE_LINKED_ROLES = {SAGEMAKER_SCALING_SERVICE: SAGEMAKER_SCALING_ROLE}
StartResponse = Callable[..., Any]


def endpoint_usage_quota(instance_type: str) -> str:
    """SageMaker's quota name for an instance type on real-time endpoints."""
    return f"{instance_type} for endpoint usage"


@dataclass
class _Quota:
    name: str
    applied: float | None  # None: the account has the default
    default: float


@dataclass
class SageMakerQuotas:
    """The embedded account's SageMaker quotas (by name) and the increases it asked for; change them
    to see what `esdeploy doctor` says about an account without them."""

    region: str
    account: str
    _quotas: dict[str, _Quota] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, name: str, applied: float | None, default: float = 0) -> None:
        with self._lock:
            self._quotas[name] = _Quota(name, applied, default)

    def remove(self, name: str) -> None:
        with self._lock:
            self._quotas.pop(name, None)

    def request_increase(self, name: str, desired: float, status: str = "CASE_OPENED") -> None:
        with self._lock:
            self.requests.append({"name": name, "desired": desired, "status": status})

    @staticmethod
    def code(name: str) -> str:
        return "L-" + hashlib.sha256(name.encode()).hexdigest()[:8].upper()

    def _shape(self, quota: _Quota, value: float) -> dict[str, Any]:
        return {
            "ServiceCode": SAGEMAKER, "ServiceName": "Amazon SageMaker", "QuotaCode": self.code(quota.name),
            "QuotaArn": f"arn:aws:servicequotas:{self.region}:{self.account}:{SAGEMAKER}/{self.code(quota.name)}",
            "QuotaName": quota.name, "Value": value, "Unit": "None", "Adjustable": True, "GlobalQuota": False,
        }

    def applied(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._shape(q, q.applied) for q in self._quotas.values() if q.applied is not None]

    def defaults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._shape(q, q.default) for q in self._quotas.values()]

    def requested(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{
                "Id": f"{index}", "ServiceCode": SAGEMAKER, "ServiceName": "Amazon SageMaker",
                "QuotaCode": self.code(r["name"]), "QuotaName": r["name"], "DesiredValue": r["desired"],
                "Status": r["status"], "Unit": "None", "GlobalQuota": False,
            } for index, r in enumerate(self.requests, 1)]


class AccountRoutes:
    """WSGI in front of moto for what moto lacks (see the module); `None` from `answer` means moto's."""

    def __init__(self, quotas: SageMakerQuotas) -> None:
        self.quotas = quotas

    def answer(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes] | None:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(SERVICE_QUOTAS_TARGET):
            body = _take_body(environ)
            request = json.loads(body or b"{}")
            if request.get("ServiceCode") == SAGEMAKER:
                return self._service_quotas(target[len(SERVICE_QUOTAS_TARGET):], request, start_response)
            _put_back(environ, body)
            return None
        if environ.get("REQUEST_METHOD") == "POST" and "/iam/aws4_request" in environ.get("HTTP_AUTHORIZATION", ""):
            body = _take_body(environ)
            form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
            if form.get("Action") == "SimulatePrincipalPolicy":
                return _simulate(form, start_response)
            if form.get("Action") == "CreateServiceLinkedRole" and form.get("AWSServiceName") in _SERVICE_LINKED_ROLES:
                return _create_service_linked_role(form["AWSServiceName"], start_response)
            _put_back(environ, body)
        return None

    # ---- Service Quotas (SageMaker only) -------------------------------------------------------

    def _service_quotas(self, operation: str, request: Mapping[str, Any], start_response: StartResponse) -> list[bytes]:
        quotas = self.quotas
        if operation == "ListServiceQuotas":
            return _json(start_response, {"Quotas": quotas.applied()})
        if operation == "ListAWSDefaultServiceQuotas":
            return _json(start_response, {"Quotas": quotas.defaults()})
        if operation in ("GetServiceQuota", "GetAWSDefaultServiceQuota"):
            listed = quotas.applied() if operation == "GetServiceQuota" else quotas.defaults()
            found = [q for q in listed if q["QuotaCode"] == request.get("QuotaCode")]
            if not found:
                return _json(start_response, {"__type": "NoSuchResourceException", "message": "no such quota"}, 400)
            return _json(start_response, {"Quota": found[0]})
        if operation == "ListRequestedServiceQuotaChangeHistory":
            status = request.get("Status")
            return _json(start_response, {"RequestedQuotas": [
                r for r in quotas.requested() if status is None or r["Status"] == status]})
        if operation == "ListRequestedServiceQuotaChangeHistoryByQuota":
            return _json(start_response, {"RequestedQuotas": [
                r for r in quotas.requested() if r["QuotaCode"] == request.get("QuotaCode")]})
        return _json(start_response, {"__type": "ValidationException",
                                      "message": f"the embedded AWS does not answer {operation}"}, 400)


def settle_account(session: Any, quotas: SageMakerQuotas, instance_types: Iterable[str]) -> None:
    """What a ready account has before the first deploy: Application Auto Scaling's service-linked
    role (infra/service-linked-roles.sh makes it on AWS) and room for blue and green of each
    instance type the stage allows (a quota increase on AWS; local endpoints have no quota)."""
    iam = session.client("iam")
    try:
        iam.get_role(RoleName=SAGEMAKER_SCALING_ROLE)
    except iam.exceptions.NoSuchEntityException:
        iam.create_service_linked_role(AWSServiceName=SAGEMAKER_SCALING_SERVICE)
    for instance_type in instance_types:
        quotas.set(endpoint_usage_quota(instance_type), SIDE_BY_SIDE)


# ---- IAM ---------------------------------------------------------------------------------------------


def _iam_backend(arn: str) -> Any:
    from moto.iam.models import iam_backends

    account = arn.split(":")[4]
    return iam_backends[account]["global"]


def policy_document(raw: Any) -> dict[str, Any]:
    """moto keeps a policy as JSON, or (made by its CloudFormation) as a dict or a dict's repr."""
    if isinstance(raw, dict):
        return raw
    try:
        return dict(json.loads(raw))
    except ValueError:
        return dict(ast.literal_eval(raw))


def principal_policies(arn: str) -> tuple[list[Statement], list[str]]:
    """(statements, policy names) of a role's or user's inline and attached policies, as moto holds them."""
    backend = _iam_backend(arn)
    kind, _, path_and_name = arn.split(":", 5)[5].partition("/")
    name = path_and_name.rsplit("/", 1)[-1]
    principal = backend.get_role(name) if kind == "role" else backend.get_user(name)
    statements: list[Statement] = []
    sources = []
    for policy_name, raw in principal.policies.items():
        statements += Statement.from_document(policy_name, policy_document(raw))
        sources.append(policy_name)
    for policy_arn, policy in principal.managed_policies.items():
        version = next(v for v in policy.versions if v.is_default)
        statements += Statement.from_document(policy_arn, policy_document(version.document))
        sources.append(policy_arn)
    return statements, sources


def _context(form: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    context: dict[str, tuple[str, ...]] = {}
    index = 1
    while f"ContextEntries.member.{index}.ContextKeyName" in form:
        prefix = f"ContextEntries.member.{index}"
        values = []
        value_index = 1
        while f"{prefix}.ContextKeyValues.member.{value_index}" in form:
            values.append(form[f"{prefix}.ContextKeyValues.member.{value_index}"])
            value_index += 1
        context[form[f"{prefix}.ContextKeyName"].lower()] = tuple(values)
        index += 1
    return context


def _members(form: Mapping[str, str], name: str) -> list[str]:
    found = []
    index = 1
    while f"{name}.member.{index}" in form:
        found.append(form[f"{name}.member.{index}"])
        index += 1
    return found


def _simulate(form: Mapping[str, str], start_response: StartResponse) -> list[bytes]:
    arn = form.get("PolicySourceArn", "")
    try:
        statements, sources = principal_policies(arn)
    except Exception as error:  # moto's NoSuchEntity (a role or user that is not there), a malformed ARN
        return _iam_error(start_response, "NoSuchEntity", f"the principal {arn} does not exist ({error})", 404)
    context = _context(form)
    results = []
    try:
        for action in _members(form, "ActionNames"):
            for resource in _members(form, "ResourceArns") or ["*"]:
                decision = evaluate(statements, Request(action, resource, context), sources)
                verdict = "explicitDeny" if decision.denied_by else "allowed" if decision.allowed else "implicitDeny"
                matched = decision.denied_by or decision.allowed_by
                statements_xml = "".join(
                    f"<member><SourcePolicyId>{escape(s.where.split('#')[0])}</SourcePolicyId>"
                    "<SourcePolicyType>IAM Policy</SourcePolicyType></member>" for s in matched)
                results.append(
                    f"<member><EvalActionName>{escape(action)}</EvalActionName>"
                    f"<EvalResourceName>{escape(resource)}</EvalResourceName>"
                    f"<EvalDecision>{verdict}</EvalDecision>"
                    f"<MatchedStatements>{statements_xml}</MatchedStatements>"
                    "<MissingContextValues/></member>")
    except CannotEvaluateError as error:
        return _iam_error(start_response, "InvalidInput", f"the embedded AWS cannot simulate this: {error}", 400)
    body = (
        f'<SimulatePrincipalPolicyResponse xmlns="{_IAM_NAMESPACE}"><SimulatePrincipalPolicyResult>'
        f"<IsTruncated>false</IsTruncated><EvaluationResults>{''.join(results)}</EvaluationResults>"
        "</SimulatePrincipalPolicyResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</SimulatePrincipalPolicyResponse>"
    )
    return _xml(start_response, body)


def _create_service_linked_role(service: str, start_response: StartResponse) -> list[bytes]:
    """AWS's name for the role, where moto would make another one."""
    from moto.core import DEFAULT_ACCOUNT_ID

    backend = _iam_backend(f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/x")
    name = _SERVICE_LINKED_ROLES[service]
    if any(role.name == name for role in backend.roles.values()):
        return _iam_error(start_response, "InvalidInput", f"Service role name {name} has been taken in this account, "
                          "please try a different suffix.", 400)
    trust = {"Version": "2012-10-17", "Statement": [
        {"Action": ["sts:AssumeRole"], "Effect": "Allow", "Principal": {"Service": [service]}}]}
    role = backend.create_role(name, json.dumps(trust), f"/aws-service-role/{service}/", permissions_boundary=None,
                               description="", tags=[], max_session_duration="3600", linked_service=service)
    body = (
        f'<CreateServiceLinkedRoleResponse xmlns="{_IAM_NAMESPACE}"><CreateServiceLinkedRoleResult><Role>'
        f"<Path>{escape(role.path)}</Path><RoleName>{escape(role.name)}</RoleName><RoleId>{role.id}</RoleId>"
        f"<Arn>{escape(role.arn)}</Arn><CreateDate>{role.create_date.strftime('%Y-%m-%dT%H:%M:%SZ')}</CreateDate>"
        "</Role></CreateServiceLinkedRoleResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></CreateServiceLinkedRoleResponse>"
    )
    return _xml(start_response, body)


# ---- the wire ---------------------------------------------------------------------------------------


def _take_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(environ["wsgi.input"].read(length)) if length else b""


def _put_back(environ: dict[str, Any], body: bytes) -> None:
    """The request goes on to moto, which reads the body again."""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _json(start_response: StartResponse, body: Mapping[str, Any], status: int = 200) -> list[bytes]:
    raw = json.dumps(body).encode("utf-8")
    start_response("200 OK" if status == 200 else "400 Bad Request",
                   [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(raw)))])
    return [raw]


def _xml(start_response: StartResponse, body: str, status: str = "200 OK") -> list[bytes]:
    raw = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(raw)))])
    return [raw]


def _iam_error(start_response: StartResponse, code: str, message: str, status: int) -> list[bytes]:
    body = (f'<ErrorResponse xmlns="{_IAM_NAMESPACE}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
    return _xml(start_response, body, "404 Not Found" if status == 404 else "400 Bad Request")
