"""Adapter tests: the stdlib DynamoDB client against moto's server, a scripted HTTP server, and its pure tables."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import ssl
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.model import OperationModel
from botocore.retries.standard import RetryContext, StandardRetryConditions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.server import ThreadedMotoServer

from chalicelib.adapters.dynamodb_http import (
    DynamoDbHttpClient,
    endpoint_for,
    environment_credentials,
    from_environment,
    retryable,
)
from chalicelib.adapters.sigv4 import Credentials

REGION = "us-east-1"
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "the-session-token")
KEYS_ONLY = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
JSON_1_0 = "application/x-amz-json-1.0"
HALF = 0.5  # the injected jitter: retry n waits 0.5 * min(scale * 2**(n-1), 20) seconds
# botocore's standard mode: a 1 s scale after throttling, DynamoDB's 25 ms after any other fault.
THROTTLED = 1.0
OTHER = 0.025

# Every kind of value a table stores, as the adapters hand it over.
EVERY_KIND: dict[str, Any] = {
    "pk": "item",
    "sk": "1",
    "text": "héllo ✓ 🎉",
    "empty_text": "",
    "count": 42,
    "price": Decimal("19.99"),
    "negative": Decimal("-0.5"),
    "widest": Decimal("12345678901234567890123456789012345678"),
    "smallest": Decimal("1E-130"),
    "yes": True,
    "no": False,
    "nothing": None,
    "list": [1, "two", [Decimal("3.5")], {"four": 4}, None],
    "empty_list": [],
    "map": {"nested": {"deeper": ["x", True]}, "empty": {}},
    "tags": {"a", "b"},
    "numbers": {1, Decimal("2.5")},
    "blob": b"\x00\x01\xfe\xff",
    "blobs": {b"a", b"\x00\xff"},
}


def plain(value: Any) -> Any:
    """boto3's deserialized value with Binary as the bytes it holds (what our client returns)."""
    if isinstance(value, Binary):
        held: Any = value  # boto3's stubs give Binary no `value` (and a __bytes__ returning str)
        return held.value
    if isinstance(value, set):
        return {plain(member) for member in value}
    if isinstance(value, list):
        return [plain(member) for member in value]
    if isinstance(value, dict):
        return {name: plain(member) for name, member in value.items()}
    return value


# --- A. Against moto's server: DynamoDB's semantics, read back through our client and through boto3. ---


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def boto_dynamodb(moto_url: str) -> Any:
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    return session.client("dynamodb", endpoint_url=moto_url)


@pytest.fixture
def table(boto_dynamodb: Any) -> Iterator[str]:
    """A table of its own for each test (pk, sk: strings), so that a scan sees only the test's items."""
    name = f"items-{uuid.uuid4().hex[:12]}"
    boto_dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    yield name
    boto_dynamodb.delete_table(TableName=name)


@pytest.fixture
def sleeps() -> list[float]:
    """The delays the client under test asked for, in order (it never really sleeps here)."""
    return []


