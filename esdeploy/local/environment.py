"""Local stack: the settings of the `local` stage (what .chalice/config.json holds for AWS stages)."""
from __future__ import annotations

LOCAL_REGION = "us-east-1"


def local_environment(aws_endpoint: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the app and boto3 when the AWS services are an embedded moto server."""
    env = {
        "ESDEPLOY_STAGE": "local",
        "ESDEPLOY_TASKS_TABLE": "esdeploy-local-tasks",
        "ESDEPLOY_MODELS_TABLE": "esdeploy-local-models",
        "ESDEPLOY_REQUESTS_QUEUE": "esdeploy-local-requests",
        "ESDEPLOY_DEPLOY_QUEUE": "esdeploy-local-deploy-tasks",
        "ESDEPLOY_TEARDOWN_QUEUE": "esdeploy-local-teardown-tasks",
        "ESDEPLOY_ARTIFACT_BUCKET": "esdeploy-local-artifacts",
        "ESDEPLOY_ARTIFACT_PREFIX": "models/",
        "ESDEPLOY_ALLOWED_INSTANCE_TYPES": "ml.g5.xlarge,ml.g5.2xlarge,ml.g6.xlarge",
        "ESDEPLOY_DEFAULT_INSTANCE_TYPE": "ml.g5.xlarge",
        "ESDEPLOY_DEFAULT_IMAGE_URI": (
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
            "2.6.0-transformers4.49.0-gpu-py312-cu124-ubuntu22.04"
        ),
        "ESDEPLOY_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/esdeploy-local-sagemaker",
        "ESDEPLOY_RESOURCE_PREFIX": "esdlocal",
        "ESDEPLOY_SSM_PREFIX": "/esdeploy/local",
        # A laptop variant is up in seconds, not minutes: poll and bake on that scale.
        "ESDEPLOY_POLL_INITIAL_SECONDS": "2",
        "ESDEPLOY_POLL_MAX_SECONDS": "5",
        "ESDEPLOY_DEFAULT_BAKE_SECONDS": "20",
        "ESDEPLOY_DEPLOY_DEADLINE_SECONDS": "600",
        "ESDEPLOY_MAX_DEPLOYED_MODELS": "5",
        "ESDEPLOY_SMOKE_MIN_COSINE": "0.999",
        "POWERTOOLS_SERVICE_NAME": "esdeploy",
        "POWERTOOLS_METRICS_NAMESPACE": "esdeploy/local",
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    env.update(overrides or {})
    return env
