"""Adapter tests: the stdlib SigV4 signer gives botocore's SigV4Auth signature for the same request and clock."""
from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from unittest.mock import patch

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from chalicelib.adapters.sigv4 import Credentials, host_header, sign, signing_key

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="
DYNAMODB = "https://dynamodb.eu-west-1.amazonaws.com"
JSON_HEADERS = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.GetItem"}
BODY = b'{"TableName": "tasks", "Key": {"pk": {"S": "t1"}}}'
MOMENT = datetime(2026, 3, 14, 15, 9, 26)  # naive UTC, as botocore's get_current_datetime returns it
UNSIGNED = {"User-Agent": "esdeploy/1.0  stdlib-dynamodb", "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a9",
            "Expect": "100-continue"}


def botocore_signed(url: str, headers: Mapping[str, str], body: bytes, token: str | None, region: str,
                    service: str = "dynamodb", moment: datetime = MOMENT) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    with patch("botocore.auth.get_current_datetime", return_value=moment):
        SigV4Auth(BotocoreCredentials(ACCESS_KEY, SECRET_KEY, token), service, region).add_auth(request)
    return dict(request.headers.items())


def ours_signed(url: str, headers: Mapping[str, str], body: bytes, token: str | None, region: str,
                service: str = "dynamodb", moment: datetime = MOMENT) -> dict[str, str]:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, token)
    return sign("POST", url, headers, body, credentials, region, service, now=moment.replace(tzinfo=UTC))


def signed_headers(authorization: str) -> list[str]:
    return authorization.split("SignedHeaders=")[1].split(",")[0].split(";")


@pytest.mark.parametrize(
    ("url", "headers", "body", "token", "region", "moment"),
    [
        pytest.param(DYNAMODB, JSON_HEADERS, BODY, TOKEN, "eu-west-1", MOMENT, id="session-token"),
        pytest.param(DYNAMODB, JSON_HEADERS, BODY, None, "eu-west-1", MOMENT, id="no-token"),
        pytest.param("http://127.0.0.1:5000", JSON_HEADERS, BODY, TOKEN, "us-east-1", MOMENT, id="http-port-5000"),
        pytest.param("http://localhost:80", JSON_HEADERS, BODY, None, "us-east-1", MOMENT, id="http-explicit-80"),
        pytest.param(f"{DYNAMODB}:443", JSON_HEADERS, BODY, TOKEN, "eu-west-1", MOMENT, id="https-explicit-443"),
        pytest.param(f"{DYNAMODB}:8443", JSON_HEADERS, BODY, TOKEN, "eu-west-1", MOMENT, id="https-port-8443"),
        pytest.param("https://DynamoDB.EU-West-1.amazonaws.com/", JSON_HEADERS, BODY, None, "eu-west-1", MOMENT,
                     id="upper-case-host-and-slash"),
        pytest.param(DYNAMODB, {**JSON_HEADERS, "X-Custom": "  a   b \t c  "}, BODY, TOKEN, "eu-west-1", MOMENT,
                     id="runs-of-spaces"),
        pytest.param(DYNAMODB, {**JSON_HEADERS, **UNSIGNED}, BODY, TOKEN, "eu-west-1", MOMENT, id="unsigned-headers"),
        pytest.param(DYNAMODB, {**JSON_HEADERS, "Host": "proxy.example.com"}, BODY, None, "eu-west-1", MOMENT,
                     id="explicit-host-header"),
        pytest.param(DYNAMODB, JSON_HEADERS, b"", TOKEN, "eu-west-1", MOMENT, id="empty-body"),
        pytest.param(DYNAMODB, JSON_HEADERS, '{"k": {"S": "ünïcode ✓ 日本"}}'.encode(), TOKEN, "eu-west-1", MOMENT,
                     id="utf8-body"),
        pytest.param("https://dynamodb.us-east-1.amazonaws.com", JSON_HEADERS, BODY, TOKEN, "us-east-1", MOMENT,
                     id="us-east-1"),
        pytest.param("https://dynamodb.cn-north-1.amazonaws.com.cn", JSON_HEADERS, BODY, TOKEN, "cn-north-1", MOMENT,
                     id="cn-north-1"),
        pytest.param(DYNAMODB, JSON_HEADERS, BODY, TOKEN, "eu-west-1", datetime(2025, 12, 31, 23, 59, 59),
                     id="just-before-midnight"),
        pytest.param(DYNAMODB, JSON_HEADERS, BODY, TOKEN, "eu-west-1", datetime(2026, 1, 1, 0, 0, 0),
                     id="midnight"),
    ],
)
def test_signature_is_botocores(url: str, headers: dict[str, str], body: bytes, token: str | None, region: str,
                                moment: datetime) -> None:
    expected = botocore_signed(url, headers, body, token, region, moment=moment)
    ours = ours_signed(url, headers, body, token, region, moment=moment)
    assert ours["Authorization"] == expected["Authorization"]
    assert ours["X-Amz-Date"] == expected["X-Amz-Date"] == moment.strftime("%Y%m%dT%H%M%SZ")
    assert ours.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token") == token
    # The headers given go out as they were given, next to the signing ones.
    assert {name: ours[name] for name in headers} == headers