@pytest.fixture
def client_for(sleeps: list[float]) -> Iterator[Callable[..., DynamoDbHttpClient]]:
    """Clients with a recording sleep and a jitter of 0.5 unless told otherwise; closed at teardown."""
    made: list[DynamoDbHttpClient] = []

    def make(url: str, **options: Any) -> DynamoDbHttpClient:
        options.setdefault("sleep", sleeps.append)
        options.setdefault("jitter", lambda: HALF)
        client = DynamoDbHttpClient(url, REGION, options.pop("credentials", CREDENTIALS), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def ours(moto_url: str, client_for: Callable[..., DynamoDbHttpClient]) -> DynamoDbHttpClient:
    return client_for(moto_url)


def test_every_kind_of_value_written_by_us_reads_back_the_same_through_us_and_through_boto3(
    ours: DynamoDbHttpClient, boto_dynamodb: Any, table: str
) -> None:
    written = ours.put_item(TableName=table, Item=EVERY_KIND)
    assert written["ResponseMetadata"]["HTTPStatusCode"] == 200

    read = ours.get_item(TableName=table, Key={"pk": "item", "sk": "1"}, ConsistentRead=True)
    assert read["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert read["ResponseMetadata"]["RequestId"]
    assert read["Item"] == EVERY_KIND
    # Numbers come back as Decimal (ints too), binary as bytes, sets as sets: what boto3's resource gives.
    assert type(read["Item"]["count"]) is Decimal
    assert type(read["Item"]["blob"]) is bytes
    assert type(read["Item"]["tags"]) is set

    by_boto3 = boto_dynamodb.get_item(TableName=table, Key={"pk": {"S": "item"}, "sk": {"S": "1"}})["Item"]
    deserializer = TypeDeserializer()
    assert {name: plain(deserializer.deserialize(value)) for name, value in by_boto3.items()} == read["Item"]


def test_an_item_written_by_boto3_reads_right_through_our_client(
    ours: DynamoDbHttpClient, boto_dynamodb: Any, table: str
) -> None:
    serializer = TypeSerializer()
    item = {name: serializer.serialize(value) for name, value in EVERY_KIND.items()}
    boto_dynamodb.put_item(TableName=table, Item=item)

    assert ours.get_item(TableName=table, Key={"pk": "item", "sk": "1"})["Item"] == EVERY_KIND


def test_a_missing_item_is_an_answer_without_item(ours: DynamoDbHttpClient, table: str) -> None:
    answer = ours.get_item(TableName=table, Key={"pk": "nobody", "sk": "1"})

    assert "Item" not in answer
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_failed_condition_is_botocores_client_error_with_the_item_as_python_values(
    ours: DynamoDbHttpClient, table: str, sleeps: list[float]
) -> None:
    ours.put_item(TableName=table, Item={"pk": "a", "sk": "1", "version": 1, "blob": b"\x00"})

    with pytest.raises(ClientError) as caught:
        ours.put_item(
            TableName=table,
            Item={"pk": "a", "sk": "1", "version": 2},
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    response: Any = caught.value.response  # with the item, which botocore's stubs do not name
    assert response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert response["Error"]["Message"] == "The conditional request failed"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Item"] == {"pk": "a", "sk": "1", "version": Decimal(1), "blob": b"\x00"}
    assert caught.value.operation_name == "PutItem"
    assert str(caught.value) == (
        "An error occurred (ConditionalCheckFailedException) when calling the PutItem operation: "
        "The conditional request failed"
    )
    assert sleeps == []  # a refusal is not retried
    # The item is as it was.
    assert ours.get_item(TableName=table, Key={"pk": "a", "sk": "1"})["Item"]["version"] == 1


def test_update_with_all_new_returns_the_attributes_as_python_values(ours: DynamoDbHttpClient, table: str) -> None:
    ours.put_item(TableName=table, Item={"pk": "a", "sk": "1", "count": 41, "tags": {"x"}})

    answer = ours.update_item(
        TableName=table,
        Key={"pk": "a", "sk": "1"},
        UpdateExpression="SET #count = #count + :one, note = :note, price = :price ADD tags :more",
        ExpressionAttributeNames={"#count": "count"},
        ExpressionAttributeValues={":one": 1, ":note": None, ":price": Decimal("0.1"), ":more": {"y"}},
        ReturnValues="ALL_NEW",
    )

    assert answer["Attributes"] == {
        "pk": "a", "sk": "1", "count": Decimal(42), "note": None, "price": Decimal("0.1"), "tags": {"x", "y"},
    }
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_delete_with_all_old_returns_what_was_there_and_the_item_is_gone(ours: DynamoDbHttpClient, table: str) -> None:
    ours.put_item(TableName=table, Item={"pk": "a", "sk": "1", "n": 7})

    answer = ours.delete_item(TableName=table, Key={"pk": "a", "sk": "1"}, ReturnValues="ALL_OLD")

    assert answer["Attributes"] == {"pk": "a", "sk": "1", "n": 7}
    assert "Item" not in ours.get_item(TableName=table, Key={"pk": "a", "sk": "1"})


def test_query_with_a_key_condition_and_values_returns_the_matching_items_in_key_order(
    ours: DynamoDbHttpClient, table: str
) -> None:
    for sk in ("3", "1", "2"):
        ours.put_item(TableName=table, Item={"pk": "q", "sk": sk, "n": int(sk)})
    ours.put_item(TableName=table, Item={"pk": "other", "sk": "2", "n": 0})

    answer = ours.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND sk > :after",
        ExpressionAttributeValues={":pk": "q", ":after": "1"},
    )

    assert answer["Items"] == [{"pk": "q", "sk": "2", "n": 2}, {"pk": "q", "sk": "3", "n": 3}]
    assert answer["Count"] == 2
    assert "LastEvaluatedKey" not in answer


def test_scan_one_item_a_page_collects_every_item_through_last_evaluated_key(
    ours: DynamoDbHttpClient, table: str
) -> None:
    expected = {(pk, sk) for pk in ("a", "b") for sk in ("1", "2")}
    for pk, sk in expected:
        ours.put_item(TableName=table, Item={"pk": pk, "sk": sk})

    seen: list[tuple[str, str]] = []
    pages = 0
    start: dict[str, Any] | None = None
    while True:
        page = ours.scan(TableName=table, Limit=1, **({"ExclusiveStartKey": start} if start else {}))
        pages += 1
        assert len(page["Items"]) <= 1
        seen.extend((item["pk"], item["sk"]) for item in page["Items"])
        start = page.get("LastEvaluatedKey")
        if start is None:
            break
        assert start == {"pk": seen[-1][0], "sk": seen[-1][1]}  # a key in Python values, fed back as it is
        assert pages < 10

    assert sorted(seen) == sorted(expected)
    assert pages >= len(expected)


def test_a_missing_table_is_resource_not_found_and_not_retried(
    ours: DynamoDbHttpClient, sleeps: list[float]
) -> None:
    with pytest.raises(ClientError) as caught:
        ours.get_item(TableName="no-such-table", Key={"pk": "a", "sk": "1"})

    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert sleeps == []


# --- B. Against a scripted HTTP/1.1 server on loopback: the wire, retries, connections. ---


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = field(default_factory=dict)  # JSON, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    crc32: str = "none"  # "none": no x-amz-crc32 header; "right": the body's; "wrong": another
    then_close: bool = False  # close the connection after answering, without saying so


DROP = "drop"  # read the request, then close the connection without answering


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    port: int  # the client's port: which TCP connection it came on
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer(ThreadingHTTPServer):
    """Answers each request with the next scripted reply (200 `{}` once the script is spent) and records it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.script: list[Reply | str] = []
        self.seen: list[Seen] = []
        self._changed = threading.Condition()
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def will(self, *replies: Reply | str) -> None:
        with self._changed:
            self.script.extend(replies)

    def next_reply(self, seen: Seen) -> Reply | str:
        with self._changed:
            self.seen.append(seen)
            return self.script.pop(0) if self.script else Reply()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._changed:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self._changed:
            self._open.discard(request)
            self._changed.notify_all()

    def close_connections(self) -> None:
        """Close every connection from this side, as a server or a load balancer does with idle ones."""
        with self._changed:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def wait_until_closed(self) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: not self._open, timeout=5), "the server kept a connection open"


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle kept-alive connection ends eventually, whatever the test did
    server: ScriptedServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.next_reply(Seen(self.command, self.path, self.client_address[1], headers, body))
        if not isinstance(reply, Reply):
            self.close_connection = True
            return
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", JSON_1_0)
        self.send_header("Content-Length", str(len(payload)))
        if reply.crc32 != "none":
            crc = zlib.crc32(payload) & 0xFFFFFFFF
            self.send_header("x-amz-crc32", str(crc if reply.crc32 == "right" else crc ^ 1))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        if reply.then_close:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    thread = threading.Thread(target=scripted.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield scripted
    scripted.shutdown()
    scripted.close_connections()
    scripted.server_close()
    thread.join(timeout=5)


@pytest.fixture
def client(server: ScriptedServer, client_for: Callable[..., DynamoDbHttpClient]) -> DynamoDbHttpClient:
    return client_for(server.url)


def an_error(code: str, message: str = "it went wrong", status: int = 400, key: str = "message") -> Reply:
    return Reply(status, {"__type": ERROR_PREFIX + code, key: message})


FOUND = Reply(200, {"Item": {"k": {"S": "1"}, "n": {"N": "2"}}}, {"x-amzn-RequestId": "the-request"}, crc32="right")
KEY: dict[str, Any] = {"k": "1"}

# What a retry is for: each once, then FOUND.
TRANSIENT: list[Any] = [
    pytest.param(an_error("InternalServerError", "Internal server error", status=500), OTHER, id="http-500"),
    pytest.param(Reply(503, {"__type": ERROR_PREFIX + "ServiceUnavailable"}), OTHER, id="http-503"),
    pytest.param(an_error("ThrottlingException", "slow down"), THROTTLED, id="throttling"),
    pytest.param(an_error("ProvisionedThroughputExceededException", "too fast"), THROTTLED,
                 id="provisioned-throughput-exceeded"),
    pytest.param(Reply(429, b"Too Many Requests"), THROTTLED, id="unmodeled-429"),
    pytest.param(an_error("ReplicatedWriteConflictException", "replica busy"), OTHER,
                 id="replicated-write-conflict"),
    pytest.param(Reply(502, b"<html><body>502 Bad Gateway</body></html>"), OTHER, id="html-502"),
    pytest.param(Reply(200, {"Item": {"k": {"S": "1"}}}, crc32="wrong"), OTHER, id="crc32-mismatch"),
    pytest.param(DROP, OTHER, id="connection-closed-without-answer"),
]


def botocore_signature(url: str, seen: Seen, credentials: Credentials) -> str:
    """The signature botocore's SigV4Auth computes for the request as it arrived (its signed headers, its date)."""
    signed_names = seen.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    request = AWSRequest("POST", url + seen.path, data=seen.body,
                         headers={name: seen.headers[name] for name in signed_names})
    request.context["timestamp"] = seen.headers["x-amz-date"]
    auth = SigV4Auth(BotocoreCredentials(credentials.access_key, credentials.secret_key, credentials.token),
                     "dynamodb", REGION)
    assert auth.signed_headers(auth.headers_to_sign(request)) == ";".join(signed_names)
    return str(auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request))


@pytest.mark.parametrize("credentials", [CREDENTIALS, KEYS_ONLY], ids=["with-session-token", "keys-only"])
def test_the_request_is_a_sigv4_signed_dynamodb_json_post(
    server: ScriptedServer, client_for: Callable[..., DynamoDbHttpClient], credentials: Credentials
) -> None:
    server.will(FOUND)

    answer = client_for(server.url, credentials=credentials).get_item(TableName="tasks", Key=KEY)

    assert answer["Item"] == {"k": "1", "n": Decimal(2)}
    assert answer["ResponseMetadata"]["RequestId"] == "the-request"
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("POST", "/")
    assert seen.headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert seen.headers["content-type"] == JSON_1_0
    assert seen.headers["host"] == f"127.0.0.1:{server.server_address[1]}"
    assert seen.headers["user-agent"].startswith("esdeploy/")
    assert seen.json() == {"TableName": "tasks", "Key": {"k": {"S": "1"}}}
    stamp = seen.headers["x-amz-date"]
    signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 60
    assert seen.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{stamp[:8]}/us-east-1/dynamodb/aws4_request, SignedHeaders="
    )
    if credentials.token:
        assert seen.headers["x-amz-security-token"] == "the-session-token"
        assert "x-amz-security-token" in seen.headers["authorization"]
    else:
        assert "x-amz-security-token" not in seen.headers
    # What AWS checks: botocore's signer computes the same signature for the request as it arrived.
    signature = seen.headers["authorization"].rsplit("Signature=", 1)[1]
    assert signature == botocore_signature(server.url, seen, credentials)


