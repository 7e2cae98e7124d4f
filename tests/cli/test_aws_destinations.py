"""Where AWS-facing options point: `package --upload` checks and names its destination; `--iam` signs for
the active profile's region."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from esdeploy.cli import app
from esdeploy.packaging import PackagingError
from esdeploy.s3upload import UploadError, check_destination
from tests.cli.conftest import Cli
from tests.console_script import no_aws_credentials


@pytest.fixture
def aws_account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Credentials and no AWS_ENDPOINT_URL: what a real account looks like (moto answers in-process)."""
    for name, value in {**no_aws_credentials(tmp_path), "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield s3


def test_a_real_account_is_named_by_its_id(aws_account: Any) -> None:
    destination = check_destination("s3://artifacts/models/")
    assert (destination.bucket, destination.prefix) == ("artifacts", "models")
    assert destination.where.startswith("AWS account 123456789012 (arn:aws:")
    assert destination.folder("m1") == "s3://artifacts/models/m1/"


def test_a_missing_bucket_is_named_with_the_account(aws_account: Any) -> None:
    with pytest.raises(UploadError, match=r"bucket 'nope' at AWS account 123456789012 .* it does not exist"):
        check_destination("s3://nope/models")


def test_package_checks_the_bucket_before_packaging(aws_account: Any, tmp_path: Path) -> None:
    output = tmp_path / "out" / "model.tar.gz"
    result = CliRunner().invoke(app, ["package", str(tmp_path), "--model-id", "m1", "--output", str(output),
                                      "--upload", "s3://nope/models"])
    assert result.exit_code == 1
    assert "upload check failed: bucket 'nope' at AWS account 123456789012" in result.stderr
    assert "package failed" not in result.stderr  # the empty model folder was never looked at
    assert not output.parent.exists()


def test_package_says_where_the_upload_goes_before_it_packages(aws_account: Any, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["package", str(tmp_path), "--model-id", "m1", "--upload", "s3://artifacts/m"])
    assert result.exit_code == 1  # the folder holds no model: packaging fails after the check passed
    lines = result.stderr.splitlines()
    went = next(i for i, line in enumerate(lines) if line.startswith("the upload goes to s3://artifacts/m on AWS"))
    failed = next(i for i, line in enumerate(lines) if line.startswith("package failed"))
    assert went < failed


def test_iam_signs_for_the_active_profiles_region(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("[profile deployer]\nregion = ap-southeast-2\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[deployer]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "deployer")
    cli.api.on("GET", "/models", (200, {"models": []}))
    result = cli("--iam", "models", url="https://api.example.com")
    assert result.exit_code == 0, result.output
    authorization = cli.api.sent[0].headers["Authorization"]
    assert "AKIDEXAMPLE/" in authorization and "/ap-southeast-2/execute-api/" in authorization


def test_the_destination_knows_its_buckets_region(aws_account: Any) -> None:
    assert check_destination("s3://artifacts/models").region == "eu-west-1"


def test_package_for_another_region_than_the_buckets_fails_before_packaging(aws_account: Any, tmp_path: Path) -> None:
    """SageMaker deploys where the artifact is and pulls images only from its own region."""
    output = tmp_path / "out" / "model.tar.gz"
    result = CliRunner().invoke(app, ["package", str(tmp_path), "--model-id", "m1", "--output", str(output),
                                      "--upload", "s3://artifacts/models", "--region", "us-east-1"])
    assert result.exit_code == 1
    assert "--region us-east-1 picks the serving image of us-east-1, but s3://artifacts is in eu-west-1" in (
        result.stderr.replace("\n", " ")
    )
    assert "Traceback" not in result.output and not output.parent.exists()


def test_package_takes_the_image_region_from_the_bucket(
    aws_account: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")  # the bucket's region wins over the environment's
    asked: list[str] = []

    def package(request: Any, progress: Any = None) -> Any:
        asked.append(request.region)
        raise PackagingError("stop here")

    monkeypatch.setattr("esdeploy.packaging.package", package)
    result = CliRunner().invoke(app, ["package", str(tmp_path), "--model-id", "m1", "--upload", "s3://artifacts/m"])
    assert result.exit_code == 1 and asked == ["eu-west-1"]
    assert "the upload goes to s3://artifacts/m on AWS account 123456789012" in result.stderr
    assert "in eu-west-1" in result.stderr
