"""Operator tool layer: `esdeploy doctor` — is this account and this deployed stage ready? Read-only checks.

Each check reads the account (never writes) and gives one finding: ok, or a problem with what to
do. What each function's role must allow is esdeploy/iam/code_calls.json, the list tests/iam
derives from what the code calls (and what AWS checks on its own for those calls), simulated with
`iam:SimulatePrincipalPolicy` for the role the deployed function runs with.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from esdeploy.iam import aws_checks, code_calls
from esdeploy.iam.code_calls import ECR_IMAGE, Needed, StageNames

if TYPE_CHECKING:
    from esdeploy.cli_runtime import Runtime

# Blue and green run side by side during a swap.
SIDE_BY_SIDE = 2
OPEN_QUOTA_REQUESTS = ("PENDING", "CASE_OPENED")
COMPLETE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")
# Stack outputs doctor reads (infra/template.yaml's, and Chalice's EndpointURL).
QUEUE_OUTPUTS = ("RequestsQueue", "DeployTasksQueue", "TeardownTasksQueue",
                 "RequestsDeadLetterQueue", "DeployTasksDeadLetterQueue", "TeardownTasksDeadLetterQueue")
OUTPUTS = ("Stage", "ResourcePrefix", "TasksTableName", "ModelsTableName", "ArtifactBucketName",
           "SageMakerExecutionRoleArn", "SsmPrefix", "EndpointURL", *(f"{q}Url" for q in QUEUE_OUTPUTS))
# The dead-letter queues doctor looks into, and the function that drains each.
DRAINED_BY = {
    "DeployTasksDeadLetterQueue": "deploy_dead_letters",
    "TeardownTasksDeadLetterQueue": "teardown_dead_letters",
}
SHOWN_MISSING_GRANTS = 4
PEEKED_DEAD_LETTERS = 10
DOCS = "docs/infra.md"


class DoctorSetupError(Exception):
    """doctor cannot ask the account anything (no credentials, no region)."""


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"check": self.check, "status": "ok" if self.ok else "problem", "detail": self.detail}
        if self.fix:
            found["fix"] = self.fix
        if self.facts:
            found.update(self.facts)
        return found


@dataclass(frozen=True)
class Function:
    name: str  # app.py's (deploy_worker)
    physical: str
    role_arn: str
    environment: Mapping[str, str]


@dataclass
class _Stage:
    """What doctor has learned of the stage so far (each check adds what later ones need)."""

    stack: str
    outputs: dict[str, str] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    found: bool = False
    names: StageNames | None = None
    scaling_role_exists: bool | None = None


class _AwsReadError(Exception):
    def __init__(self, doing: str, error: Exception) -> None:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        message = getattr(error, "response", {}).get("Error", {}).get("Message", str(error))
        super().__init__(f"could not {doing}: {code}: {message}")
        self.code = code


class Doctor:
    """Runs the checks against one stage of one account; `findings()` yields them as they are made."""

    def __init__(self, session: Any, stage: str, *, http_get: Callable[[str, Any, str], Any] | None = None) -> None:
        self._session = session
        self._stage = _Stage(stack=f"esdeploy-{stage}")
        self._stage_name = stage
        # What puts the stage back as this checkout defines it (the local stack is made at each start).
        self._redeploy = "restart esdeploy local" if stage == "local" else f"make deploy STAGE={stage}"
        self._clients: dict[str, Any] = {}
        self._http_get = http_get or _api_health
        self.region = ""
        self.account = ""

    # ---- plumbing ------------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service)
        return self._clients[service]

    def _call(self, doing: str, service: str, operation: str, **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client(service), operation)(**params)
        except (ClientError, BotoCoreError) as error:
            raise _AwsReadError(doing, error) from None

    def _pages(self, doing: str, service: str, operation: str, key: str, **params: Any) -> list[Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            paginator = self._client(service).get_paginator(operation)
            return [item for page in paginator.paginate(**params) for item in page.get(key, [])]
        except (ClientError, BotoCoreError) as error:
            raise _AwsReadError(doing, error) from None

    def start(self) -> None:
        """Who and where: no credentials or region is DoctorSetupError (nothing else can be checked)."""
        from botocore.exceptions import BotoCoreError, ClientError

        self.region = self._session.region_name or ""
        if not self.region:
            raise DoctorSetupError("no region: pass --region, set AWS_REGION, or give the profile a region")
        try:
            self.account = str(self._client("sts").get_caller_identity()["Account"])
        except (ClientError, BotoCoreError) as error:
            raise DoctorSetupError(f"cannot ask AWS who this is (sts:GetCallerIdentity): {error}") from None

    # ---- the checks ------------------------------------------------------------------------------

    def findings(self) -> Iterator[Finding]:
        """Every check, in order; a check whose inputs an earlier one could not find is left out."""
        yield from self._guarded("stack", self._check_stack)
        if not self._stage.found:
            # Before the first deploy (or while its stack is not complete): what the account needs all the same.
            yield from self._guarded("quotas", self._check_quotas)
            yield from self._guarded("service-linked role", self._check_scaling_role)
            return
        yield from self._guarded("outputs", self._check_outputs)
        yield from self._guarded("api", self._check_api)
        yield from self._guarded("functions", self._check_functions)
        if self._stage.names is None:
            return
        yield from self._guarded("quotas", self._check_quotas)
        yield from self._guarded("service-linked role", self._check_scaling_role)
        for function in code_calls.functions():
            if function in self._stage.functions:
                yield from self._guarded(f"role {function}", functools.partial(self._check_role, function))
        yield from self._guarded("serving image", self._check_image)
        yield from self._guarded("artifacts", self._check_artifacts)
        yield from self._guarded("ssm", self._check_ssm)
        for queue in DRAINED_BY:
            check = functools.partial(self._check_dead_letters, queue)
            yield from self._guarded(f"dead letters {_words(queue)}", check)

    def _guarded(self, check: str, run: Callable[[], Iterator[Finding]]) -> Iterator[Finding]:
        try:
            yield from run()
        except _AwsReadError as error:
            fix = ("the caller needs read access for doctor (docs/infra.md, \"esdeploy doctor\"'s policy)"
                   if "AccessDenied" in error.code or "Unauthorized" in error.code else "run doctor again")
            yield Finding(check, False, str(error), fix)

    def _check_stack(self) -> Iterator[Finding]:
        from botocore.exceptions import ClientError

        stack = self._stage.stack
        try:
            (found,) = self._client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        except ClientError as error:
            if "does not exist" in str(error):
                yield Finding("stack", False, f"no stack {stack} in {self.region} (account {self.account})",
                              f"deploy it: {self._redeploy} ({DOCS}); or name the account and "
                              "region it is in (--profile, --region)")
                return
            raise _AwsReadError(f"describe stack {stack}", error) from None
        status = found["StackStatus"]
        where = f"{stack} is {status} in {self.region} (account {self.account})"
        if status in COMPLETE:
            # Only a complete stack's outputs and functions are what this checkout deployed; before that,
            # the account's part is checked as before a first deploy.
            self._stage.found = True
            self._stage.outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
            yield Finding("stack", True, where)
        elif status.endswith("_IN_PROGRESS"):
            yield Finding("stack", False, where, "wait until it is complete, then run doctor again")
        else:
            reason = found.get("StackStatusReason") or "see its events"
            yield Finding("stack", False, f"{where}: {reason}",
                          f"aws cloudformation describe-stack-events --stack-name {stack} says why; fix it and "
                          f"{self._redeploy}")

    def _check_outputs(self) -> Iterator[Finding]:
        outputs = self._stage.outputs
        missing = [name for name in OUTPUTS if name not in outputs]
        if missing:
            yield Finding("outputs", False, f"{self._stage.stack} lacks the outputs {', '.join(missing)}",
                          f"it is not an esdeploy stack, or an old one: {self._redeploy}")
            return
        problems = []
        for output in ("TasksTableName", "ModelsTableName"):
            table = self._call(f"describe table {outputs[output]}", "dynamodb", "describe_table",
                               TableName=outputs[output])["Table"]
            if table.get("TableStatus") != "ACTIVE":
                problems.append(f"table {outputs[output]} is {table.get('TableStatus')}")
        for queue in QUEUE_OUTPUTS:
            self._call(f"read queue {outputs[f'{queue}Url']}", "sqs", "get_queue_attributes",
                       QueueUrl=outputs[f"{queue}Url"], AttributeNames=["QueueArn"])
        self._call(f"reach bucket {outputs['ArtifactBucketName']}", "s3", "head_bucket",
                   Bucket=outputs["ArtifactBucketName"])
        if problems:
            yield Finding("outputs", False, "; ".join(problems), "wait until they are ACTIVE, then run doctor again")
            return
        yield Finding("outputs", True, f"2 tables, {len(QUEUE_OUTPUTS)} queues and s3://"
                      f"{outputs['ArtifactBucketName']} answer")

    def _check_api(self) -> Iterator[Finding]:
        url = self._stage.outputs.get("EndpointURL")
        if not url:
            return
        try:
            answer = self._http_get(url, self._session, self.region)
        except Exception as error:  # the API's own errors, unreachable, unsigned: all one line
            yield Finding("api", False, f"GET {url.rstrip('/')}/health: {error}",
                          "the caller needs execute-api:Invoke on the API (docs/infra.md, \"Every stage: IAM\")"
                          if "403" in str(error) else "check the API stage in the API Gateway console")
            return
        yield Finding("api", True, f"{url} answers ({answer.get('status', answer)})")

    def _check_functions(self) -> Iterator[Finding]:
        stack = self._stage.stack
        resources = self._pages(f"list the resources of {stack}", "cloudformation", "list_stack_resources",
                                "StackResourceSummaries", StackName=stack)
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources
                    if r["ResourceType"] == "AWS::Lambda::Function"}
        missing = []
        for function in code_calls.functions():
            name = physical.get(code_calls.logical_id(function))
            if name is None:
                missing.append(function)
                continue
            config = self._call(f"read function {name}", "lambda", "get_function_configuration", FunctionName=name)
            self._stage.functions[function] = Function(
                function, name, config["Role"], config.get("Environment", {}).get("Variables", {}))
        if missing:
            yield Finding("functions", False, f"{stack} has no function for {', '.join(missing)}",
                          f"{self._redeploy} from this checkout")
            return
        # The checks after this one read the stage's names from its outputs (the outputs check names any missing).
        self._stage.names = self._names() if all(name in self._stage.outputs for name in OUTPUTS) else None
        yield Finding("functions", True, f"{len(self._stage.functions)} functions, each with its own role")

    def _names(self) -> StageNames:
        outputs = self._stage.outputs
        environment = self._stage.functions["deploy_worker"].environment
        return StageNames(
            partition=_partition(self.region), region=self.region, account=self.account,
            stage=outputs["Stage"], resource_prefix=outputs["ResourcePrefix"],
            tasks_table=outputs["TasksTableName"], models_table=outputs["ModelsTableName"],
            queues={q: outputs[f"{q}Url"].rstrip("/").rsplit("/", 1)[-1] for q in QUEUE_OUTPUTS},
            artifact_bucket=outputs["ArtifactBucketName"],
            artifact_prefix=str(environment.get("ESDEPLOY_ARTIFACT_PREFIX", "")).strip("/"),
            ssm_prefix="/" + outputs["SsmPrefix"].strip("/"),
            execution_role_arn=outputs["SageMakerExecutionRoleArn"],
            image_uri=str(environment.get("ESDEPLOY_DEFAULT_IMAGE_URI", "")),
        )

    def _allowed_instance_types(self) -> list[str] | None:
        """The deployed functions' ESDEPLOY_ALLOWED_INSTANCE_TYPES; before the first deploy, the stage's in
        this checkout's .chalice/config.json (None: neither is there to read)."""
        if "api_handler" in self._stage.functions:
            environment: Mapping[str, str] = self._stage.functions["api_handler"].environment
        else:
            from esdeploy.local.environment import CHALICE_CONFIG, stage_environment

            try:
                environment = stage_environment(self._stage_name) if CHALICE_CONFIG.exists() else {}
            except KeyError:  # no such stage in this checkout
                return None
            if not environment:
                return None
        return [t.strip() for t in str(environment.get("ESDEPLOY_ALLOWED_INSTANCE_TYPES", "")).split(",") if t.strip()]

    def _check_quotas(self) -> Iterator[Finding]:
        allowed = self._allowed_instance_types()
        if allowed is None:
            return
        if not allowed:
            yield Finding("quotas", False, "the functions' environment names no ESDEPLOY_ALLOWED_INSTANCE_TYPES",
                          "set it in .chalice/config.json and make deploy")
            return
        doing = "read SageMaker's quotas (servicequotas:ListServiceQuotas)"
        applied = {q["QuotaName"]: q for q in self._pages(doing, "service-quotas", "list_service_quotas", "Quotas",
                                                          ServiceCode="sagemaker")}
        defaults = {q["QuotaName"]: q for q in self._pages(
            "read SageMaker's default quotas", "service-quotas", "list_aws_default_service_quotas", "Quotas",
            ServiceCode="sagemaker")}
        requested = self._pages("read the quota increases asked for", "service-quotas",
                                "list_requested_service_quota_change_history", "RequestedQuotas",
                                ServiceCode="sagemaker")
        for instance_type in allowed:
            yield self._quota(instance_type, applied, defaults, requested)

    def _quota(self, instance_type: str, applied: Mapping[str, Any], defaults: Mapping[str, Any],
               requested: list[Any]) -> Finding:
        name = f"{instance_type} for endpoint usage"
        check = f"quota {instance_type}"
        quota = applied.get(name) or defaults.get(name)
        if quota is None:
            return Finding(check, False, f"SageMaker has no quota \"{name}\" in {self.region}",
                           f"the instance type may not exist in {self.region}: take it out of "
                           "ESDEPLOY_ALLOWED_INSTANCE_TYPES, or deploy where it is offered")
        value = int(quota["Value"])
        source = "applied" if name in applied else "AWS default"
        asks = [r for r in requested if r.get("QuotaName") == name and r.get("Status") in OPEN_QUOTA_REQUESTS]
        asked = "".join(f"; asked for {int(r['DesiredValue'])} ({r['Status']})" for r in asks)
        facts = {"quota": name, "value": value, "requested": [int(r["DesiredValue"]) for r in asks]}
        if value >= SIDE_BY_SIDE:
            return Finding(check, True, f"{name}: {value} ({source}){asked}", facts=facts)
        fix = (f"wait for the request to be granted (aws service-quotas list-requested-service-quota-change-history "
               f"--service-code sagemaker --region {self.region})" if asks else
               f"aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code "
               f"{quota['QuotaCode']} --desired-value {SIDE_BY_SIDE} --region {self.region}")
        return Finding(check, False, f"{name} is {value} ({source}); blue and green need {SIDE_BY_SIDE} side by "
                       f"side{asked}", fix, facts)

    def _check_scaling_role(self) -> Iterator[Finding]:
        from botocore.exceptions import ClientError

        name = aws_checks.SAGEMAKER_SCALING_ROLE
        try:
            self._client("iam").get_role(RoleName=name)
            self._stage.scaling_role_exists = True
            yield Finding("service-linked role", True, f"{name} exists")
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise _AwsReadError(f"read role {name}", error) from None
        self._stage.scaling_role_exists = False
        create = f"aws iam create-service-linked-role --aws-service-name {aws_checks.SAGEMAKER_SCALING_SERVICE}"
        if "deploy_worker" not in self._stage.functions:  # before the first deploy
            yield Finding("service-linked role", True, f"{name} does not exist yet; make deploy creates it "
                          f"(infra/service-linked-roles.sh: {create})")
            return
        creating = [e for e in code_calls.load() if e.unless_role_exists and e.function == "deploy_worker"]
        denied = self._denied(self._stage.functions["deploy_worker"].role_arn, creating)
        if creating and not denied:
            yield Finding("service-linked role", True, f"{name} does not exist yet; the deploy worker may create it at "
                          f"the first autoscaled deploy (or now: {create})")
        else:
            yield Finding("service-linked role", False,
                          f"{name} does not exist and the deploy worker may not create it: an autoscaled deploy "
                          "fails at its swap", f"{create} (infra/service-linked-roles.sh)")

    def _check_role(self, function: str) -> Iterator[Finding]:
        role = self._stage.functions[function].role_arn
        entries = [e for e in code_calls.load() if e.function == function and e.principal == "function"
                   and not (e.unless_role_exists and self._stage.scaling_role_exists)]
        denied = self._denied(role, entries)
        check = f"role {function}"
        short = role.rsplit("/", 1)[-1]
        if not denied:
            yield Finding(check, True, f"{short} may do the {len(entries)} things its code asks for (AWS's own "
                          "checks of those calls included)")
            return
        yield Finding(check, False, f"{short} may not: {_grants(denied)}",
                      f"{self._redeploy} puts {_policy_file(function)} back on the role; if it "
                      "is there, a permissions boundary, an SCP or a deny takes it away",
                      {"missing": [_missing_json(entry, decision) for entry, decision in denied]})

    def _check_image(self) -> Iterator[Finding]:
        """Every image the stage deploys (the default and each serving's per processor): in the stack's
        region, and pullable by the execution role."""
        names = self._stage.names
        assert names is not None
        images = self._stage_images()
        short = names.execution_role_arn.rsplit("/", 1)[-1]
        entries = [e for e in code_calls.load() if e.principal == "execution-role"]
        problems: list[str] = []
        fixes: list[str] = []
        missing: list[dict[str, Any]] = []
        for used_for, uri in images.items():
            image = ECR_IMAGE.match(uri)
            if image is None:
                problems.append(f"{used_for} {uri!r} is not an ECR image")
                fixes.append(f"make package STAGE={self._stage_name} resolves the serving images of the "
                             f"region ({DOCS})")
                continue
            if image["region"] != self.region:
                problems.append(f"{used_for} {uri} is in {image['region']}, the stack in {self.region}: SageMaker "
                                "pulls images only from its own region")
                fixes.append(f"AWS_REGION={self.region} make package deploy STAGE={self._stage_name}")
                continue
            values = {"${ImageAccount}": image["account"], "${ImageRepository}": image["repo"]}
            denied = self._denied(names.execution_role_arn, entries, values)
            if denied:
                problems.append(f"the execution role {short} may not pull {used_for}: {_grants(denied)}")
                fixes.append(f"{self._redeploy} restores infra/template.yaml's SageMakerExecutionRole")
                missing += [_missing_json(entry, decision) for entry, decision in denied]
        if problems:
            yield Finding("serving image", False, "; ".join(problems), "; ".join(dict.fromkeys(fixes)),
                          {"missing": missing} if missing else {})
            return
        yield Finding("serving image", True, f"{len(images)} image(s) ({', '.join(images)}) are in {self.region}; "
                      f"the execution role {short} may pull them and read the artifacts")

    def _stage_images(self) -> dict[str, str]:
        """What each deploy may run, by what it is used for: the deploy worker's default image and its
        ESDEPLOY_SERVING_IMAGES (an image named twice is checked once)."""
        from chalicelib.config import parse_serving_images

        names = self._stage.names
        assert names is not None
        environment = self._stage.functions["deploy_worker"].environment
        found: dict[str, str] = {"the default image": names.image_uri} if names.image_uri else {}
        try:
            serving = parse_serving_images(str(environment.get("ESDEPLOY_SERVING_IMAGES", "")))
        except ValueError as error:
            return {**found, "ESDEPLOY_SERVING_IMAGES": str(error)}
        for key, uri in serving.items():
            if uri not in found.values():
                found[f"the {key} image"] = uri
        return found

    def _check_artifacts(self) -> Iterator[Finding]:
        names = self._stage.names
        assert names is not None
        bucket, prefix = names.artifact_bucket, names.artifact_prefix
        where = f"s3://{bucket}/{prefix}/"
        self._call(f"reach bucket {bucket}", "s3", "head_bucket", Bucket=bucket)
        listed = self._call(f"list {where}", "s3", "list_objects_v2", Bucket=bucket, Prefix=f"{prefix}/", MaxKeys=1)
        if listed.get("KeyCount", 0):
            yield Finding("artifacts", True, f"{where} is reachable and holds artifacts")
        else:
            yield Finding("artifacts", True, f"{where} is reachable and empty (esdeploy package MODEL_DIR "
                          f"--model-id ID --upload {where.rstrip('/')} puts the first one there)")

    def _check_ssm(self) -> Iterator[Finding]:
        from botocore.exceptions import ClientError

        names = self._stage.names
        assert names is not None
        parameter = f"{names.ssm_prefix}/stack/artifact-bucket"
        try:
            value = self._client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise _AwsReadError(f"read {parameter}", error) from None
            yield Finding("ssm", False, f"{parameter} does not exist",
                          f"{self._redeploy} writes it")
            return
        if value != names.artifact_bucket:
            yield Finding("ssm", False, f"{parameter} names {value}, the stack's bucket is {names.artifact_bucket}",
                          f"{self._redeploy} writes it again")
            return
        aliases = self._call(f"read {names.ssm_prefix}/models/", "ssm", "get_parameters_by_path",
                             Path=f"{names.ssm_prefix}/models/", Recursive=True, MaxResults=10)
        count = len(aliases.get("Parameters", []))
        more = "+" if aliases.get("NextToken") else ""
        yield Finding("ssm", True, f"{names.ssm_prefix} is reachable: {parameter} names the stack's bucket; "
                      f"{count}{more} model alias(es) under {names.ssm_prefix}/models/")

    def _check_dead_letters(self, queue: str) -> Iterator[Finding]:
        url = self._stage.outputs[f"{queue}Url"]
        name = url.rstrip("/").rsplit("/", 1)[-1]
        check = f"dead letters {_words(queue)}"
        attributes = self._call(f"read queue {name}", "sqs", "get_queue_attributes", QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        count = sum(int(attributes.get(key, 0)) for key in (
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))
        if count == 0:
            yield Finding(check, True, f"{name} is empty")
            return
        died = self._why_they_died(url)
        task_ids = [t for t, _ in died if t]
        example = f" (esdeploy logs {task_ids[0]})" if task_ids else ""
        yield Finding(
            check, False, f"{count} message(s) in {name}: " + ("; ".join(why for _, why in died) or "none seen now"),
            f"esdeploy logs TASK_ID shows why each step of a task failed{example}; the function "
            f"{DRAINED_BY[queue]} drains {name}: messages that stay there mean it fails too",
            {"messages": count, "tasks": task_ids},
        )

    def _why_they_died(self, url: str) -> list[tuple[str | None, str]]:
        """A look at the dead letters (visibility 0: each stays where it is) and the tasks they name."""
        from chalicelib.adapters.queue_messages import read_dead_letter
        from chalicelib.domain.errors import UnreadableMessageError

        received = self._call("look at the dead letters", "sqs", "receive_message", QueueUrl=url,
                              MaxNumberOfMessages=PEEKED_DEAD_LETTERS, VisibilityTimeout=0, WaitTimeSeconds=0)
        names = self._stage.names
        assert names is not None
        found: list[tuple[str | None, str]] = []
        for message in received.get("Messages", []):
            try:
                letter = read_dead_letter(message["Body"])
            except UnreadableMessageError as error:
                found.append((None, f"an unreadable message ({error})"))
                continue
            task_id = getattr(letter, "task_id", None)
            kind = type(letter).__name__
            if task_id is None:
                found.append((None, f"a {kind} message"))
                continue
            item = self._call(f"read task {task_id}", "dynamodb", "get_item", TableName=names.tasks_table,
                              Key={"task_id": {"S": task_id}}).get("Item", {})
            status = item.get("status", {}).get("S", "not found")
            detail = item.get("detail", {}).get("S", "")
            found.append((task_id, f"task {task_id} ({kind}): {status}" + (f" - {detail}" if detail else "")))
        return found

    # ---- IAM's simulator ---------------------------------------------------------------------------

    def _denied(self, principal: str, entries: list[Needed],
                overrides: Mapping[str, str] | None = None) -> list[tuple[Needed, str]]:
        """The entries IAM's simulator does not allow `principal` (with the decision it gave);
        `overrides`: placeholders of the list filled otherwise than by the stage's names."""
        names = self._stage.names
        assert names is not None
        values = {**names.example_values(), **(overrides or {})}
        groups: dict[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], list[Needed]] = {}
        for entry in entries:
            filled = entry.filled(values)
            groups.setdefault((filled.resource, filled.context), []).append(entry)
        denied = []
        for (resource, context), group in groups.items():
            actions = sorted({entry.action for entry in group})
            answer = self._call(
                f"simulate {principal}'s policies (iam:SimulatePrincipalPolicy)", "iam", "simulate_principal_policy",
                PolicySourceArn=principal, ActionNames=actions, ResourceArns=[resource],
                ContextEntries=[{"ContextKeyName": key, "ContextKeyValues": list(vs),
                                 "ContextKeyType": "stringList" if len(vs) > 1 else "string"} for key, vs in context],
            )
            decisions = {r["EvalActionName"].lower(): r["EvalDecision"] for r in answer["EvaluationResults"]}
            for entry in group:
                decision = decisions.get(entry.action.lower(), "implicitDeny")
                if decision != "allowed":
                    denied.append((entry.filled(values), decision))
        return denied


