"""`esdeploy doctor` against the embedded AWS in this process: a ready stage passes, and each way an
account is not ready (a quota, the service-linked role, a grant, the image, a dead letter) fails
its check with what to do, while the others stay ok.

One embedded AWS for the module (the local stack's: moto behind esdeploy/local/aws_server.py, the
test stage's whole stack with roles and functions, the real app's /health); each case changes the
account in place and puts it back.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from esdeploy.cli import app
from esdeploy.iam.aws_checks import SAGEMAKER_SCALING_ROLE, SAGEMAKER_SCALING_SERVICE
from esdeploy.iam.code_calls import load
from esdeploy.local.account import endpoint_usage_quota, policy_document, settle_account
from esdeploy.local.aws_server import EmbeddedAws
from esdeploy.local.embedded_aws import create_resources
from esdeploy.local.processes import LOOPBACK, free_port
from tests.conftest import TEST_ENV

STAGE = TEST_ENV["ESDEPLOY_STAGE"]
ALLOWED = TEST_ENV["ESDEPLOY_ALLOWED_INSTANCE_TYPES"].split(",")
REGION = "us-east-1"


@dataclass
class Account:
    server: EmbeddedAws
    session: Any

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def role_of(self, function: str) -> str:
        arn = self.client("lambda").get_function_configuration(
            FunctionName=f"esdeploy-{STAGE}-{function.replace('_', '-')}")["Role"]
        return str(arn.rsplit("/", 1)[-1])

    @contextmanager
    def without_statement(self, role: str, policy: str, sid: str) -> Iterator[None]:
        """The role's inline policy without one statement, for the time of a case."""
        iam = self.client("iam")
        document = policy_document(iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"])
        kept = dict(document, Statement=[s for s in document["Statement"] if s.get("Sid") != sid])
        assert len(kept["Statement"]) == len(document["Statement"]) - 1, sid
        iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(kept))
        try:
            yield
        finally:
            iam.put_role_policy(RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document))


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    from app import app as chalice_app
    from esdeploy.local.http_server import create_api_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs each request, as the stack says
    server = EmbeddedAws(LOOPBACK, free_port())
    server.start()
    api = create_api_server(chalice_app, LOOPBACK, 0)
    threading.Thread(target=api.serve_forever, name="doctor-api", daemon=True).start()
    api_url = f"http://{LOOPBACK}:{api.server.server_address[1]}/"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "local",
                            "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION}.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            patch.delenv(name, raising=False)
        session = boto3.Session(region_name=REGION)
        create_resources(session, TEST_ENV, functions=True, outputs={"EndpointURL": api_url})
        settle_account(session, server.quotas, ALLOWED)
        try:
            yield Account(server, session)
        finally:
            api.shutdown()
            api.server.server_close()
            server.stop()


def doctor(*args: str) -> tuple[int, str]:
    """Exit code and stdout of `esdeploy [ARGS] doctor --stage test`."""
    result = CliRunner().invoke(app, [*args, "doctor", "--stage", STAGE])
    return result.exit_code, result.stdout


def line(output: str, check: str) -> str:
    """The one line of `check` (the checks print one line each)."""
    found = [text for text in output.splitlines() if f" {check}:" in text]
    assert len(found) == 1, (check, output)
    return found[0]


def problems(output: str) -> list[str]:
    return [text for text in output.splitlines() if text.startswith("PROBLEM")]


def test_a_ready_stage_passes_every_check(account: Account) -> None:
    code, output = doctor()
    assert code == 0, output
    assert problems(output) == []
    for check in ("stack", "outputs", "api", "functions", "service-linked role", "role deploy_worker",
                  "role endpoint_log_retention", "serving image", "artifacts", "ssm", "dead letters deploy tasks",
                  "dead letters teardown tasks", *(f"quota {t}" for t in ALLOWED)):
        assert line(output, check).startswith("ok"), check
    assert f"stage {STAGE} is ready" in output
    simulated = [e for e in load() if e.function == "deploy_worker" and e.principal == "function"
                 and not e.unless_role_exists]  # the role exists: no need to be able to create it
    assert f"may do the {len(simulated)} things its code asks for" in line(output, "role deploy_worker")


def test_json_lists_each_check_and_its_status(account: Account) -> None:
    code, output = doctor("--json")
    assert code == 0
    report = json.loads(output)
    assert report["ok"] is True and report["region"] == REGION and report["stage"] == STAGE
    assert {c["status"] for c in report["checks"]} == {"ok"}
    assert "quota ml.g5.xlarge" in {c["check"] for c in report["checks"]}


