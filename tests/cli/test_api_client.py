"""The HTTP client: error typing, unreachable APIs on loopback, and SigV4 signing."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from esdeploy.api_client import (
    ApiClient,
    ApiError,
    ApiUnreachableError,
    SigningError,
    SigV4Signer,
    signing_region,
)
from esdeploy.local.processes import free_port
from tests.cli.conftest import URL, Cli, FakeApi, task


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Env-var credentials only: no profile, no config file, so botocore never looks past loopback."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_ids_are_one_path_segment() -> None:
    api = FakeApi().on("GET", "/deploy/a%2Fb", (200, task()))
    ApiClient(URL, session=api.session()).task("a/b", "deploy")
    assert api.sent[0].path == "/deploy/a%2Fb"


def test_api_error_carries_status_detail_and_body() -> None:
    body = {"detail": "Model `m1` is busy", "active_task_id": "t0", "active_task_kind": "deploy"}
    api = FakeApi().on("POST", "/delete", (409, body))
    with pytest.raises(ApiError) as raised:
        ApiClient(URL, session=api.session()).delete("m1")
    error = raised.value
    assert (error.status, error.detail, error.body) == (409, "Model `m1` is busy", body)
    assert (error.active_task_id, error.active_task_kind, error.field) == ("t0", "deploy", None)
    assert not error.transient


def test_non_json_answers_become_api_errors() -> None:
    api = FakeApi().on("GET", "/models", (502, b"<html>Bad Gateway</html>"))
    with pytest.raises(ApiError) as raised:
        ApiClient(URL, session=api.session()).models()
    assert raised.value.status == 502 and "Bad Gateway" in raised.value.detail and raised.value.transient
    api.on("GET", "/models", (200, [1, 2]))
    with pytest.raises(ApiError, match="not a JSON object"):
        ApiClient(URL, session=api.session()).models()


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ApiUnreachableError) as raised:
        ApiClient(url, timeout=2).models()
    assert raised.value.url == url and raised.value.reason == "connection refused"


def test_an_api_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection in the kernel, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(ApiUnreachableError, match=r"no answer within 0\.2 s"):
            ApiClient(url, timeout=0.2).models()


def test_cli_connection_refused_message_and_exit_5(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    from typer.testing import CliRunner

    from esdeploy.cli import app

    result = CliRunner().invoke(app, ["--api", url, "deploy", "m1"])
    assert result.exit_code == 5
    assert f"cannot reach the esdeploy API at {url} (connection refused)" in result.stderr
    assert "ESDEPLOY_API" in result.stderr


def test_sigv4_adds_authorization_and_date(cli: Cli, fake_credentials: None) -> None:
    cli.api.on("POST", "/prod/deploy", (200, task()))
    result = cli("--iam", "--region", "eu-west-1", "deploy", "m1", url=f"{URL}/prod")
    assert result.exit_code == 0, result.output
    headers = cli.api.sent[0].headers
    authorization = headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token", "content-type"} <= set(signed)
    assert headers["X-Amz-Date"].endswith("Z") and len(headers["X-Amz-Date"]) == 16
    assert headers["X-Amz-Security-Token"] == "session-token-example"


def test_sigv4_signature_covers_the_bytes_and_url_that_are_sent(fake_credentials: None) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    api = FakeApi().on("POST", "/api/deploy", (200, task()))
    client = ApiClient(f"{URL}/api", signer=SigV4Signer.from_environment("us-east-1"), session=api.session())
    client.deploy("m1", config={"bake_seconds": 0})
    sent = api.sent[0]
    authorization = sent.headers["Authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    # Recompute the signature from what went over the wire; a server does the same.
    replay = AWSRequest(method=sent.method, url=sent.url, data=sent.raw,
                        headers={k: v for k, v in sent.headers.items() if k.lower() in signed})
    replay.context["timestamp"] = sent.headers["X-Amz-Date"]
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example"),
                     "execute-api", "us-east-1")
    signature = auth.signature(auth.string_to_sign(replay, auth.canonical_request(replay)), replay)
    assert authorization.endswith(f"Signature={signature}")
    assert sent.raw == b'{"embedding_model_id": "m1", "config": {"bake_seconds": 0}}'


def test_unsigned_by_default(cli: Cli) -> None:
    cli.api.on("GET", "/models", (200, {"models": []}))
    cli("models")
    assert "Authorization" not in cli.api.sent[0].headers


def test_iam_from_environment_variable(cli: Cli, fake_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESDEPLOY_API_IAM", "1")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    cli.api.on("GET", "/models", (200, {"models": []}))
    assert cli("models").exit_code == 0
    assert "/us-west-2/execute-api/" in cli.api.sent[0].headers["Authorization"]


def test_iam_without_credentials_is_a_clear_exit_5(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # Keep botocore's container and instance-metadata providers from reaching off the machine.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    result = cli("--iam", "--region", "us-east-1", "models")
    assert result.exit_code == 5
    assert "--iam needs AWS credentials" in result.stderr
    assert cli.api.sent == []


def test_signing_region_order() -> None:
    prod = "https://abc123def4.execute-api.eu-central-1.amazonaws.com/api"
    assert signing_region(prod, "us-east-1", {}) == "us-east-1"
    assert signing_region(prod, None, {"AWS_REGION": "us-east-1"}) == "eu-central-1"
    assert signing_region("https://api.example.com", None, {"AWS_DEFAULT_REGION": "ap-south-1"}) == "ap-south-1"
    assert signing_region("https://api.example.com", None, {"AWS_REGION": "a", "AWS_DEFAULT_REGION": "b"}) == "a"
    with pytest.raises(SigningError, match="--region"):
        signing_region("https://api.example.com", None, {})
