"""Operator tool layer: a typed HTTP client of the esdeploy task API (requests, optional SigV4)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, NotRequired, Protocol, TypedDict, cast
from urllib.parse import quote, urlsplit

import requests

DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_SECONDS = 30.0
# API Gateway's default hostname carries the region, so a prod URL alone is enough to sign for it.
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class TaskEvent(TypedDict):
    at: str
    stage: str
    status: str
    detail: NotRequired[str]


class Task(TypedDict):
    """A deploy or delete task as `GET /deploy/{id}` answers it."""

    task_id: str
    kind: str
    embedding_model_id: str
    status: str
    stage: str
    created_at: str
    updated_at: str
    config: dict[str, Any]
    source: str
    events: list[TaskEvent]
    detail: NotRequired[str]
    reason: NotRequired[str]
    endpoint_name: NotRequired[str]
    promote_by: NotRequired[str]
    live_at: NotRequired[str]  # when a deploy's green went live (its swap)


class Alias(TypedDict):
    """Which variant of a model is live (and which candidate awaits promotion), as `GET /models/{id}`
    answers it and `GET /models` lists it."""

    embedding_model_id: str
    endpoint_name: str | None
    content_hash: NotRequired[str | None]
    previous_endpoint_name: str | None
    previous_content_hash: NotRequired[str | None]
    # GET /models/{id} and GET /models: the candidate of a deploy awaiting promotion (null when none).
    candidate_endpoint_name: NotRequired[str | None]
    candidate_content_hash: NotRequired[str | None]
    candidate_task_id: NotRequired[str | None]
    candidate_promote_by: NotRequired[str | None]
    task_id: str | None  # the deploy task that made the live variant live (after a rollback too)
    previous_task_id: NotRequired[str | None]  # the one that made the previous variant live
    swapped_at: str | None
    version: int


class Models(TypedDict):
    """Every model with a live variant or a candidate, as `GET /models` answers it."""

    models: list[Alias]


class ApiError(Exception):
    """The API answered with an error status (or something that is not the JSON it promises)."""

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body

    @property
    def field(self) -> str | None:
        return self._body_str("field")

    @property
    def active_task_id(self) -> str | None:
        return self._body_str("active_task_id")

    @property
    def active_task_kind(self) -> str | None:
        return self._body_str("active_task_kind")

    @property
    def transient(self) -> bool:
        """Worth asking again: the gateway, Lambda or a dependency had a bad moment."""
        return self.status >= 500 or self.status == 429

    def _body_str(self, key: str) -> str | None:
        value = self.body.get(key) if isinstance(self.body, dict) else None
        return str(value) if value is not None else None


class ApiUnreachableError(Exception):
    """No HTTP answer at all: connection refused, DNS, TLS, or no answer within the timeout."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the esdeploy API at {url}: {reason}")
        self.url = url
        self.reason = reason


class SigningError(Exception):
    """--iam was asked for but there is no region or no credentials to sign with."""


