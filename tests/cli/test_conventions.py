"""CLI conventions users know from other tools: --version, --output json|table (--json), --profile, logs."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.version import VERSION
from esdeploy import __version__, extras
from esdeploy.task_logs import from_insights, insights_query, log_groups
from tests.cli.conftest import Cli

MODELS = {"models": [{"embedding_model_id": "m1", "endpoint_name": "esd-m1-a", "previous_endpoint_name": None,
                      "task_id": "t1", "swapped_at": "2025-01-01T00:00:00.000000Z", "version": 1}]}


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"esdeploy {__version__}\n"
    assert __version__ == VERSION == version("esdeploy")  # chalicelib/version.py's, which pyproject reads
    assert cli.api.sent == []


@pytest.mark.parametrize("flags", [["--output", "json"], ["--json"], ["--output", "JSON"]])
def test_output_json_and_its_alias_print_the_apis_answer(cli: Cli, flags: list[str]) -> None:
    cli.api.on("GET", "/models", (200, MODELS))
    result = cli(*flags, "models")
    assert result.exit_code == 0 and json.loads(result.stdout) == MODELS


def test_output_table_is_for_people(cli: Cli) -> None:
    cli.api.on("GET", "/models", (200, MODELS))
    result = cli("models", "--output", "table")  # a global option after the command, too
    assert result.exit_code == 0 and "esd-m1-a" in result.stdout
    with pytest.raises(ValueError):
        json.loads(result.stdout)


@pytest.mark.parametrize("flags", [["--output", "yaml"], ["--json", "--output", "table"]])
def test_an_output_format_that_is_not_one_is_a_usage_error(cli: Cli, flags: list[str]) -> None:
    result = cli(*flags, "models")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--output" in result.stderr
    assert cli.api.sent == []


@pytest.fixture
def profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two profiles, each with its own region and keys; the environment names none of them."""
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\n[profile deployer]\nregion = ap-southeast-2\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s\n"
                           "[deployer]\naws_access_key_id = AKIDDEPLOYER\naws_secret_access_key = s\n")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))


def test_profile_signs_with_that_profiles_keys_for_its_region(cli: Cli, profiles: None) -> None:
    cli.api.on("GET", "/models", (200, {"models": []}))
    result = cli("--iam", "--profile", "deployer", "models", url="https://api.example.com")
    assert result.exit_code == 0, result.output
    authorization = cli.api.sent[0].headers["Authorization"]
    assert "AKIDDEPLOYER/" in authorization and "/ap-southeast-2/execute-api/" in authorization


def test_an_unknown_profile_is_named_without_a_traceback(cli: Cli, profiles: None) -> None:
    result = cli("--iam", "--profile", "nobody", "models", url="https://api.example.com")
    assert result.exit_code == 5 and "Traceback" not in result.output
    assert "nobody" in result.stderr and "--profile nobody" in result.stderr
    assert cli.api.sent == []


def _line(task_id: str, message: str, **fields: Any) -> str:
    return json.dumps({"level": "INFO", "location": "x:1", "message": message,
                       "timestamp": "2026-01-01 00:00:01,000+0000", "service": "esdeploy", "task_id": task_id,
                       "name": "chalicelib.services.tasks", **fields})


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "esdeploy.log"
    path.write_text("\n".join([
        _line("t1", "task submitted", kind="deploy", embedding_model_id="m1"),
        _line("t2", "task submitted", kind="delete", embedding_model_id="m2"),
        "Traceback (most recent call last):",  # not a JSON line: skipped
        # `--wait` polling the task: reads, not something that happened to it
        _line("t1", "http request", http_method="GET", route="/deploy/{task_id}", status_code=200,
              embedding_model_id="m1"),
        _line("t1", "http request", http_method="HEAD", route="/deploy/{task_id}", status_code=200),
        _line("t1", "deploy step", stage="creating", embedding_model_id="m1"),
        _line("t3", "task submitted", kind="deploy", embedding_model_id="m1"),
    ]) + "\n")
    return path


