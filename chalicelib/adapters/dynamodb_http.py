"""Adapter: the six DynamoDB calls our tables make, over the standard library's HTTP, signed with SigV4.

Why not boto3 here: building a boto3 client (its session, service model, endpoint rules and urllib3 pool) is
most of a cold API function's first request (bench/coldstart.py, docs/testing.md), and the read routes need
nothing else from it. This client speaks DynamoDB's JSON protocol (`X-Amz-Target: DynamoDB_20120810.<Op>`)
with the behaviour our adapters rely on from botocore, kept the same:

- retries as botocore's standard mode (1.44): 5 attempts in all (the wiring's MAX_ATTEMPTS, as for boto3's
  clients), on throttling and transient codes, HTTP 429/500/502/503/504, connection faults, timeouts and a
  body whose CRC32 is not the one DynamoDB sent; before retry n a wait of random * min(scale * 2^(n-1), 20) s,
  the scale 1 s after throttling and 25 ms after anything else, raised by `x-amz-retry-after` (botocore's
  retry quota is not kept: one Lambda makes a few calls per message);
- errors as botocore raises them: ClientError with the same `Error.Code`/`Message` and HTTP status, and
  EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError, SSLError,
  ChecksumError, so that aws_errors.py classifies both clients' faults alike;
- one kept-alive connection per thread, opened again when the server has closed it while idle (checked
  before reuse, as urllib3 checks its pool's);
- TLS verified against AWS_CA_BUNDLE, else the bundle botocore uses (certifi's, or its own).

Where it cannot be what boto3 would be, `from_environment` returns None and the wiring builds boto3's client:
credentials not in the environment (a profile, SSO: a laptop, not a Lambda), a FIPS or dual-stack endpoint,
a partition it does not know, a proxy for the endpoint (HTTPS_PROXY and the like). An endpoint URL set in
~/.aws/config is not read (the environment's are).
"""
from __future__ import annotations

import http.client
import json
import os
import random
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from chalicelib.adapters.aws_errors import error_code, http_status
from chalicelib.adapters.dynamodb_values import answer_from_wire, item_from_wire, request_to_wire
from chalicelib.adapters.sigv4 import Credentials, sign
from chalicelib.version import VERSION

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
# botocore/retries/standard.py (1.44): what its standard mode retries, and how long it waits first.
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException",
})
# DynamoDB's service model marks this one retryable (not throttling).
MODELED_RETRYABLE_CODES = frozenset({"ReplicatedWriteConflictException"})
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
THROTTLING_STATUS = 429
# Retry n waits random * min(scale * 2^(n-1), 20) s: scale 1 s after throttling, 25 ms after anything else
# (DynamoDB's own scale; 50 ms for other services). x-amz-retry-after (ms) raises it, by 5 s at most.
THROTTLING_SCALE_SECONDS = 1.0
DYNAMODB_SCALE_SECONDS = 0.025
MAX_BACKOFF_SECONDS = 20.0
RETRY_AFTER_MAX_ADDITIONAL_SECONDS = 5.0
# The faults below the service's answer that botocore's standard mode retries (a SSLError is not one).
TRANSPORT_FAULTS = (ChecksumError, EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError,
                    ReadTimeoutError)
# What reading or writing on a kept-alive connection that the server has closed raises.
STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
# Partitions by region name; a region matching none (ISO, a new partition) goes to boto3, which knows.
PARTITION_SUFFIXES = (
    ("us-gov-", "amazonaws.com"),
    ("cn-", "amazonaws.com.cn"),
)
STANDARD_REGION_PREFIXES = ("us-", "eu-", "ap-", "sa-", "ca-", "me-", "af-", "il-", "mx-")


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def endpoint_for(region: str | None, env: Mapping[str, str]) -> str | None:
    """DynamoDB's endpoint URL as boto3 would choose it from `env`, or None where boto3 should choose."""
    if not _true(env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")):
        for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"):
            if env.get(name, "").strip():
                return env[name].strip().rstrip("/")
    if not region or _true(env.get("AWS_USE_FIPS_ENDPOINT")) or _true(env.get("AWS_USE_DUALSTACK_ENDPOINT")):
        return None
    parts = region.split("-")
    if len(parts) < 3 or not parts[-1].isdigit() or region.startswith(("us-iso", "eu-isoe")):
        return None
    for prefix, suffix in PARTITION_SUFFIXES:
        if region.startswith(prefix):
            return f"https://dynamodb.{region}.{suffix}"
    if region.startswith(STANDARD_REGION_PREFIXES) and len(parts) == 3:
        return f"https://dynamodb.{region}.amazonaws.com"
    return None


def proxied(endpoint: str, env: Mapping[str, str]) -> bool:
    """Whether `env` sends requests to `endpoint` through a proxy (HTTPS_PROXY and the like, less NO_PROXY): boto3
    honours those, this client does not, so it is not built where one applies."""
    if not any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" and value.strip()
               for name, value in env.items()):
        return False
    # Not in typeshed, but documented with getproxies_environment and used by requests and urllib3.
    from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

    parts = urlsplit(endpoint)
    proxies = {name.lower()[: -len("_proxy")]: value for name, value in env.items()
               if name.lower().endswith("_proxy") and value.strip()}
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    return not proxy_bypass_environment(parts.hostname or "", proxies)