@pytest.mark.parametrize(
    ("operation", "target"),
    [("put_item", "PutItem"), ("update_item", "UpdateItem"), ("delete_item", "DeleteItem"), ("query", "Query"),
     ("scan", "Scan")],
    ids=["put", "update", "delete", "query", "scan"],
)
def test_each_call_names_its_operation(
    server: ScriptedServer, client: DynamoDbHttpClient, operation: str, target: str
) -> None:
    getattr(client, operation)(TableName="tasks")

    assert server.seen[0].headers["x-amz-target"] == f"DynamoDB_20120810.{target}"


def test_a_value_dynamodb_cannot_store_is_refused_before_anything_is_sent(
    server: ScriptedServer, client: DynamoDbHttpClient
) -> None:
    with pytest.raises(TypeError, match="Float types are not supported"):
        client.put_item(TableName="tasks", Item={"k": "1", "ratio": 0.5})

    assert server.seen == []


@pytest.mark.parametrize(("failure", "scale"), TRANSIENT)
def test_a_transient_failure_is_retried_once_after_a_jittered_delay(
    server: ScriptedServer, client: DynamoDbHttpClient, sleeps: list[float], failure: Reply | str, scale: float
) -> None:
    server.will(failure, FOUND)

    answer = client.get_item(TableName="tasks", Key=KEY)

    assert answer["Item"] == {"k": "1", "n": Decimal(2)}
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(server.seen) == 2
    assert server.seen[0].body == server.seen[1].body
    assert sleeps == [HALF * scale]