# ---- words -------------------------------------------------------------------------------------------


def _grants(denied: list[tuple[Needed, str]]) -> str:
    """The missing grants, the actions on one resource for one reason together."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for entry, decision in denied:
        groups.setdefault((entry.resource, entry.aws_check, decision), []).append(entry.action)
    shown = [_grant(sorted(set(actions)), *key) for key, actions in list(groups.items())[:SHOWN_MISSING_GRANTS]]
    more = len(groups) - len(shown)
    return "; ".join(shown) + (f"; and {more} more (--json lists them)" if more > 0 else "")


def _grant(actions: list[str], resource: str, aws_check: str, decision: str) -> str:
    why = ""
    if aws_check:
        check = aws_checks.by_name(aws_check)
        why = f" [AWS's own check: {check.why}; {check.source.split(';')[0]}]"
    denial = " (explicitly denied)" if decision == "explicitDeny" else ""
    return f"{', '.join(actions)} on {resource}{denial}{why}"


def _missing_json(entry: Needed, decision: str) -> dict[str, Any]:
    found: dict[str, Any] = {"action": entry.action, "resource": entry.resource, "decision": decision}
    if entry.aws_check:
        found["aws_check"] = entry.aws_check
    return found


def _policy_file(function: str) -> str:
    if function == "endpoint_log_retention":
        return "infra/template.yaml's EndpointLogRetentionRole"
    return f"infra/iam/{function.replace('_', '-')}.json"


def _words(logical: str) -> str:
    """DeployTasksDeadLetterQueue -> "deploy tasks" (what the queue is for)."""
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", " ", logical.removesuffix("DeadLetterQueue")).lower()


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _api_health(url: str, session: Any, region: str) -> dict[str, Any]:
    """GET <EndpointURL>health, signed with SigV4 for an execute-api URL (every deployed stage needs it)."""
    from esdeploy.api_client import ApiClient, SigV4Signer

    signer = SigV4Signer(region, session.get_credentials()) if ".execute-api." in url else None
    return ApiClient(url, signer=signer, timeout=10).request("GET", "/health")


# ---- the command -------------------------------------------------------------------------------------


def run(rt: Runtime, stage: str) -> int:
    """`esdeploy doctor`: one line per check (ok / PROBLEM ... -> what to do); 0 when all are ok, 1 on a
    problem, 5 when the account cannot be asked at all (credentials, region, profile)."""
    from rich.text import Text

    from esdeploy.client import AwsSetupError
    from esdeploy.progress import Exit

    try:
        doctor = Doctor(rt.client().boto3_session(), stage)
        doctor.start()
    except (DoctorSetupError, AwsSetupError) as error:
        rt.err.print(Text(f"error: {error}", style="red"), soft_wrap=True)
        return int(Exit.ERROR)
    findings = []
    for finding in doctor.findings():
        findings.append(finding)
        if not rt.json:
            rt.out.print(_line(finding), soft_wrap=True)
    problems = [f for f in findings if not f.ok]
    if rt.json:
        import json

        import typer

        typer.echo(json.dumps({"stage": stage, "region": doctor.region, "account": doctor.account, "ok": not problems,
                          "checks": [f.as_json() for f in findings]}, indent=2))
    else:
        summary = (f"{len(problems)} problem(s) in {len(findings)} checks of stage {stage}" if problems
                   else f"stage {stage} is ready: {len(findings)} checks ok")
        rt.out.print(Text(summary, style="red" if problems else "green"), soft_wrap=True)
    return 1 if problems else 0


def _line(finding: Finding) -> Any:
    from rich.text import Text

    if finding.ok:
        return Text.assemble(("ok       ", "green"), f"{finding.check}: {finding.detail}")
    return Text.assemble(("PROBLEM  ", "bold red"), f"{finding.check}: {finding.detail}",
                         (" -> what to do: ", "yellow"), finding.fix)