def environment_credentials(env: Mapping[str, str]) -> Credentials | None:
    """The credentials a Lambda's environment carries (its role's), or None when they are elsewhere."""
    access_key, secret_key = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key:
        return None
    return Credentials(access_key, secret_key, env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None)


def default_ca_bundle(env: Mapping[str, str]) -> str:
    """AWS_CA_BUNDLE, else the bundle botocore verifies with (botocore.httpsession.get_cert_path)."""
    if env.get("AWS_CA_BUNDLE"):
        return env["AWS_CA_BUNDLE"]
    try:
        import certifi

        return str(certifi.where())
    except ImportError:
        import botocore

        return os.path.join(os.path.dirname(botocore.__file__), "cacert.pem")


def throttling(error: Exception) -> bool:
    """Whether botocore's standard mode takes this fault for throttling (the longer backoff)."""
    if not isinstance(error, ClientError):
        return False
    code = error_code(error)
    return code in THROTTLING_CODES or (http_status(error) == THROTTLING_STATUS and code not in MODELED_RETRYABLE_CODES)


def retryable(error: Exception) -> bool:
    """Whether botocore's standard mode would try this call again."""
    if isinstance(error, ClientError):
        code = error_code(error)
        return (code in TRANSIENT_CODES or code in MODELED_RETRYABLE_CODES or http_status(error) in TRANSIENT_STATUSES
                or throttling(error))
    return isinstance(error, TRANSPORT_FAULTS)


