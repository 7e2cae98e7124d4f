"""Adapter: AWS Signature Version 4 for a JSON POST, on the standard library (the signature botocore's SigV4Auth makes).

The stdlib DynamoDB client (dynamodb_http.py) signs with this instead of importing botocore's request and
auth machinery. The rules are AWS's published ones (docs.aws.amazon.com/IAM/latest/UserGuide/
reference_sigv-create-signed-request.html); tests/adapters/test_sigv4.py checks each signature against
botocore's for the same request and clock.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
# Headers that a proxy or the HTTP layer may add, drop or change on the way (hop-by-hop, tracing): botocore
# 1.44 leaves these unsigned (auth.SIGNED_HEADERS_BLACKLIST). Content-Length too: botocore signs before its
# HTTP layer adds it, and http.client adds it here.
UNSIGNED_HEADERS = frozenset({
    "baggage", "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "traceparent", "tracestate", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    "content-length",
})


@dataclass(frozen=True)
class Credentials:
    """An access key pair, with the session token that temporary credentials (a Lambda's role) carry."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def host_header(url: str) -> str:
    """The Host value for `url` as botocore signs it: the host in lower case, its port unless the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """`headers` plus the ones that sign the request (X-Amz-Date, X-Amz-Security-Token, Authorization, Host)."""
    moment = now or datetime.now(UTC)
    # A naive time is UTC, as botocore's clock gives it, not this machine's local time.
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    signed = {**headers, "X-Amz-Date": stamp}
    if credentials.token:
        signed["X-Amz-Security-Token"] = credentials.token
    to_sign = {name.lower(): " ".join(str(value).split()) for name, value in signed.items()
               if name.lower() not in UNSIGNED_HEADERS}
    to_sign.setdefault("host", host_header(url))
    names = sorted(to_sign)
    signed_headers = ";".join(names)
    canonical_request = "\n".join([
        method.upper(),
        quote(urlsplit(url).path or "/", safe="/~"),
        "",  # no query string: the JSON protocols POST everything in the body
        "".join(f"{name}:{to_sign[name]}\n" for name in names),
        signed_headers,
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    signature = hmac.new(
        signing_key(credentials.secret_key, stamp[:8], region, service), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not any(name.lower() == "host" for name in signed):
        signed["Host"] = to_sign["host"]
    signed["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return signed