class Signer(Protocol):
    def sign(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers to send: the given ones plus whatever authenticates the request."""
        ...


class SigV4Signer:
    """Signs requests for API Gateway's IAM authorizer (service `execute-api`)."""

    service = "execute-api"

    def __init__(self, region: str, credentials: Any) -> None:
        self.region = region
        self._credentials = credentials

    @classmethod
    def from_environment(cls, region: str) -> SigV4Signer:
        """Credentials from botocore's usual chain: env vars, profile, SSO, container, instance role."""
        return cls(region, _credentials(_botocore_session()))

    @classmethod
    def for_api(cls, api_url: str, explicit_region: str | None, profile: str | None = None) -> SigV4Signer:
        """The signer `--iam` uses: region as `signing_region` finds it, the profile's as last resort
        (`profile`, else the active one: AWS_PROFILE)."""
        from botocore.exceptions import BotoCoreError

        session = _botocore_session(profile)
        try:
            profile_region = session.get_config_variable("region")
        except BotoCoreError as error:  # an unknown or broken profile is the caller's to fix: named, no traceback
            raise SigningError(_profile_problem(error, profile)) from None
        region = signing_region(api_url, explicit_region, profile_region=profile_region)
        return cls(region, _credentials(session, profile))

    def sign(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(self._credentials, self.service, self.region).add_auth(request)
        return dict(request.headers.items())


def signing_region(
    api_url: str, explicit: str | None, environ: Mapping[str, str] = os.environ, profile_region: str | None = None
) -> str:
    """--region, else the region in an execute-api hostname, else AWS_REGION / AWS_DEFAULT_REGION, else
    the active profile's `region` (what boto3 would use).

    The hostname beats the environment because a signature for any other region is refused.
    """
    if explicit:
        return explicit
    match = _EXECUTE_API_HOST.match(urlsplit(api_url).hostname or "")
    if match:
        return match.group(1)
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or profile_region
    if not region:
        raise SigningError("--iam needs a region: pass --region, set AWS_REGION, or give the profile a region")
    return region


def _botocore_session(profile: str | None = None) -> Any:
    import botocore.session

    return botocore.session.Session(profile=profile)


def _credentials(session: Any, profile: str | None = None) -> Any:
    from botocore.exceptions import BotoCoreError

    try:
        credentials = session.get_credentials()
    except BotoCoreError as error:  # unknown profile, expired SSO token, unreadable config: the caller's to fix
        raise SigningError(_profile_problem(error, profile)) from None
    if credentials is None:
        raise SigningError(
            "--iam needs AWS credentials and botocore found none "
            "(set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    return credentials


def _profile_problem(error: Exception, profile: str | None = None) -> str:
    from botocore.exceptions import ProfileNotFound

    if isinstance(error, ProfileNotFound):
        named = (
            f"--profile {profile}" if profile
            else f"AWS_PROFILE={os.environ.get('AWS_PROFILE') or os.environ.get('AWS_DEFAULT_PROFILE') or '?'}"
        )
        return f"--iam: {error} ({named}; `aws configure list-profiles` shows the ones there are)"
    return f"--iam could not load AWS credentials: {error}"


def segment(value: str) -> str:
    """One URL path segment: a '/' in an id must not reach a different route."""
    return quote(value, safe="")


class ApiClient:
    """One method per route; answers come back as the JSON the API sent."""

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        signer: Signer | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.signer = signer
        self.session = session or requests.Session()

    # -- tasks -----------------------------------------------------------------------------------

    def deploy(
        self, embedding_model_id: str, *, task_id: str | None = None, config: Mapping[str, Any] | None = None
    ) -> Task:
        body: dict[str, Any] = {"embedding_model_id": embedding_model_id}
        if task_id is not None:
            body["id"] = task_id
        if config:
            body["config"] = dict(config)
        return cast(Task, self.request("POST", "/deploy", body))

    def delete(self, embedding_model_id: str, *, task_id: str | None = None, reason: str | None = None) -> Task:
        body: dict[str, Any] = {"embedding_model_id": embedding_model_id}
        if task_id is not None:
            body["id"] = task_id
        if reason is not None:
            body["reason"] = reason
        return cast(Task, self.request("POST", "/delete", body))

    def task(self, task_id: str, kind: str) -> Task:
        """GET /deploy/{id} or /delete/{id}, by the task's kind."""
        return cast(Task, self.request("GET", f"/{_kind(kind)}/{segment(task_id)}"))

    def find_task(self, task_id: str) -> Task:
        """A task whose kind the caller does not know: deploy first, then delete."""
        try:
            return self.task(task_id, "deploy")
        except ApiError as error:
            if error.status != 404:
                raise
        try:
            return self.task(task_id, "delete")
        except ApiError as error:
            if error.status != 404:
                raise
            raise ApiError(
                404, f"Task with ID `{task_id}` is not found (neither deployment nor deletion)", error.body
            ) from None

    def newest_task(self, embedding_model_id: str, kind: str) -> Task:
        return cast(Task, self.request("GET", f"/{_kind(kind)}-status/{segment(embedding_model_id)}"))

    def cancel(self, task_id: str) -> Task:
        return cast(Task, self.request("POST", f"/deploy/{segment(task_id)}/cancel", {}))

    def promote(self, task_id: str) -> Task:
        return cast(Task, self.request("POST", f"/deploy/{segment(task_id)}/promote", {}))

    # -- models ----------------------------------------------------------------------------------

    def models(self) -> Models:
        return cast(Models, self.request("GET", "/models"))

    def model(self, embedding_model_id: str) -> Alias:
        return cast(Alias, self.request("GET", f"/models/{segment(embedding_model_id)}"))

    def rollback(self, embedding_model_id: str) -> Alias:
        return cast(Alias, self.request("POST", f"/models/{segment(embedding_model_id)}/rollback", {}))

    def invoke(
        self, embedding_model_id: str, inputs: list[str], *, normalize: bool | None = None, candidate: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"inputs": inputs}
        if normalize is not None:
            body["normalize"] = normalize
        if candidate:
            body["target"] = "candidate"
        return self.request("POST", f"/models/{segment(embedding_model_id)}/invoke", body)

    # -- transport -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        url = self.base_url + path
        # Serialised once: the bytes that are signed must be the bytes that are sent.
        data = json.dumps(body).encode("utf-8") if body is not None else b""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.signer is not None:
            headers = self.signer.sign(method, url, data, headers)
        try:
            response = self.session.request(method, url, data=data or None, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise ApiUnreachableError(self.base_url, f"no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as error:
            raise ApiUnreachableError(self.base_url, _connection_reason(error)) from None
        except requests.RequestException as error:  # a URL requests cannot use, and the like
            raise ApiUnreachableError(self.base_url, str(error)) from None
        return _decode(response)


def _kind(kind: str) -> str:
    if kind not in ("deploy", "delete"):
        raise ValueError(f"task kind must be deploy or delete, not {kind!r}")
    return kind


def _decode(response: requests.Response) -> dict[str, Any]:
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if response.ok and isinstance(payload, dict):
        return payload
    if response.ok:
        raise ApiError(response.status_code, f"the answer is not a JSON object: {response.text[:200]!r}", payload)
    raise ApiError(response.status_code, _detail(response, payload), payload)


def _detail(response: requests.Response, payload: Any) -> str:
    # Our routes say `detail`; API Gateway itself (auth, throttling) says `message`.
    if isinstance(payload, dict):
        for key in ("detail", "message", "Message"):
            if payload.get(key):
                return str(payload[key])
    text = response.text.strip()
    return text[:300] if text else (response.reason or "no detail")


def _connection_reason(error: requests.ConnectionError) -> str:
    text = str(error)
    if "Connection refused" in text or "ECONNREFUSED" in text or "[Errno 111]" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "the host name does not resolve"
    return text