def test_a_quota_below_blue_and_green_says_how_to_ask_for_more(account: Account) -> None:
    quotas = account.server.quotas
    name = endpoint_usage_quota("ml.g5.xlarge")
    quotas.set(name, None, default=0)  # never applied for: the AWS default
    try:
        code, output = doctor()
        assert code == 1
        assert problems(output) == [line(output, "quota ml.g5.xlarge")]
        problem = line(output, "quota ml.g5.xlarge")
        assert "ml.g5.xlarge for endpoint usage is 0 (AWS default); blue and green need 2" in problem
        assert (f"aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code "
                f"{quotas.code(name)} --desired-value 2") in problem
        quotas.request_increase(name, 4)
        _, asked = doctor()
        assert "asked for 4 (CASE_OPENED)" in line(asked, "quota ml.g5.xlarge")
        assert "wait for the request" in line(asked, "quota ml.g5.xlarge")
    finally:
        quotas.requests.clear()
        quotas.set(name, 2)


def test_the_service_linked_role_missing_is_fine_only_while_the_deploy_worker_may_create_it(account: Account) -> None:
    iam = account.client("iam")
    iam.delete_service_linked_role(RoleName=SAGEMAKER_SCALING_ROLE)
    try:
        code, output = doctor()
        assert code == 0, output
        assert "does not exist yet; the deploy worker may create it" in line(output, "service-linked role")
        with account.without_statement(account.role_of("deploy_worker"), "DeployWorkerRolePolicy",
                                       "CreateScalingRoleOnFirstUse"):
            code, output = doctor()
        assert code == 1
        problem = line(output, "service-linked role")
        assert problem.startswith("PROBLEM") and "may not create it" in problem
        assert f"aws iam create-service-linked-role --aws-service-name {SAGEMAKER_SCALING_SERVICE}" in problem
        assert "iam:CreateServiceLinkedRole" in line(output, "role deploy_worker")
    finally:
        iam.create_service_linked_role(AWSServiceName=SAGEMAKER_SCALING_SERVICE)
    assert doctor()[0] == 0


def test_a_grant_aws_checks_on_its_own_is_named_with_its_rule(account: Account) -> None:
    """Application Auto Scaling's validation of its caller: the deploy worker without it fails only its
    own line, which names the missing grants, the rule and the policy file to put back."""
    with account.without_statement(account.role_of("deploy_worker"), "DeployWorkerRolePolicy",
                                   "ApplicationAutoScalingChecksItsCaller"):
        code, output = doctor()
    assert code == 1
    assert problems(output) == [line(output, "role deploy_worker")]
    problem = line(output, "role deploy_worker")
    assert ("may not: cloudwatch:DeleteAlarms, cloudwatch:PutMetricAlarm, sagemaker:DescribeEndpoint, "
            "sagemaker:DescribeEndpointConfig, sagemaker:UpdateEndpointWeightsAndCapacities on * "
            "[AWS's own check: Application Auto Scaling checks that its caller") in problem
    assert "infra/iam/deploy-worker.json" in problem
    _, report = doctor("--json")
    assert json.loads(report)["ok"] is True  # put back


def test_a_grant_the_code_needs_is_named(account: Account) -> None:
    with account.without_statement(account.role_of("teardown_worker"), "TeardownWorkerRolePolicy",
                                   "DeleteOurSageMakerResources"):
        code, output = doctor("--json")
    assert code == 1
    report = json.loads(output)
    (problem,) = [c for c in report["checks"] if c["status"] == "problem"]
    assert problem["check"] == "role teardown_worker"
    missing = {(m["action"], m["resource"].split(":")[-1]) for m in problem["missing"]}
    assert ("sagemaker:DeleteEndpoint", f"endpoint/{report_variant()}") in missing
    assert "infra/iam/teardown-worker.json" in problem["fix"]


def report_variant() -> str:
    from chalicelib.domain.names import variant_name
    from esdeploy.iam.code_calls import EXAMPLE_MODEL_ID, EXAMPLE_TASK_ID

    return variant_name(TEST_ENV.get("ESDEPLOY_RESOURCE_PREFIX", "esd"), EXAMPLE_MODEL_ID, EXAMPLE_TASK_ID)