FAILING_FIVE_TIMES: list[Any] = [
    pytest.param(an_error("InternalServerError", "Internal server error", status=500), ClientError,
                 "InternalServerError", 500, OTHER, id="http-500"),
    pytest.param(an_error("ThrottlingException", "slow down"), ClientError, "ThrottlingException", 400,
                 THROTTLED, id="throttling"),
    pytest.param(Reply(502, b"<html><body>502 Bad Gateway</body></html>"), ClientError, "502", 502,
                 OTHER, id="html-502"),
    pytest.param(Reply(200, {}, crc32="wrong"), ChecksumError, None, None, OTHER, id="crc32-mismatch"),
    pytest.param(DROP, ConnectionClosedError, None, None, OTHER,
                 id="connection-closed-without-answer"),
]


@pytest.mark.parametrize(("failure", "raised", "code", "status", "scale"), FAILING_FIVE_TIMES)
def test_five_failures_in_a_row_raise_after_five_tries_with_doubling_delays(
    server: ScriptedServer,
    client: DynamoDbHttpClient,
    sleeps: list[float],
    failure: Reply | str,
    raised: type[Exception],
    code: str | None,
    status: int | None,
    scale: float,
) -> None:
    server.will(*[failure] * 5, FOUND)  # a sixth try would have succeeded

    with pytest.raises(raised) as caught:
        client.get_item(TableName="tasks", Key=KEY)

    assert len(server.seen) == 5
    assert sleeps == [HALF * scale * 2**n for n in range(4)]
    if isinstance(caught.value, ClientError):
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 4


def test_a_non_json_error_body_is_the_message_and_the_status_the_code(
    server: ScriptedServer, client_for: Callable[..., DynamoDbHttpClient]
) -> None:
    server.will(Reply(502, b"<html><body>502 Bad Gateway</body></html>"))

    with pytest.raises(ClientError) as caught:
        client_for(server.url, max_attempts=1).get_item(TableName="tasks", Key=KEY)

    assert caught.value.response["Error"] == {"Code": "502", "Message": "<html><body>502 Bad Gateway</body></html>"}


def test_the_delay_doubles_up_to_twenty_seconds(
    server: ScriptedServer, client_for: Callable[..., DynamoDbHttpClient], sleeps: list[float]
) -> None:
    server.will(*[an_error("ThrottlingException", "slow down")] * 7)

    with pytest.raises(ClientError):
        client_for(server.url, max_attempts=7, jitter=lambda: 1.0).get_item(TableName="tasks", Key=KEY)

    assert len(server.seen) == 7
    assert sleeps == [1, 2, 4, 8, 16, 20]


def test_one_attempt_means_no_retry(
    server: ScriptedServer, client_for: Callable[..., DynamoDbHttpClient], sleeps: list[float]
) -> None:
    server.will(an_error("ThrottlingException", "slow down"), FOUND)

    with pytest.raises(ClientError, match="slow down"):
        client_for(server.url, max_attempts=1).get_item(TableName="tasks", Key=KEY)

    assert len(server.seen) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("code", "message_key"),
    [("ConditionalCheckFailedException", "message"), ("ValidationException", "Message"),
     ("ResourceNotFoundException", "message"), ("TransactionConflictException", "message"),
     ("AccessDeniedException", "Message")],
    ids=["conditional-check-failed", "validation-capital-Message", "resource-not-found", "transaction-conflict",
         "access-denied"],
)
def test_a_refusal_is_raised_at_once_with_its_code_and_message(
    server: ScriptedServer, client: DynamoDbHttpClient, sleeps: list[float], code: str, message_key: str
) -> None:
    server.will(an_error(code, "the reason", key=message_key), FOUND)

    with pytest.raises(ClientError) as caught:
        client.put_item(TableName="tasks", Item=KEY)

    assert caught.value.response["Error"] == {"Code": code, "Message": "the reason"}
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert caught.value.operation_name == "PutItem"
    assert len(server.seen) == 1
    assert sleeps == []


def test_a_matching_crc32_is_accepted(server: ScriptedServer, client: DynamoDbHttpClient, sleeps: list[float]) -> None:
    server.will(Reply(200, {"Items": [{"k": {"S": "1"}}], "Count": 1}, crc32="right"))

    assert client.query(TableName="tasks")["Items"] == [{"k": "1"}]
    assert len(server.seen) == 1
    assert sleeps == []


