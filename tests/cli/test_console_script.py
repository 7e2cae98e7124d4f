"""The installed `esdeploy` command from a directory outside the repo: help, usage errors, user mistakes.

A user mistake ends in one line that names it and a documented exit code, never a traceback.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from chalicelib.version import VERSION
from esdeploy.local.processes import LOOPBACK, free_port
from tests.console_script import esdeploy, no_aws_credentials, user_env


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


def test_help_shows_every_command_and_whole_option_texts(elsewhere: Path) -> None:
    top = esdeploy("--help", cwd=elsewhere)
    assert top.returncode == 0, top.stderr
    for command in ("deploy", "status", "delete", "cancel", "rollback", "models", "model", "invoke", "local",
                    "package", "logs"):
        assert f"\n  {command} " in top.stdout
    assert "esdeploy models --json" in top.stdout  # global options may follow the command
    package = esdeploy("package", "--help", cwd=elsewhere, env=user_env(COLUMNS="200"))
    assert package.returncode == 0, package.stderr
    assert "(default: dist/MODEL_ID/model.tar.gz)" in package.stdout
    assert "Image region (default: the --upload bucket's; else AWS_REGION or us-east-1)." in package.stdout
    assert "Token window (default: the model's)" in package.stdout
    local = esdeploy("local", "--help", cwd=elsewhere, env=user_env(COLUMNS="200"))
    assert "(default: a temp dir, removed at exit)" in local.stdout
    for text in (top.stdout, package.stdout, local.stdout):
        assert "<bool>" not in text  # a flag takes no value
    assert "--normalize / --no-normalize  " in package.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Usage: esdeploy"),
        (["deploy"], "Missing argument"),
        (["models", "--no-such-flag"], "No such option"),
        (["no-such-command"], "No such command"),
        (["--api", "127.0.0.1:8000", "models"], "did you mean http://127.0.0.1:8000?"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(elsewhere: Path, args: list[str], message: str) -> None:
    result = esdeploy(*args, cwd=elsewhere)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_aws_profile_with_iam_is_one_line_and_exit_5(elsewhere: Path) -> None:
    env = user_env(AWS_PROFILE="nosuch", **no_aws_credentials(elsewhere))
    result = esdeploy("--iam", "models", cwd=elsewhere, env=env)
    assert result.returncode == 5
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "nosuch" in result.stderr and "could not be found" in result.stderr


def test_local_on_a_taken_port_says_so_in_one_line_and_leaves_no_temp_folder(elsewhere: Path) -> None:
    temp = elsewhere / "tmp"
    temp.mkdir()
    with socket.socket() as taken:
        taken.bind((LOOPBACK, free_port()))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = esdeploy("local", "--port", str(port), cwd=elsewhere, env=user_env(TMPDIR=str(temp)))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "esdeploy local --port " in result.stderr  # what to do instead
    assert list(temp.iterdir()) == []


def test_package_upload_without_credentials_fails_before_packaging(elsewhere: Path) -> None:
    """The destination is checked first: an empty model directory would fail packaging, but it never gets there."""
    model_dir = elsewhere / "model"
    model_dir.mkdir()
    output = elsewhere / "out" / "model.tar.gz"
    env = user_env(**no_aws_credentials(elsewhere))
    result = esdeploy("package", str(model_dir), "--model-id", "m1", "--output", str(output),
                      "--upload", "s3://some-bucket/models", cwd=elsewhere, env=env)
    assert result.returncode == 1
    assert "upload check failed: no AWS credentials found" in result.stderr
    assert "no config.json" not in result.stderr and "Traceback" not in result.stderr
    assert not output.exists() and not output.parent.exists()


def test_package_upload_to_an_endpoint_that_does_not_answer_fails_before_packaging(elsewhere: Path) -> None:
    env = user_env(AWS_ENDPOINT_URL=f"http://{LOOPBACK}:{free_port()}", AWS_ACCESS_KEY_ID="local",
                   AWS_SECRET_ACCESS_KEY="local", AWS_DEFAULT_REGION="us-east-1")
    result = esdeploy("package", str(elsewhere), "--model-id", "m1", "--upload", "s3://some-bucket/models",
                      cwd=elsewhere, env=env)
    assert result.returncode == 1
    assert "upload check failed: bucket 'some-bucket' at the endpoint http://127.0.0.1:" in result.stderr
    assert "AWS_ENDPOINT_URL; not AWS" in result.stderr
    assert "Could not connect" in result.stderr and "Traceback" not in result.stderr


def test_local_with_a_state_dir_it_cannot_make_says_so_in_one_line(elsewhere: Path) -> None:
    a_file = elsewhere / "a-file"
    a_file.write_text("not a folder")
    result = esdeploy("local", "--port", str(free_port()), "--state-dir", str(a_file / "state"), cwd=elsewhere)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "Not a directory" in result.stderr and str(a_file) in result.stderr


def test_shell_completion_completes_commands_and_options(elsewhere: Path) -> None:
    """typer's completion, as bash asks for it once `esdeploy --install-completion` wired it up."""
    commands = esdeploy(cwd=elsewhere, env=user_env(_ESDEPLOY_COMPLETE="complete_bash", COMP_WORDS="esdeploy de",
                                                    COMP_CWORD="1"))
    assert commands.returncode == 0 and commands.stdout.split() == ["deploy", "delete"]
    options = esdeploy(cwd=elsewhere, env=user_env(_ESDEPLOY_COMPLETE="complete_bash", COMP_WORDS="esdeploy --pro",
                                                   COMP_CWORD="1"))
    assert options.stdout.split() == ["--profile"]
    # Users get their own shell's script (typer detects it); the test names bash, whatever shell runs it.
    script = esdeploy("--show-completion", "bash", cwd=elsewhere,
                      env=user_env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"))
    assert script.returncode == 0 and "_esdeploy_completion" in script.stdout and "complete " in script.stdout


def test_version_of_the_installed_command(elsewhere: Path) -> None:
    result = esdeploy("--version", cwd=elsewhere)
    assert result.returncode == 0 and result.stdout.strip() == f"esdeploy {VERSION}"
