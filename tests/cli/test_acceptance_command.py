"""`esdeploy acceptance` before anything is made: the plan without --yes, and each refusal that comes first.

In-process on moto (the `aws` fixture: the test stage's bucket) with a scripted API; the runs
themselves are tests/e2e/test_acceptance.py's, on the installed command and `esdeploy local`.
"""
from __future__ import annotations

from typing import Any

from tests.cli.conftest import Cli

MODEL = "esdeploy-acceptance"
STAGE = ["acceptance", "--stage", "test", "--upload", "s3://esdeploy-test-artifacts/models",
         "--ssm-prefix", "/esdeploy/test"]
NOT_DEPLOYED = (404, {"detail": f"Model `{MODEL}` is not deployed"})


def made(aws: dict[str, Any]) -> list[str]:
    """What exists of a run in the embedded AWS: artifacts, observer queues and rules."""
    session = aws["session"]
    objects = session.client("s3").list_objects_v2(Bucket="esdeploy-test-artifacts").get("Contents", [])
    queues = session.client("sqs").list_queues(QueueNamePrefix="esdeploy-acceptance-").get("QueueUrls", [])
    rules = session.client("events").list_rules(NamePrefix="esdeploy-acceptance-")["Rules"]
    return [o["Key"] for o in objects] + queues + [r["Name"] for r in rules]


def test_without_yes_the_plan_is_printed_and_nothing_is_deployed_or_made(cli: Cli, aws: dict[str, Any]) -> None:
    cli.api.on("GET", f"/models/{MODEL}", NOT_DEPLOYED)

    result = cli(*STAGE)

    assert result.exit_code == 0, result.output
    assert "the plan (nothing has been created yet)" in result.stderr
    assert "AWS account 123456789012" in result.stderr and "region us-east-1" in result.stderr
    assert "instance: ml.m5.large (8 GiB, CPU)" in result.stderr
    assert "cost: about $0.18 (1.5 instance-hours at $0.115/h" in result.stderr
    assert "nothing was created: run it again with --yes" in result.stderr
    assert [(sent.method, sent.path) for sent in cli.api.sent] == [("GET", f"/models/{MODEL}")]
    assert made(aws) == []


def test_a_model_id_in_use_is_refused_because_the_teardown_would_delete_it(cli: Cli, aws: dict[str, Any]) -> None:
    cli.api.on("GET", f"/models/{MODEL}", (200, {"embedding_model_id": MODEL, "endpoint_name": "esdtest-x-1"}))

    result = cli(*STAGE, "--yes")

    assert result.exit_code == 2, result.output
    assert f"model {MODEL} is deployed on this stage (live: esdtest-x-1)" in result.stderr
    assert "--tear-down-only" in result.stderr
    assert [sent.method for sent in cli.api.sent] == ["GET"]
    assert made(aws) == []


def test_an_instance_type_without_a_known_price_is_refused(cli: Cli, aws: dict[str, Any]) -> None:
    result = cli(*STAGE, "--instance-type", "ml.p5.48xlarge", "--yes")

    assert result.exit_code == 2, result.output
    assert "no published price is known for 'ml.p5.48xlarge'" in result.stderr
    assert cli.api.sent == [] and made(aws) == []


def test_a_probe_that_is_not_one_is_refused(cli: Cli, aws: dict[str, Any]) -> None:
    result = cli(*STAGE, "--probe", "serverless", "--yes")

    assert result.exit_code == 2, result.output
    assert "--probe inference-components" in result.stderr
    assert made(aws) == []


def test_a_stage_without_its_stack_says_what_to_deploy_or_pass(cli: Cli, aws: dict[str, Any]) -> None:
    result = cli("acceptance", "--stage", "dev", "--yes")

    assert result.exit_code == 5, result.output
    assert "the stack esdeploy-dev cannot be read" in result.stderr
    assert "make deploy STAGE=" in result.stderr and "--upload" in result.stderr
    assert cli.api.sent == [] and made(aws) == []