def test_two_calls_in_a_row_share_one_kept_alive_connection(
    server: ScriptedServer, client: DynamoDbHttpClient
) -> None:
    client.get_item(TableName="tasks", Key=KEY)
    client.get_item(TableName="tasks", Key=KEY)

    assert len(server.seen) == 2
    assert server.seen[0].port == server.seen[1].port


def test_an_answer_saying_connection_close_makes_the_next_call_open_another(
    server: ScriptedServer, client: DynamoDbHttpClient, sleeps: list[float]
) -> None:
    server.will(Reply(headers={"Connection": "close"}))

    client.get_item(TableName="tasks", Key=KEY)
    client.get_item(TableName="tasks", Key=KEY)

    assert server.seen[0].port != server.seen[1].port
    assert sleeps == []


@pytest.mark.parametrize("closed_by", ["idle-timeout", "silent-close-after-answer"])
def test_a_kept_alive_connection_the_server_closed_is_opened_again_without_spending_an_attempt(
    server: ScriptedServer, client: DynamoDbHttpClient, sleeps: list[float], closed_by: str
) -> None:
    server.will(Reply(then_close=closed_by == "silent-close-after-answer"), FOUND)
    client.get_item(TableName="tasks", Key=KEY)
    if closed_by == "idle-timeout":
        server.close_connections()
    server.wait_until_closed()

    answer = client.get_item(TableName="tasks", Key=KEY)

    assert answer["Item"] == {"k": "1", "n": Decimal(2)}
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0
    assert sleeps == []
    assert len(server.seen) == 2
    assert server.seen[0].port != server.seen[1].port


@pytest.mark.parametrize(
    ("retry_after_ms", "expected"),
    [("3000", 3.0), ("60000", HALF * THROTTLED + 5.0), ("100", HALF * THROTTLED), ("soon", HALF * THROTTLED)],
    ids=["raises-the-wait", "by-five-seconds-at-most", "never-lowers-it", "unreadable-ignored"],
)
def test_x_amz_retry_after_raises_the_wait_as_botocore_does(
    server: ScriptedServer, client: DynamoDbHttpClient, sleeps: list[float], retry_after_ms: str, expected: float
) -> None:
    throttled = an_error("ThrottlingException", "slow down")
    server.will(Reply(throttled.status, throttled.body, {"x-amz-retry-after": retry_after_ms}), FOUND)

    client.get_item(TableName="tasks", Key=KEY)

    assert sleeps == [expected]


def test_a_ca_bundle_that_is_not_there_is_botocores_ssl_error_naming_the_endpoint(
    client_for: Callable[..., DynamoDbHttpClient], sleeps: list[float], tmp_path: Any
) -> None:
    url = f"https://127.0.0.1:{unused_port()}"
    client = client_for(url, ca_bundle=str(tmp_path / "missing.pem"))

    with pytest.raises(SSLError) as caught:
        client.get_item(TableName="tasks", Key=KEY)

    assert url in str(caught.value)
    assert sleeps == []  # no retry mends a missing bundle


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files: its own CA, trusted only where a test says so."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esdeploy test endpoint")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "endpoint.pem", directory / "endpoint.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_server(server: ScriptedServer, tmp_path: Path) -> tuple[str, Path]:
    """The scripted server behind TLS: its https URL and the CA bundle that trusts it."""
    cert_file, key_file = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server.url.replace("http://", "https://"), cert_file


def test_over_https_the_endpoint_is_verified_against_the_ca_bundle(
    server: ScriptedServer, tls_server: tuple[str, Path], client_for: Callable[..., DynamoDbHttpClient]
) -> None:
    url, bundle = tls_server
    server.will(FOUND, FOUND)
    client = client_for(url, ca_bundle=str(bundle))

    assert client.get_item(TableName="tasks", Key=KEY)["Item"] == {"k": "1", "n": Decimal(2)}
    assert client.get_item(TableName="tasks", Key=KEY)["Item"] == {"k": "1", "n": Decimal(2)}
    assert server.seen[0].port == server.seen[1].port  # one TLS connection, kept alive


def test_an_endpoint_whose_certificate_no_trusted_ca_signed_is_refused_without_retry(
    server: ScriptedServer, tls_server: tuple[str, Path], client_for: Callable[..., DynamoDbHttpClient],
    sleeps: list[float], tmp_path: Path
) -> None:
    url, _ = tls_server
    (tmp_path / "other").mkdir()
    other_ca, _ = self_signed(tmp_path / "other")

    with pytest.raises(SSLError) as caught:
        client_for(url, ca_bundle=str(other_ca)).get_item(TableName="tasks", Key=KEY)

    assert url in str(caught.value)
    assert server.seen == []  # nothing was sent to an endpoint that did not prove itself
    assert sleeps == []


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_endpoint_connection_error_after_every_attempt(
    client_for: Callable[..., DynamoDbHttpClient], sleeps: list[float]
) -> None:
    url = f"http://127.0.0.1:{unused_port()}"

    with pytest.raises(EndpointConnectionError) as caught:
        client_for(url, max_attempts=2).get_item(TableName="tasks", Key=KEY)

    assert url in str(caught.value)
    assert sleeps == [HALF * OTHER]


@pytest.mark.parametrize(
    ("max_attempts", "delays"), [(1, []), (2, [HALF * OTHER])], ids=["one-attempt", "two-attempts"]
)
def test_a_server_that_never_answers_is_a_read_timeout(
    silent_endpoint: str,
    client_for: Callable[..., DynamoDbHttpClient],
    sleeps: list[float],
    max_attempts: int,
    delays: list[float],
) -> None:
    started = time.monotonic()

    with pytest.raises(ReadTimeoutError):
        client_for(silent_endpoint, read_timeout=0.3, max_attempts=max_attempts).get_item(TableName="tasks", Key=KEY)

    elapsed = time.monotonic() - started
    assert 0.3 * max_attempts <= elapsed < 0.3 * max_attempts + 2
    assert sleeps == delays