def test_logs_of_a_task_from_the_local_stacks_file(cli: Cli, log_file: Path) -> None:
    result = cli("logs", "t1", "--log-file", str(log_file))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "task submitted" in lines[0] and "kind=deploy" in lines[0]
    assert "name=" not in result.stdout  # the logger's name says nothing the columns do not
    assert "deploy step" in lines[1] and "stage=creating" in lines[1]


def test_logs_reads_the_file_esdeploy_local_exported(
    cli: Cli, log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESDEPLOY_LOG_FILE", str(log_file))
    result = cli("logs", "t2", "--output", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["task_id"] == "t2" and [line["kind"] for line in answer["lines"]] == ["delete"]


def test_logs_of_an_unknown_task_is_an_error_that_says_so(cli: Cli, log_file: Path) -> None:
    result = cli("logs", "t9", "--log-file", str(log_file))
    assert result.exit_code == 5 and result.stdout == ""
    said = " ".join(result.stderr.split())
    assert f"no log lines of task t9 in {log_file}" in said and "esdeploy status t9" in said


def test_logs_leave_out_the_reads_of_the_task(cli: Cli, log_file: Path) -> None:
    """A `--wait` polls the task every 1.5 s: those GETs are not what happened to it."""
    result = cli("--json", "logs", "t1", "--log-file", str(log_file))
    assert [line["message"] for line in json.loads(result.stdout)["lines"]] == ["task submitted", "deploy step"]


def test_logs_of_a_model_are_every_task_of_it_each_named(cli: Cli, log_file: Path) -> None:
    result = cli("logs", "--model", "m1", "--log-file", str(log_file))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert ["task t1" in lines[0], "task t1" in lines[1], "task t3" in lines[2]] == [True, True, True]
    assert "deploy step" in lines[1] and "http request" not in result.stdout
    answer = json.loads(cli("--json", "logs", "--model", "m1", "--log-file", str(log_file)).stdout)
    assert answer["embedding_model_id"] == "m1" and [line["task_id"] for line in answer["lines"]] == ["t1", "t1", "t3"]


@pytest.mark.parametrize("args", [[], ["t1", "--model", "m1"]])
def test_logs_takes_a_task_or_a_model(cli: Cli, log_file: Path, args: list[str]) -> None:
    result = cli("logs", *args, "--log-file", str(log_file))
    assert result.exit_code == 2 and "give a TASK_ID or --model MODEL_ID" in result.stderr


def test_logs_of_a_file_that_is_not_there(cli: Cli, tmp_path: Path) -> None:
    result = cli("logs", "t1", "--log-file", str(tmp_path / "nope.log"))
    assert result.exit_code == 5 and "cannot read the log file" in result.stderr
    assert "Traceback" not in result.output


def test_a_task_id_that_could_not_be_one_is_a_usage_error(cli: Cli, log_file: Path) -> None:
    result = cli("logs", 'x" or 1=1', "--log-file", str(log_file))
    assert result.exit_code == 2 and "is not a task id" in result.stderr


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's CloudWatch Logs with the dev stage's function log groups, as Lambda writes them."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("ESDEPLOY_LOG_FILE", raising=False)
    now = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    with mock_aws():
        logs = boto3.client("logs", region_name="us-east-1")
        for group in log_groups("dev"):
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName="s")
        logs.put_log_events(logGroupName="/aws/lambda/esdeploy-dev-api-handler", logStreamName="s", logEvents=[
            {"timestamp": now - 4_000, "message": _line("t1", "task submitted", embedding_model_id="m1")},
            {"timestamp": now - 3_000, "message": _line("t2", "task submitted", embedding_model_id="m2")},
            {"timestamp": now - 2_500, "message": _line("t1", "http request", http_method="GET")},
        ])
        logs.put_log_events(logGroupName="/aws/lambda/esdeploy-dev-deploy-worker", logStreamName="s", logEvents=[
            {"timestamp": now - 2_000, "message": "START RequestId: 1 Version: $LATEST"},
            {"timestamp": now - 1_000, "message": _line("t1", "deploy step", stage="waiting", embedding_model_id="m1")},
        ])
        yield logs


class Recording:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.queries: list[dict[str, Any]] = []

    def start_query(self, **kwargs: Any) -> Any:
        self.queries.append(kwargs)
        return self._client.start_query(**kwargs)

    def get_query_results(self, **kwargs: Any) -> Any:
        return self._client.get_query_results(**kwargs)


def test_insights_asks_every_function_of_the_stage_for_the_tasks_lines(cloudwatch: Any) -> None:
    logs = Recording(cloudwatch)
    lines = from_insights(logs, "dev", "t1", since_seconds=3600, sleep=lambda _: None)
    assert [(line.source.rsplit("-", 2)[-2:], line.record["message"]) for line in lines] == [
        (["api", "handler"], "task submitted"), (["deploy", "worker"], "deploy step")
    ]
    [query] = logs.queries
    assert query["queryString"] == insights_query("t1")
    assert 'filter task_id = "t1"' in query["queryString"] and "sort @timestamp asc" in query["queryString"]
    assert 'filter not (message = "http request" and http_method in ["GET", "HEAD"])' in query["queryString"]
    assert sorted(query["logGroupNames"]) == sorted(log_groups("dev")) and len(log_groups("dev")) == 7


def test_logs_on_aws_through_the_cli(cli: Cli, cloudwatch: Any) -> None:
    cli.clock.now = time.time()
    result = cli("logs", "t1", "--since-hours", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "api-handler" in lines[0] and "deploy-worker  deploy step" in lines[1]


def test_logs_of_a_model_on_aws(cli: Cli, cloudwatch: Any) -> None:
    cli.clock.now = time.time()
    result = cli("logs", "--model", "m1", "--since-hours", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("task t1" in line for line in lines)


def test_logs_of_a_stage_that_is_not_there(cli: Cli, cloudwatch: Any) -> None:
    result = cli("logs", "t1", "--stage", "qa")
    assert result.exit_code == 5 and "Traceback" not in result.output
    assert "is --stage right?" in result.stderr.replace("\n", " ")


def test_logs_ask_cloudwatch_in_the_profiles_region(cli: Cli, profiles: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESDEPLOY_LOG_FILE", raising=False)
    now = int(time.time() * 1000)
    with mock_aws():
        logs = boto3.client("logs", region_name="ap-southeast-2", aws_access_key_id="x", aws_secret_access_key="x")
        for group in log_groups("dev"):
            logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=log_groups("dev")[0], logStreamName="s")
        logs.put_log_events(logGroupName=log_groups("dev")[0], logStreamName="s",
                            logEvents=[{"timestamp": now, "message": _line("t1", "task submitted")}])
        cli.clock.now = time.time()
        result = cli("--profile", "deployer", "logs", "t1")
        elsewhere = cli("logs", "t1")  # the default profile's region (us-east-1) has no such log groups
    assert result.exit_code == 0, result.output
    assert "task submitted" in result.stdout
    assert elsewhere.exit_code == 5 and "is --stage right?" in elsewhere.stderr.replace("\n", " ")


@pytest.mark.parametrize(
    ("command", "extra", "lacking"),
    [
        (["package", ".", "--model-id", "m1"], "package", "torch"),
        (["local", "--port", "8123"], "local", "chalice"),
        (["local", "--port", "8123"], "local", "torch"),  # esdeploy[local] includes esdeploy[package]
    ],
)
def test_a_command_whose_extra_is_not_installed_says_what_to_install(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, command: list[str], extra: str, lacking: str
) -> None:
    """`pip install esdeploy` is the client and the CLI; package and local need their extras."""
    installed = extras.version

    def version(name: str) -> str:
        if name == lacking:
            raise PackageNotFoundError(name)
        return installed(name)

    monkeypatch.setattr(extras, "version", version)
    result = cli(*command)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    said = f"esdeploy {command[0]} needs {lacking}, not installed here: pip install 'esdeploy[{extra}]'"
    assert said in result.stderr
    assert cli.api.sent == []