def test_an_image_the_execution_role_may_not_pull_fails_the_image_check(account: Account) -> None:
    role = TEST_ENV["ESDEPLOY_SAGEMAKER_ROLE_ARN"].rsplit("/", 1)[-1]
    with account.without_statement(role, "serve-embedding-models", "PullServingImage"):
        code, output = doctor()
    assert code == 1
    problem = line(output, "serving image")
    assert problem.startswith("PROBLEM")
    assert "ecr:BatchGetImage, ecr:GetDownloadUrlForLayer on arn:aws:ecr:us-east-1:763104351884:repository/" in problem


def test_an_ssm_prefix_without_the_stacks_parameter_says_to_deploy_again(account: Account) -> None:
    ssm = account.client("ssm")
    name = f"{TEST_ENV['ESDEPLOY_SSM_PREFIX']}/stack/artifact-bucket"
    ssm.delete_parameter(Name=name)
    try:
        code, output = doctor()
    finally:
        ssm.put_parameter(Name=name, Value=TEST_ENV["ESDEPLOY_ARTIFACT_BUCKET"], Type="String")
    assert code == 1
    assert problems(output) == [line(output, "ssm")]
    assert f"{name} does not exist" in line(output, "ssm") and "make deploy STAGE=test" in line(output, "ssm")


def test_dead_letters_say_how_many_tasks_died_and_why(account: Account) -> None:
    dynamodb, sqs = account.client("dynamodb"), account.client("sqs")
    dynamodb.put_item(TableName=TEST_ENV["ESDEPLOY_TASKS_TABLE"], Item={
        "task_id": {"S": "t-dead"}, "status": {"S": "failed"}, "detail": {"S": "SageMaker refused the model"}})
    dlq = sqs.get_queue_url(QueueName=f"esdeploy-{STAGE}-deploy-tasks-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"action": "advance", "task_id": "t-dead", "version": 3}))
    try:
        code, output = doctor()
        assert code == 1
        assert problems(output) == [line(output, "dead letters deploy tasks")]
        problem = line(output, "dead letters deploy tasks")
        assert "1 message(s) in esdeploy-test-deploy-tasks-dlq: task t-dead (Advance): failed - SageMaker refused" \
            in problem
        assert "esdeploy logs t-dead" in problem and "deploy_dead_letters drains" in problem
        assert doctor()[0] == 1  # a look does not take the message away
    finally:
        sqs.purge_queue(QueueUrl=dlq)


def test_before_the_first_deploy_the_account_is_checked_all_the_same(account: Account) -> None:
    """No stack esdeploy-dev yet: that is a problem, and the quotas of dev's instance types (from this
    checkout's .chalice/config.json) and the service-linked role are checked too."""
    result = CliRunner().invoke(app, ["doctor", "--stage", "dev"])
    assert result.exit_code == 1
    output = result.stdout
    assert line(output, "stack").startswith("PROBLEM  stack: no stack esdeploy-dev in us-east-1")
    assert "make deploy STAGE=dev" in line(output, "stack")
    assert line(output, "quota ml.g5.xlarge").startswith("ok")  # settled for the test stage, the same account
    assert line(output, "quota ml.g6.xlarge").startswith("PROBLEM")  # dev allows it, this account has none
    assert line(output, "service-linked role").startswith("ok")
    assert "role deploy_worker" not in output


def test_a_stack_that_is_not_a_whole_esdeploy_stack_names_what_it_lacks(account: Account) -> None:
    """A stack of tables and queues only (the embedded AWS without its account part): no outputs, no
    functions; each says so, and what needs them is left out."""
    bare = {**TEST_ENV, "ESDEPLOY_STAGE": "bare", **{k: v.replace("-test-", "-bare-") for k, v in TEST_ENV.items()
                                                     if k.endswith(("_TABLE", "_QUEUE", "_BUCKET"))}}
    create_resources(account.session, bare)
    result = CliRunner().invoke(app, ["doctor", "--stage", "bare"])
    assert result.exit_code == 1, result.output
    output = result.stdout
    assert line(output, "stack").startswith("ok")
    assert "esdeploy-bare lacks the outputs Stage, ResourcePrefix" in line(output, "outputs")
    assert "has no function for api_handler" in line(output, "functions")
    assert "role deploy_worker" not in output and "Traceback" not in result.output


def test_an_unknown_profile_is_exit_5_before_any_check(account: Account) -> None:
    result = CliRunner().invoke(app, ["--profile", "nosuch-profile", "doctor", "--stage", STAGE])
    assert result.exit_code == 5
    assert "nosuch-profile" in result.output


@contextmanager
def function_environment(account: Account, function: str, **changed: str) -> Iterator[None]:
    """A deployed function's environment with some variables changed, for the time of a case."""
    lam = account.client("lambda")
    name = f"esdeploy-{STAGE}-{function.replace('_', '-')}"
    before = lam.get_function_configuration(FunctionName=name).get("Environment", {}).get("Variables", {})
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {**before, **changed}})
    try:
        yield
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": before})