def test_threads_each_get_their_own_connection_and_all_succeed(
    server: ScriptedServer, client: DynamoDbHttpClient
) -> None:
    together = threading.Barrier(2)
    answers: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    failures: list[BaseException] = []

    def work(name: str) -> None:
        try:
            together.wait(timeout=5)
            for _ in range(2):
                answers[name].append(client.get_item(TableName="tasks", Key={"k": name}))
        except BaseException as error:
            failures.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(name,)) for name in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert failures == []
    assert all(answer["ResponseMetadata"]["HTTPStatusCode"] == 200 for done in answers.values() for answer in done)
    ports = {name: {seen.port for seen in server.seen if seen.json()["Key"]["k"]["S"] == name} for name in answers}
    assert all(len(used) == 1 for used in ports.values()), ports  # each thread kept its own connection alive
    assert ports["one"] != ports["two"]


@pytest.fixture(scope="module")
def put_item_model() -> OperationModel:
    return botocore.session.get_session().get_service_model("dynamodb").operation_model("PutItem")


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


def botocore_would_retry(error: Exception, operation: OperationModel) -> bool:
    """botocore's standard retry mode's decision for the same fault (a first attempt of five)."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
        http = AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", status, HTTPHeaders(), _Body(b"{}"))
        context = RetryContext(1, operation_model=operation, parsed_response=error.response, http_response=http)
    elif isinstance(error, ChecksumError):
        wrong_crc32 = HTTPHeaders.from_dict({"x-amz-crc32": "1"})
        http = AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 200, wrong_crc32, _Body(b"{}"))
        context = RetryContext(1, operation_model=operation, parsed_response={}, http_response=http)
    else:
        context = RetryContext(1, operation_model=operation, caught_exception=error)
    return bool(StandardRetryConditions(max_attempts=5).is_retryable(context))


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutItem")


URL = "https://dynamodb.us-east-1.amazonaws.com"
RETRYABLE: list[Any] = [
    pytest.param(client_error("ThrottlingException", 400), True, id="ThrottlingException"),
    pytest.param(client_error("ProvisionedThroughputExceededException", 400), True,
                 id="ProvisionedThroughputExceededException"),
    pytest.param(client_error("RequestLimitExceeded", 400), True, id="RequestLimitExceeded"),
    pytest.param(client_error("TransactionInProgressException", 400), True, id="TransactionInProgressException"),
    pytest.param(client_error("RequestTimeout", 408), True, id="RequestTimeout"),
    pytest.param(client_error("InternalServerError", 500), True, id="http-500"),
    pytest.param(client_error("502", 502), True, id="http-502"),
    pytest.param(client_error("ServiceUnavailable", 503), True, id="http-503"),
    pytest.param(client_error("504", 504), True, id="http-504"),
    pytest.param(client_error("ThrottlingException", 429), True, id="ThrottlingException-429"),
    pytest.param(client_error("501", 501), False, id="http-501"),
    pytest.param(client_error("ConditionalCheckFailedException", 400), False, id="ConditionalCheckFailedException"),
    pytest.param(client_error("ValidationException", 400), False, id="ValidationException"),
    pytest.param(client_error("ResourceNotFoundException", 400), False, id="ResourceNotFoundException"),
    pytest.param(client_error("TransactionConflictException", 400), False, id="TransactionConflictException"),
    pytest.param(client_error("ItemCollectionSizeLimitExceededException", 400), False,
                 id="ItemCollectionSizeLimitExceededException"),
    pytest.param(client_error("AccessDeniedException", 400), False, id="AccessDeniedException"),
    pytest.param(ClientError({}, "PutItem"), False, id="client-error-without-answer"),
    pytest.param(EndpointConnectionError(endpoint_url=URL), True, id="EndpointConnectionError"),
    pytest.param(ConnectTimeoutError(endpoint_url=URL), True, id="ConnectTimeoutError"),
    pytest.param(ReadTimeoutError(endpoint_url=URL), True, id="ReadTimeoutError"),
    pytest.param(ConnectionClosedError(endpoint_url=URL), True, id="ConnectionClosedError"),
    pytest.param(ChecksumError(checksum_type="crc32", expected_checksum="1", actual_checksum="2"), True,
                 id="ChecksumError"),
    pytest.param(NoCredentialsError(), False, id="NoCredentialsError"),
    pytest.param(ValueError("no"), False, id="ValueError"),
    pytest.param(client_error("429", 429), True, id="unmodeled-429"),
    pytest.param(client_error("ReplicatedWriteConflictException", 400), True, id="ReplicatedWriteConflictException"),
]


@pytest.mark.parametrize(("error", "expected"), RETRYABLE)
def test_retryable_is_what_botocores_standard_mode_retries(
    error: Exception, expected: bool, put_item_model: OperationModel
) -> None:
    assert botocore_would_retry(error, put_item_model) is expected  # the table itself is botocore's
    assert retryable(error) is expected


# --- C. Pure tables: where the client is built, and from what. ---

NO_ENDPOINT_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                        "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT")


def boto3_endpoint(region: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where boto3 sends a DynamoDB call in `region` (its endpoint rules), without sending it."""
    for name in NO_ENDPOINT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    session = boto3.session.Session(region_name=region, aws_access_key_id="x", aws_secret_access_key="x")
    dynamodb: Any = session.client("dynamodb")
    urls: list[str] = []

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        urls.append(params["url"])
        return AWSResponse(params["url"], 200, HTTPHeaders(), None), {}

    dynamodb.meta.events.register("before-call.dynamodb.ListTables", answer)
    dynamodb.list_tables()
    return urls[0].rstrip("/")


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east-1", "https://dynamodb.us-east-1.amazonaws.com"),
        ("eu-central-2", "https://dynamodb.eu-central-2.amazonaws.com"),
        ("ap-southeast-4", "https://dynamodb.ap-southeast-4.amazonaws.com"),
        ("il-central-1", "https://dynamodb.il-central-1.amazonaws.com"),
        ("mx-central-1", "https://dynamodb.mx-central-1.amazonaws.com"),
        ("ca-west-1", "https://dynamodb.ca-west-1.amazonaws.com"),
        ("sa-east-1", "https://dynamodb.sa-east-1.amazonaws.com"),
        ("me-central-1", "https://dynamodb.me-central-1.amazonaws.com"),
        ("af-south-1", "https://dynamodb.af-south-1.amazonaws.com"),
        ("cn-north-1", "https://dynamodb.cn-north-1.amazonaws.com.cn"),
        ("cn-northwest-1", "https://dynamodb.cn-northwest-1.amazonaws.com.cn"),
        ("us-gov-west-1", "https://dynamodb.us-gov-west-1.amazonaws.com"),
        ("us-gov-east-1", "https://dynamodb.us-gov-east-1.amazonaws.com"),
    ],
    ids=lambda value: value if "://" not in str(value) else "",
)
def test_a_regions_endpoint_is_the_one_boto3_would_use(
    region: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert endpoint_for(region, {}) == expected
    assert boto3_endpoint(region, monkeypatch) == expected


@pytest.mark.parametrize(
    ("region", "env"),
    [
        ("us-iso-east-1", {}),
        ("us-isob-east-1", {}),
        ("eu-isoe-west-1", {}),
        ("xx-foo", {}),
        ("xx-foo-1", {}),
        ("eusc-de-east-1", {}),
        ("aws-global", {}),
        ("us-east-1-fips", {}),
        (None, {}),
        ("", {}),
        ("us-east-1", {"AWS_USE_FIPS_ENDPOINT": "true"}),
        ("us-east-1", {"AWS_USE_FIPS_ENDPOINT": " TRUE "}),
        ("us-east-1", {"AWS_USE_DUALSTACK_ENDPOINT": "true"}),
    ],
    ids=["us-iso", "us-isob", "eu-isoe", "made-up-xx-foo", "made-up-xx-foo-1", "eusc-partition", "aws-global",
         "fips-region-name", "no-region", "empty-region", "fips-env", "fips-env-upper-case", "dualstack-env"],
)
def test_where_only_boto3_knows_the_endpoint_there_is_none(region: str | None, env: dict[str, str]) -> None:
    assert endpoint_for(region, env) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AWS_ENDPOINT_URL": "http://localhost:4566"}, "http://localhost:4566"),
        ({"AWS_ENDPOINT_URL_DYNAMODB": "http://localhost:8000/"}, "http://localhost:8000"),
        ({"AWS_ENDPOINT_URL": "http://general:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://dynamodb:2"}, "http://dynamodb:2"),
        ({"AWS_ENDPOINT_URL": "http://general:1", "AWS_ENDPOINT_URL_DYNAMODB": " "}, "http://general:1"),
        ({"AWS_ENDPOINT_URL": " http://spaced:1/ "}, "http://spaced:1"),
        ({"AWS_ENDPOINT_URL": "http://general:1", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, URL),
        ({"AWS_ENDPOINT_URL_DYNAMODB": "http://dynamodb:2", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "True"}, URL),
        ({"AWS_ENDPOINT_URL": "http://general:1", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "false"}, "http://general:1"),
        ({"AWS_ENDPOINT_URL": "http://general:1", "AWS_USE_FIPS_ENDPOINT": "false"}, "http://general:1"),
        ({"AWS_USE_FIPS_ENDPOINT": "false", "AWS_USE_DUALSTACK_ENDPOINT": "false"}, URL),
    ],
    ids=["general-url", "dynamodb-url-trailing-slash-stripped", "dynamodb-url-wins", "blank-dynamodb-url-skipped",
         "spaces-stripped", "ignored-general", "ignored-dynamodb", "ignore-false-keeps", "fips-false-keeps",
         "fips-and-dualstack-false"],
)
def test_an_endpoint_url_from_the_environment(env: dict[str, str], expected: str) -> None:
    assert endpoint_for("us-east-1", env) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"AWS_ACCESS_KEY_ID": "AK"}, None),
        ({"AWS_SECRET_ACCESS_KEY": "SK"}, None),
        ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "SK"}, None),
        ({"AWS_SESSION_TOKEN": "T"}, None),
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}, Credentials("AK", "SK", None)),
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "T"},
         Credentials("AK", "SK", "T")),
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SECURITY_TOKEN": "OLD"},
         Credentials("AK", "SK", "OLD")),
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "T",
          "AWS_SECURITY_TOKEN": "OLD"}, Credentials("AK", "SK", "T")),
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "",
          "AWS_SECURITY_TOKEN": "OLD"}, Credentials("AK", "SK", "OLD")),
        ({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": ""},
         Credentials("AK", "SK", None)),
    ],
    ids=["nothing", "access-key-only", "secret-key-only", "empty-access-key", "token-only", "keys",
         "keys-and-session-token", "keys-and-security-token", "session-token-wins", "empty-session-token-skipped",
         "empty-token-is-none"],
)
def test_environment_credentials(env: dict[str, str], expected: Credentials | None) -> None:
    assert environment_credentials(env) == expected


