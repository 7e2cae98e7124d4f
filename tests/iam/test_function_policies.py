"""Each Lambda function has its own least-privilege policy, and it lets the Lambda service run it."""
from __future__ import annotations

import pytest
from policy_sentry.querying.actions import get_actions_for_service

from esdeploy.iam.evaluation import glob_match
from tests.iam.policies import StackValues, function_names, function_policy, policy_file
from tests.iam.runtime import runtime_decisions

VALUES = StackValues(
    region="us-east-1", account="123456789012", stage="dev", resource_prefix="esddev",
    artifact_bucket="esdeploy-dev-artifacts-123456789012-us-east-1", artifact_prefix="models",
    ssm_prefix="/esdeploy/dev", sagemaker_role_arn="arn:aws:iam::123456789012:role/esdeploy-dev-sagemaker",
    default_image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0",
)

# function -> action patterns its policy must not allow, on any resource, under any condition
FORBIDDEN = {
    # Both read the model's latest.json and the manifest at the head of an artifact, to pin it at submit.
    "api_handler": ["sagemaker:Create*", "sagemaker:Delete*", "iam:PassRole", "s3:Put*", "s3:Delete*"],
    "requests_worker": ["sagemaker:*", "iam:PassRole", "s3:Put*", "s3:Delete*", "ssm:*"],
    "deploy_worker": ["sagemaker:Delete*", "sagemaker:List*", "ssm:DeleteParameter"],
    "teardown_worker": ["sagemaker:Create*", "sagemaker:InvokeEndpoint", "iam:PassRole", "s3:*"],
    "deploy_dead_letters": ["sagemaker:*", "iam:PassRole", "s3:*", "ssm:*"],
    "teardown_dead_letters": ["sagemaker:*", "iam:PassRole", "s3:*", "ssm:*", "sqs:SendMessage"],
    # The sweeper writes no task or alias: its one UpdateItem on a task notes a re-kick's time, and
    # on the models table it frees a live-model slot that a crash left taken.
    "sweeper": ["sagemaker:Create*", "sagemaker:Delete*", "sagemaker:InvokeEndpoint", "iam:PassRole", "s3:*",
                "ssm:*", "dynamodb:PutItem", "dynamodb:DeleteItem"],
}


def actions_matching(pattern: str) -> list[str]:
    """Every real IAM action a pattern names (policy_sentry's list), so `sagemaker:*` counts too."""
    service, _, name = pattern.partition(":")
    return [a for a in get_actions_for_service(service) if glob_match(f"{service}:{name}", a, ignore_case=True)]


def test_every_function_of_the_app_has_a_policy_of_its_own() -> None:
    from app import app

    functions = {"api_handler"} | {source.name for source in app.event_sources}
    assert set(function_names()) == functions
    files = [policy_file(f) for f in sorted(functions)]
    assert len(set(files)) == len(files), "two functions share a policy file"
    assert all(path.name == f.replace("_", "-") + ".json" for f, path in zip(sorted(functions), files, strict=True))


@pytest.mark.parametrize("function", sorted(FORBIDDEN))
def test_a_function_is_not_granted_what_it_must_not_do(function: str) -> None:
    statements, _ = function_policy(function, VALUES)
    granted = []
    for pattern in FORBIDDEN[function]:
        actions = actions_matching(pattern)
        assert actions, pattern
        granted += [f"{s.where} allows {a}" for a in actions for s in statements
                    if s.effect == "Allow" and s.matches_action(a)]
    assert granted == []


def test_forbidden_lists_cover_every_function() -> None:
    assert set(FORBIDDEN) == set(function_names())


def test_the_lambda_service_can_run_each_function_with_its_role() -> None:
    """Logs to its own log group, and the SQS event source polls its own queue."""
    decisions = runtime_decisions(VALUES)
    assert {f for f, _ in decisions} == set(function_names())
    denied = [d.explain() for _, d in decisions if not d.allowed]
    assert denied == []
    queues = {(f, d.request.resource) for f, d in decisions if d.request.action == "sqs:ReceiveMessage"}
    assert queues == {
        ("requests_worker", "arn:aws:sqs:us-east-1:123456789012:esdeploy-dev-requests"),
        ("deploy_worker", "arn:aws:sqs:us-east-1:123456789012:esdeploy-dev-deploy-tasks"),
        ("teardown_worker", "arn:aws:sqs:us-east-1:123456789012:esdeploy-dev-teardown-tasks"),
        ("deploy_dead_letters", "arn:aws:sqs:us-east-1:123456789012:esdeploy-dev-deploy-tasks-dlq"),
        ("teardown_dead_letters", "arn:aws:sqs:us-east-1:123456789012:esdeploy-dev-teardown-tasks-dlq"),
    }


@pytest.mark.parametrize("function", ["api_handler", "sweeper"])
def test_a_function_cannot_write_another_functions_logs(function: str) -> None:
    statements, _ = function_policy(function, VALUES)
    other = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/esdeploy-dev-deploy-worker:log-stream:x"
    assert not any(s.matches_action("logs:PutLogEvents") and s.matches_resource(other) for s in statements)


@pytest.mark.parametrize("function", ["api_handler", "requests_worker"])
def test_submit_may_read_only_pointers_and_artifacts(function: str) -> None:
    """What pinning at submit needs: `<prefix>/<model>/latest.json` and a `.tar.gz` under the prefix."""
    statements, _ = function_policy(function, VALUES)
    bucket = f"arn:aws:s3:::{VALUES.artifact_bucket}"

    def may_read(key: str) -> bool:
        return any(s.effect == "Allow" and s.matches_action("s3:GetObject") and s.matches_resource(f"{bucket}/{key}")
                   for s in statements)

    assert may_read("models/m1/latest.json") and may_read(f"models/m1/{'0' * 64}/model.tar.gz")
    assert not may_read(f"models/m1/{'0' * 64}/manifest.json") and not may_read("elsewhere/m1/model.tar.gz")
