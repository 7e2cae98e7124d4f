"""Operator tool layer: where an acceptance run goes — the stage's bucket, SSM prefix, roles; AWS or `esdeploy local`.

On AWS they are the outputs of the stage's CloudFormation stack `esdeploy-<stage>` (docs/infra.md);
`--upload` and ESDEPLOY_SSM_PREFIX name them instead (what `esdeploy local` prints). A target whose
AWS endpoint is not amazonaws.com (AWS_ENDPOINT_URL) is the local stack: facts only an account
shows are then reported as not measurable, and v2's alarm is forced with the misbehave switch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esdeploy import s3upload
from esdeploy.client import Client

STACK_NAME = "esdeploy-{stage}"


class TargetError(Exception):
    """The stage cannot be found or used; the message says what to pass or fix."""


@dataclass(frozen=True)
class Target:
    client: Client
    stage: str
    where: str
    region: str
    upload_url: str
    ssm_prefix: str
    local: bool
    # The stage's SageMaker execution role (the inference-components probe passes it); None: unknown.
    execution_role_arn: str | None = None
    resource_prefix: str | None = None
    # The embedded AWS of esdeploy local (its misbehave switch); None on AWS.
    aws_endpoint: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def aws(self, service: str) -> Any:
        """One boto3 client per service for the whole run (the teardown's checks ask many times)."""
        if service not in self._clients:
            self._clients[service] = self.client.aws_client(service)
        return self._clients[service]

    @property
    def metrics_namespace(self) -> str:
        """POWERTOOLS_METRICS_NAMESPACE of the stage (.chalice/config.json: esdeploy/<stage>)."""
        return f"esdeploy/{self.stage}"


def resolve_target(
    client: Client,
    stage: str,
    *,
    upload: str | None = None,
    ssm_prefix: str | None = None,
    execution_role_arn: str | None = None,
) -> Target:
    """The stage's names from its stack's outputs, unless given; then the bucket checked (which
    also says whose account it is)."""
    outputs: dict[str, str] = {}
    parameters: dict[str, str] = {}
    if upload is None or ssm_prefix is None:
        outputs, parameters = _stack(client, STACK_NAME.format(stage=stage))
    if upload is None:
        prefix = parameters.get("ArtifactPrefix", "models").strip("/")
        upload = f"s3://{outputs['ArtifactBucketName']}/{prefix}"
    ssm_prefix = ssm_prefix or outputs["SsmPrefix"]
    try:
        destination = s3upload.check_destination(upload, session=client.boto3_session())
    except s3upload.UploadError as error:
        raise TargetError(f"the artifact bucket cannot be used: {error}") from None
    endpoint = str(client.aws_client("sagemaker").meta.endpoint_url)
    local = not s3upload.is_aws_endpoint(endpoint)
    region = destination.region or client.boto3_session().region_name or ""
    return Target(
        client=client,
        stage=stage,
        where=destination.where,
        region=region,
        upload_url=upload.rstrip("/"),
        ssm_prefix=ssm_prefix,
        local=local,
        execution_role_arn=execution_role_arn or outputs.get("SageMakerExecutionRoleArn"),
        resource_prefix=outputs.get("ResourcePrefix"),
        aws_endpoint=endpoint if local else None,
    )


def _stack(client: Client, name: str) -> tuple[dict[str, str], dict[str, str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        (stack,) = client.aws_client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        raise TargetError(
            f"the stack {name} cannot be read ({error.response.get('Error', {}).get('Message', error)}): deploy the "
            "stage first (make deploy STAGE=...), pass --stage, or, for esdeploy local, --upload with the "
            "artifact URL it printed and ESDEPLOY_SSM_PREFIX from its export line"
        ) from None
    except BotoCoreError as error:
        raise TargetError(f"the stack {name} cannot be read: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    missing = [key for key in ("ArtifactBucketName", "SsmPrefix") if key not in outputs]
    if missing:
        raise TargetError(f"the stack {name} has no output {', '.join(missing)}: is it an esdeploy stack?")
    return outputs, parameters