def test_neither_credentials_nor_the_client_show_the_secret_or_the_token() -> None:
    credentials = environment_credentials(
        {"AWS_ACCESS_KEY_ID": "AKIDVISIBLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-key", "AWS_SESSION_TOKEN": "t0ken"}
    )
    assert credentials is not None
    client = DynamoDbHttpClient(URL, REGION, credentials)

    for shown in (repr(credentials), str(credentials), repr(client)):
        assert "AKIDVISIBLE" in shown  # which key it is, for the logs
        assert "s3cr3t-key" not in shown
        assert "t0ken" not in shown


LAMBDA_ENV = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "T"}


@pytest.mark.parametrize(
    ("region", "env"),
    [
        ("us-east-1", {}),
        ("us-east-1", {"AWS_ACCESS_KEY_ID": "AK"}),
        (None, LAMBDA_ENV),
        ("", LAMBDA_ENV),
        ("us-east-1", {**LAMBDA_ENV, "AWS_USE_FIPS_ENDPOINT": "true"}),
        ("us-east-1", {**LAMBDA_ENV, "AWS_USE_DUALSTACK_ENDPOINT": "true"}),
        ("us-iso-east-1", LAMBDA_ENV),
        (None, {**LAMBDA_ENV, "AWS_ENDPOINT_URL": "http://localhost:4566"}),
        ("us-east-1", {**LAMBDA_ENV, "HTTPS_PROXY": "http://proxy.internal:3128"}),
        ("us-east-1", {**LAMBDA_ENV, "all_proxy": "socks5://proxy.internal:1080"}),
        ("us-east-1", {**LAMBDA_ENV, "HTTP_PROXY": "http://proxy.internal:3128",
                       "AWS_ENDPOINT_URL": "http://localhost:4566"}),
    ],
    ids=["no-credentials", "half-credentials", "no-region", "empty-region", "fips", "dualstack", "iso-partition",
         "endpoint-url-but-no-region", "https-proxy", "all-proxy", "http-proxy-for-an-http-endpoint"],
)
def test_from_environment_leaves_to_boto3_what_it_cannot_do(region: str | None, env: dict[str, str]) -> None:
    assert from_environment(region, env) is None