def backoff_seconds(error: Exception, attempt: int, jitter: float) -> float:
    """The wait before retry `attempt` (1: the first retry), botocore's ExponentialBackoff.delay_amount."""
    scale = THROTTLING_SCALE_SECONDS if throttling(error) else DYNAMODB_SCALE_SECONDS
    delay = jitter * min(scale * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    answer = error.response if isinstance(error, ClientError) else {}
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    retry_after = str(headers.get("x-amz-retry-after", ""))
    if retry_after.isdigit():
        delay = max(delay, min(int(retry_after) / 1000.0, delay + RETRY_AFTER_MAX_ADDITIONAL_SECONDS))
    return delay


class DynamoDbHttpClient:
    """A DynamoDB client taking and giving Python values (as `speak_python_types(boto3 client)` does)."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Credentials,
        *,
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"{endpoint_url!r} is not an http(s) endpoint URL")
        self.endpoint_url = endpoint_url
        self.region = region
        self.max_attempts = max_attempts
        self._credentials = credentials
        self._parts = parts
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ca_bundle = ca_bundle
        self._tls: ssl.SSLContext | None = None
        self._sleep = sleep
        self._jitter = jitter
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"DynamoDbHttpClient({self.endpoint_url!r}, {self.region!r}, {self._credentials!r})"

    def get_item(self, **request: Any) -> dict[str, Any]:
        return self.call("GetItem", request)

    def put_item(self, **request: Any) -> dict[str, Any]:
        return self.call("PutItem", request)

    def update_item(self, **request: Any) -> dict[str, Any]:
        return self.call("UpdateItem", request)

    def delete_item(self, **request: Any) -> dict[str, Any]:
        return self.call("DeleteItem", request)

    def query(self, **request: Any) -> dict[str, Any]:
        return self.call("Query", request)

    def scan(self, **request: Any) -> dict[str, Any]:
        return self.call("Scan", request)

    def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """One operation with its retries; the answer's items as Python values."""
        body = json.dumps(request_to_wire(request)).encode("utf-8")
        attempt = 1
        while True:
            try:
                return self._attempt(operation, body, attempt)
            except (ClientError, *TRANSPORT_FAULTS) as error:
                if attempt >= self.max_attempts or not retryable(error):
                    raise
                self._sleep(backoff_seconds(error, attempt, self._jitter()))
            attempt += 1

    def close(self) -> None:
        """Close this thread's connection (the next call opens another)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _attempt(self, operation: str, body: bytes, attempt: int) -> dict[str, Any]:
        status, headers, payload = self._exchange(operation, body)
        expected = headers.get("x-amz-crc32")
        if expected is not None and expected.isdigit() and int(expected) != zlib.crc32(payload) & 0xFFFFFFFF:
            raise ChecksumError(checksum_type="crc32", expected_checksum=expected,
                                actual_checksum=str(zlib.crc32(payload) & 0xFFFFFFFF))
        metadata = {"RequestId": headers.get("x-amzn-requestid", ""), "HTTPStatusCode": status,
                    "HTTPHeaders": headers, "RetryAttempts": attempt - 1}
        try:
            answer = json.loads(payload) if payload else {}
        except ValueError:
            answer = None
        if status >= 300 or not isinstance(answer, dict):
            raise ClientError(_error_answer(status, headers, payload, answer, metadata), operation)  # type: ignore[arg-type]
        return {**answer_from_wire(answer), "ResponseMetadata": metadata}

    def _exchange(self, operation: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation,
                   "User-Agent": f"esdeploy/{VERSION} stdlib-dynamodb"}
        connection = self._connection()
        signed = sign("POST", self.endpoint_url, headers, body, self._credentials, self.region, "dynamodb")
        try:
            connection.request("POST", "/", body=body, headers=signed)
            response = connection.getresponse()
            payload = response.read()
        except STALE_CONNECTION as error:
            self.close()
            raise ConnectionClosedError(endpoint_url=self.endpoint_url) from error
        except TimeoutError as error:
            self.close()
            raise ReadTimeoutError(endpoint_url=self.endpoint_url) from error
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise EndpointConnectionError(endpoint_url=self.endpoint_url) from error
        if response.will_close:
            self.close()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, payload

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection: the kept-alive one while the server keeps it open, else a new one."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None and not _closed_by_peer(connection.sock):
            return connection
        self.close()
        host, port = self._parts.hostname or "", self._parts.port
        try:
            if self._parts.scheme == "https":
                connection = http.client.HTTPSConnection(host, port, timeout=self._connect_timeout,
                                                         context=self._tls_context())
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self._connect_timeout)
            connection.connect()
        except TimeoutError as error:
            raise ConnectTimeoutError(endpoint_url=self.endpoint_url) from error
        except (ssl.SSLError, ssl.CertificateError, FileNotFoundError) as error:
            # A certificate that does not verify, or a CA bundle that is not there: no retry mends either.
            raise SSLError(endpoint_url=self.endpoint_url, error=error) from error
        except OSError as error:
            raise EndpointConnectionError(endpoint_url=self.endpoint_url) from error
        if connection.sock is not None:
            connection.sock.settimeout(self._read_timeout)
        self._local.connection = connection
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_bundle or default_ca_bundle(os.environ))
        return self._tls


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle kept-alive socket that reads as ready has been closed by the server (or sent what was not asked):
    urllib3's is_connection_dropped, which botocore's pool runs before it reuses a connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _error_answer(status: int, headers: Mapping[str, str], payload: bytes, answer: Any,
                  metadata: dict[str, Any]) -> dict[str, Any]:
    """The error as botocore's JSON parser reports it: `__type`'s last part as the code, `message` or `Message`."""
    body = answer if isinstance(answer, dict) else {}
    code = str(body.get("__type") or headers.get("x-amzn-errortype", "") or status)
    code = code.rsplit("#", 1)[-1].split(":", 1)[0]
    message = body.get("message", body.get("Message"))
    if message is None:
        message = payload.decode("utf-8", "replace")[:500] if not body else ""
    error: dict[str, Any] = {"Error": {"Code": code, "Message": str(message)}, "ResponseMetadata": metadata}
    if isinstance(body.get("Item"), dict):
        # A failed condition with ReturnValuesOnConditionCheckFailure carries the item as it is.
        error["Item"] = item_from_wire(body["Item"])
    return error


def from_environment(region: str | None, env: Mapping[str, str], **options: Any) -> DynamoDbHttpClient | None:
    """The stdlib client for this environment, or None where boto3's client should be built instead."""
    endpoint = endpoint_for(region, env)
    credentials = environment_credentials(env)
    if endpoint is None or credentials is None or not region or proxied(endpoint, env):
        return None
    return DynamoDbHttpClient(endpoint, region, credentials, ca_bundle=env.get("AWS_CA_BUNDLE") or None, **options)
