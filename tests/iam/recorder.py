"""Test support: records every AWS call an app.py handler makes and evaluates it against our IAM.

Installed for every test by tests/conftest.py. It wraps botocore's `BaseClient._make_api_call`
(every boto3 client and resource call goes through it), works out which Lambda function is
running (an HTTP route -> `api_handler`, an SQS or schedule handler -> its own name), looks up
what the call needs (the resource's tags at that moment, whether an S3 object exists) with
unrecorded calls, and evaluates each authorization with esdeploy/iam/evaluation.py. A denied call
fails as AWS would fail it (AccessDenied; S3's 403 for a missing object) and the test fails with
the call and the statements considered. Calls made by test code (no handler on the stack) are
not the product's: they are neither evaluated nor recorded.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from esdeploy.iam.evaluation import CannotEvaluateError, Decision, evaluate
from tests.iam.calls import UNKNOWN, ApiCall, Authorization, Unknown, authorizations
from tests.iam.policies import ROOT, StackValues, execution_role_policy, function_policy

APP_FILE = str(ROOT / "app.py")
# Set by a test that drives a service the way one function would, without going through app.py.
running_function: ContextVar[str | None] = ContextVar("running_function", default=None)
_looking_up: ContextVar[bool] = ContextVar("iam_looking_up", default=False)


@lru_cache(maxsize=2048)
def _is_app_file(filename: str) -> bool:
    return os.path.realpath(filename) == APP_FILE


def _handler_names() -> tuple[frozenset[str], frozenset[str]]:
    """(route view names, other handler names) of the app.py that is imported now."""
    module = sys.modules.get("app")
    app = getattr(module, "app", None)
    if app is None:
        return frozenset(), frozenset()
    routes = frozenset(entry.view_name for methods in app.routes.values() for entry in methods.values())
    return routes, frozenset(app.handler_map) - routes


def current_function() -> str | None:
    """The Lambda function whose handler is on this thread's stack, if any."""
    explicit = running_function.get()
    if explicit:
        return explicit
    routes, handlers = _handler_names()
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if _is_app_file(code.co_filename):
            if code.co_name in handlers:
                return code.co_name
            if code.co_name in routes:
                return "api_handler"
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _settings() -> Any:
    wiring = sys.modules.get("chalicelib.wiring")
    if wiring is None:
        raise CannotEvaluateError("a handler made an AWS call before chalicelib.wiring was imported")
    return wiring.adapters().settings


@dataclass
class Evaluated:
    call: ApiCall
    decisions: list[tuple[Authorization, Decision]] = field(default_factory=list)
    problem: str | None = None  # set when the call could not be evaluated

    @property
    def denied(self) -> list[tuple[Authorization, Decision]]:
        return [(a, d) for a, d in self.decisions if not d.allowed]

    def report(self) -> str:
        if self.problem:
            return f"{self.call.describe()}: cannot evaluate: {self.problem}"
        lines = [f"{self.call.describe()} {dict(self.call.params) if len(str(self.call.params)) < 300 else ''}"]
        for authorization, decision in self.denied:
            lines.append(f"  [{authorization.principal}] {decision.explain()}")
        return "\n".join(lines)


class _Facts:
    """Resource facts read through unrecorded boto3 clients (moto in the tests)."""

    _DESCRIBE = {
        "model": ("describe_model", "ModelName"),
        "endpoint-config": ("describe_endpoint_config", "EndpointConfigName"),
        "endpoint": ("describe_endpoint", "EndpointName"),
    }

    def __init__(self, region: str) -> None:
        self._region = region
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            # the default session: its loader has the service models parsed already
            self._clients[service] = boto3.client(service, region_name=self._region)
        return self._clients[service]

    def tags(self, service: str, resource_type: str, arn: str) -> dict[str, str] | Unknown | None:
        if service != "sagemaker" or resource_type not in self._DESCRIBE:
            return UNKNOWN
        client = self._client("sagemaker")
        method, parameter = self._DESCRIBE[resource_type]
        try:
            getattr(client, method)(**{parameter: arn.rsplit("/", 1)[1]})
        except ClientError:
            return None
        tags = client.list_tags(ResourceArn=arn).get("Tags", [])
        return {t["Key"]: t["Value"] for t in tags}

    def exists(self, service: str, resource_type: str, arn: str) -> bool | Unknown:
        if service == "iam" and resource_type == "role":
            try:
                self._client("iam").get_role(RoleName=arn.rsplit("/", 1)[1])
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "NoSuchEntity":
                    return False
                raise
            return True
        if service != "s3" or resource_type != "object":
            return UNKNOWN
        bucket, _, key = arn.split(":::", 1)[1].partition("/")
        try:
            self._client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