@pytest.mark.parametrize(
    "env",
    [
        {**LAMBDA_ENV, "HTTP_PROXY": "http://proxy.internal:3128"},  # for http only: the endpoint is https
        {**LAMBDA_ENV, "HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": ".amazonaws.com"},
        {**LAMBDA_ENV, "https_proxy": "http://proxy.internal:3128", "no_proxy": "*"},
        {**LAMBDA_ENV, "HTTPS_PROXY": ""},
    ],
    ids=["http-proxy-only", "no-proxy-covers-aws", "no-proxy-star", "blank-proxy"],
)
def test_a_proxy_that_does_not_apply_to_the_endpoint_leaves_the_stdlib_client(env: dict[str, str]) -> None:
    client = from_environment("us-east-1", env)
    assert client is not None
    assert client.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("region", "env", "endpoint"),
    [
        ("eu-west-1", LAMBDA_ENV, "https://dynamodb.eu-west-1.amazonaws.com"),
        ("cn-north-1", LAMBDA_ENV, "https://dynamodb.cn-north-1.amazonaws.com.cn"),
        ("us-east-1", {**LAMBDA_ENV, "AWS_ENDPOINT_URL": "http://localhost:4566/"}, "http://localhost:4566"),
    ],
    ids=["eu-west-1", "china", "endpoint-url"],
)
def test_from_environment_builds_the_client_for_the_region(
    region: str, env: dict[str, str], endpoint: str
) -> None:
    client = from_environment(region, env)

    assert client is not None
    assert (client.endpoint_url, client.region, client.max_attempts) == (endpoint, region, 5)


def test_from_environment_signs_with_the_environments_keys_and_passes_options_through(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    env = {**LAMBDA_ENV, "AWS_ENDPOINT_URL_DYNAMODB": server.url}
    client = from_environment("eu-west-1", env, max_attempts=2, sleep=sleeps.append, jitter=lambda: HALF)
    assert client is not None
    server.will(*[an_error("ThrottlingException", "slow down")] * 3)

    try:
        with pytest.raises(ClientError, match="slow down"):
            client.get_item(TableName="tasks", Key=KEY)
    finally:
        client.close()

    assert client.max_attempts == 2
    assert len(server.seen) == 2
    assert sleeps == [HALF * THROTTLED]
    assert server.seen[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK/")
    assert "/eu-west-1/dynamodb/aws4_request" in server.seen[0].headers["authorization"]
    assert server.seen[0].headers["x-amz-security-token"] == "T"


@pytest.mark.parametrize(
    "url",
    ["ftp://dynamodb.example.com", "localhost:8000", "dynamodb.us-east-1.amazonaws.com", "http://", "", "file:///x"],
    ids=["ftp", "host-port-without-scheme", "host-without-scheme", "no-host", "empty", "file"],
)
def test_the_client_refuses_an_endpoint_that_is_not_http(url: str) -> None:
    with pytest.raises(ValueError, match="is not an http"):
        DynamoDbHttpClient(url, REGION, CREDENTIALS)