def test_every_serving_image_of_the_stage_is_checked_each_with_its_own_words(account: Account) -> None:
    """The handler's and TEI's images per processor: one in another region, one from a repository the
    execution role may not pull; the line names each and what to do."""
    code, output = doctor()
    assert code == 0 and "4 image(s) (the default image, the handler-cpu image, the tei-gpu image, the tei-cpu " \
        "image) are in us-east-1" in line(output, "serving image")
    images = {
        "handler-gpu": TEST_ENV["ESDEPLOY_DEFAULT_IMAGE_URI"],
        "tei-gpu": "683313688378.dkr.ecr.eu-west-1.amazonaws.com/tei:2.0.1-tei1.8.2-gpu-py310-cu122-ubuntu22.04",
        "tei-cpu": "111122223333.dkr.ecr.us-east-1.amazonaws.com/tei-cpu:1.8",
    }
    with function_environment(account, "deploy_worker",
                              ESDEPLOY_SERVING_IMAGES=",".join(f"{k}={v}" for k, v in images.items())):
        code, output = doctor("--json")
    assert code == 1
    (problem,) = [c for c in json.loads(output)["checks"] if c["status"] == "problem"]
    assert problem["check"] == "serving image"
    assert (f"the tei-gpu image {images['tei-gpu']} is in eu-west-1, the stack in us-east-1: SageMaker pulls images "
            "only from its own region") in problem["detail"]
    assert ("may not pull the tei-cpu image: ecr:BatchGetImage, ecr:GetDownloadUrlForLayer on "
            "arn:aws:ecr:us-east-1:111122223333:repository/tei-cpu") in problem["detail"]
    assert "AWS_REGION=us-east-1 make package deploy STAGE=test" in problem["fix"]
    assert {m["resource"] for m in problem["missing"]} == {"arn:aws:ecr:us-east-1:111122223333:repository/tei-cpu"}


def test_an_api_that_does_not_answer_fails_its_check_and_says_where_to_look(account: Account) -> None:
    """A stage whose API URL answers nothing (a deleted API stage, say): the api line says so."""
    dead = f"http://{LOOPBACK}:{free_port()}/"
    gone = {k: v.replace("esdeploy-test-", "esdeploy-noapi-") for k, v in TEST_ENV.items()}
    gone.update(ESDEPLOY_STAGE="noapi", ESDEPLOY_SSM_PREFIX="/esdeploy/noapi")
    create_resources(account.session, gone, functions=True, outputs={"EndpointURL": dead})
    result = CliRunner().invoke(app, ["doctor", "--stage", "noapi"])
    problem = line(result.stdout, "api")
    assert problem.startswith(f"PROBLEM  api: GET {dead.rstrip('/')}/health:")
    assert "check the API stage in the API Gateway console" in problem
    assert line(result.stdout, "outputs").startswith("ok") and "Traceback" not in result.output


def test_a_stack_still_being_made_says_to_wait(account: Account) -> None:
    """moto leaves a stack whose resource it could not make CREATE_IN_PROGRESS (CloudFormation would
    roll it back): doctor names the status and says to wait, and checks nothing that needs it."""
    cloudformation = account.client("cloudformation")
    with contextlib.suppress(Exception):  # moto raises the resource's own error from create_stack
        cloudformation.create_stack(StackName="esdeploy-unfinished", TemplateBody=json.dumps({
            "Resources": {"Table": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "half"}}}}))
    result = CliRunner().invoke(app, ["doctor", "--stage", "unfinished"])
    assert result.exit_code == 1
    problem = line(result.stdout, "stack")
    assert problem.startswith("PROBLEM  stack: esdeploy-unfinished is CREATE_IN_PROGRESS in us-east-1"), problem
    assert "wait until it is complete, then run doctor again" in problem
    assert "outputs" not in result.stdout and "Traceback" not in result.output