def test_headers_a_proxy_may_change_are_sent_but_left_unsigned() -> None:
    ours = ours_signed(DYNAMODB, {**JSON_HEADERS, **UNSIGNED}, BODY, TOKEN, "eu-west-1")
    assert signed_headers(ours["Authorization"]) == [
        "content-type", "host", "x-amz-date", "x-amz-security-token", "x-amz-target"]
    assert {name: ours[name] for name in UNSIGNED} == UNSIGNED
    assert signed_headers(botocore_signed(DYNAMODB, {**JSON_HEADERS, **UNSIGNED}, BODY, TOKEN, "eu-west-1")
                          ["Authorization"]) == signed_headers(ours["Authorization"])


@pytest.mark.parametrize("name", sorted(botocore.auth.SIGNED_HEADERS_BLACKLIST))
def test_every_header_botocore_leaves_unsigned_is_left_unsigned(name: str) -> None:
    headers = {**JSON_HEADERS, name.title(): "value"}
    ours = ours_signed(DYNAMODB, headers, BODY, TOKEN, "eu-west-1")
    assert ours["Authorization"] == botocore_signed(DYNAMODB, headers, BODY, TOKEN, "eu-west-1")["Authorization"]


def test_a_naive_time_is_read_as_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        signed = sign("POST", DYNAMODB, JSON_HEADERS, BODY, Credentials("AKID", "secret"), "eu-west-1", "dynamodb",
                      now=datetime(2026, 1, 1, 12))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert signed["X-Amz-Date"] == "20260101T120000Z"


def test_a_different_body_gives_a_different_signature() -> None:
    first = ours_signed(DYNAMODB, JSON_HEADERS, BODY, TOKEN, "eu-west-1")
    second = ours_signed(DYNAMODB, JSON_HEADERS, BODY.replace(b"t1", b"t2"), TOKEN, "eu-west-1")
    assert first["X-Amz-Date"] == second["X-Amz-Date"]
    assert first["Authorization"] != second["Authorization"]


def test_host_is_added_only_when_absent_and_the_given_headers_are_not_changed() -> None:
    headers = dict(JSON_HEADERS)
    ours = ours_signed(f"{DYNAMODB}:8443", headers, BODY, None, "eu-west-1")
    assert headers == JSON_HEADERS
    assert ours["Host"] == "dynamodb.eu-west-1.amazonaws.com:8443"
    assert "X-Amz-Security-Token" not in ours
    given = ours_signed(DYNAMODB, {**JSON_HEADERS, "host": "proxy.example.com"}, BODY, None, "eu-west-1")
    assert "Host" not in given
    assert given["host"] == "proxy.example.com"


def test_a_moment_in_another_zone_signs_as_the_same_utc_moment() -> None:
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN)
    plus_two = datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    ours = sign("POST", DYNAMODB, JSON_HEADERS, BODY, credentials, "eu-west-1", "dynamodb", now=plus_two)
    utc = datetime(2025, 12, 31, 23, 30)
    assert ours["X-Amz-Date"] == "20251231T233000Z"
    assert ours["Authorization"] == botocore_signed(DYNAMODB, JSON_HEADERS, BODY, TOKEN, "eu-west-1",
                                                    moment=utc)["Authorization"]


def test_credentials_repr_shows_the_access_key_but_never_the_secret_or_token() -> None:
    shown = repr(Credentials("AKIAEXAMPLE", "the-secret-key", "the-session-token"))
    assert "AKIAEXAMPLE" in shown
    assert "the-secret-key" not in shown
    assert "the-session-token" not in shown


def test_signing_key_is_awss_published_example() -> None:
    # docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html (derived signing key)
    key = signing_key(SECRET_KEY, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        pytest.param("https://DynamoDB.EU-West-1.AmazonAWS.com", "dynamodb.eu-west-1.amazonaws.com", id="lower-case"),
        pytest.param("http://localhost:80/", "localhost", id="http-drops-80"),
        pytest.param("https://example.com:443/", "example.com", id="https-drops-443"),
        pytest.param("http://example.com:443", "example.com:443", id="http-keeps-443"),
        pytest.param("https://example.com:80", "example.com:80", id="https-keeps-80"),
        pytest.param("http://127.0.0.1:5000", "127.0.0.1:5000", id="keeps-5000"),
        pytest.param("https://user:pass@example.com", "example.com", id="drops-userinfo"),
        pytest.param("http://[::1]:8000/", "[::1]:8000", id="ipv6-with-port"),
        pytest.param("https://[2001:DB8::1]", "[2001:db8::1]", id="ipv6-default-port"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    assert host_header(url) == host