def _denial(call: ApiCall, decision: Decision, authorization: Authorization) -> ClientError:
    """The error AWS answers with, so the product reacts to a denial as it would there."""
    message = (
        f"User: arn:aws:sts::{call.account}:assumed-role/esdeploy-{call.function}/test is not authorized "
        f"to perform: {decision.request.action} on resource: {decision.request.resource} "
        "because no identity-based policy allows it (tests/iam)"
    )
    consequence = authorization.consequence
    if authorization.denied_as:  # AWS's own check answers in its own words (esdeploy/iam/aws_checks.py)
        code, status = authorization.denied_as, 400
    elif consequence == "s3-missing-object":
        code, status = ("403" if call.operation == "HeadObject" else "AccessDenied"), 403
    elif call.iam_prefix in ("s3", "sqs"):
        code, status = "AccessDenied", 403
    else:
        code, status = "AccessDeniedException", 400
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, call.operation)


class Recorder:
    """Evaluates the product's calls while installed; `problems()` lists what would fail on AWS."""

    def __init__(self) -> None:
        self.calls: list[Evaluated] = []
        self._reported = 0
        self._facts: dict[str, _Facts] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Recorder]:
        original = BaseClient._make_api_call
        recorder = self

        def make_api_call(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
            if not _looking_up.get():
                function = current_function()
                if function is not None:
                    recorder._check(client, function, operation_name, api_params)
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]
            self._dump()

    def _dump(self) -> None:
        """ESDEPLOY_IAM_DUMP=<file>: append one JSON line per authorization (to review grants)."""
        target = os.environ.get("ESDEPLOY_IAM_DUMP")
        if not target:
            return
        with open(target, "a") as out:
            for evaluated in self.calls:
                for authorization, decision in evaluated.decisions:
                    out.write(json.dumps({
                        "function": evaluated.call.function,
                        "operation": f"{evaluated.call.signing_name}.{evaluated.call.operation}",
                        "principal": authorization.principal,
                        "action": decision.request.action,
                        "resource": decision.request.resource,
                        "allowed_by": [s.where for s in decision.allowed_by],
                    }) + "\n")

    def _facts_for(self, region: str) -> _Facts:
        with self._lock:
            return self._facts.setdefault(region, _Facts(region))

    def _check(self, client: BaseClient, function: str, operation: str, params: dict[str, Any]) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID

        model = client.meta.service_model
        region = client.meta.region_name
        call = ApiCall(function, model.signing_name, operation, dict(params), region, DEFAULT_ACCOUNT_ID)
        evaluated = Evaluated(call)
        self.calls.append(evaluated)
        token = _looking_up.set(True)
        try:
            values = StackValues.from_settings(_settings(), call.region, call.account)
            for authorization in authorizations(call, self._facts_for(call.region)):
                if authorization.principal == "execution-role":
                    statements, sources = execution_role_policy(values)
                else:
                    statements, sources = function_policy(function, values)
                evaluated.decisions.append(
                    (authorization, evaluate(statements, authorization.request, sources))
                )
        except CannotEvaluateError as error:
            evaluated.problem = str(error)
            return
        finally:
            _looking_up.reset(token)
        for authorization, decision in evaluated.denied:
            if authorization.consequence in ("call", "s3-missing-object"):
                raise _denial(call, decision, authorization)

    def problems(self) -> list[Evaluated]:
        return [c for c in self.calls if c.problem or c.denied]

    def take_report(self) -> str | None:
        """A report of the problems not reported yet (each problem is reported once)."""
        found = self.problems()
        fresh, self._reported = found[self._reported :], len(found)
        if not fresh:
            return None
        return (
            f"{len(fresh)} AWS call(s) the product made would not be allowed on AWS by the IAM policies "
            "we ship (tests/iam, docs/infra.md):\n" + "\n".join(e.report() for e in fresh)
        )
