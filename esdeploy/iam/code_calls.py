"""Operator tool layer: the one list of what each function's code asks IAM for (code_calls.json beside this file).

tests/iam derives it: every authorization of every call the lifecycle makes, per function and
principal (the function's role, or the SageMaker execution role the deploy worker passes), what
AWS checks on its own for those calls (esdeploy/iam/aws_checks.py), and what the Lambda service
does with each role. Resources are written with placeholders for the stage's names (`${TasksTable}`)
and for what differs per deploy (`${Variant}`, `${ModelId}`), so the file is the same after every
run; a test fails when it is stale (`make iam-calls` writes it again). `esdeploy doctor` fills the
placeholders with a deployed stage's names and asks IAM about each entry
(`iam:SimulatePrincipalPolicy`): no second copy of what the code calls.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from chalicelib.adapters.sagemaker_shapes import TAG_MODEL_ID, TAG_TASK_ID
from chalicelib.domain.names import variant_name

LIST_FILE = Path(__file__).with_name("code_calls.json")
REGENERATE = "make iam-calls"
PRINCIPALS = ("function", "execution-role")

# What differs per deploy, and the example doctor asks IAM about in its place.
EXAMPLE_MODEL_ID = "doctor-check"
EXAMPLE_TASK_ID = "doctor-check"
EXAMPLE_CONTENT_HASH = "0" * 64
EXAMPLE_ALARM_NAME = "a-rollback-alarm"
# Tag keys whose values name a model or a task (their values are placeholders in the list).
_TAG_PLACEHOLDERS = {TAG_MODEL_ID: "${ModelId}", TAG_TASK_ID: "${TaskId}"}
# Keys every request carries alike (region, account, TLS); no policy of ours conditions on them.
_EVERY_REQUEST = frozenset({"aws:requestedregion", "aws:securetransport", "aws:principalaccount"})
# An ECR image URI: its registry account, region and repository.
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)


class CanonicalError(ValueError):
    """A resource of the lifecycle still holds a per-run value after canonicalisation: teach code_calls.py its shape."""


@dataclass(frozen=True)
class StageNames:
    """A stage's names: what the placeholders of the list stand for."""

    partition: str
    region: str
    account: str
    stage: str
    resource_prefix: str
    tasks_table: str
    models_table: str
    queues: Mapping[str, str]  # stack output name without "Name"/"Url" (e.g. "DeployTasksQueue") -> queue name
    artifact_bucket: str
    artifact_prefix: str  # without slashes at either end
    ssm_prefix: str  # with its leading slash, without a trailing one
    execution_role_arn: str
    image_uri: str

    def image(self) -> dict[str, str]:
        found = ECR_IMAGE.match(self.image_uri)
        return {"account": found["account"], "region": found["region"], "repo": found["repo"]} if found else {}

    def stage_values(self) -> dict[str, str]:
        """Placeholder -> this stage's value, for the names the stack gives (not the per-deploy examples)."""
        values = {
            "${Partition}": self.partition,
            "${Region}": self.region,
            "${Account}": self.account,
            "${Stage}": self.stage,
            "${ResourcePrefix}": self.resource_prefix,
            "${TasksTable}": self.tasks_table,
            "${ModelsTable}": self.models_table,
            "${ArtifactBucket}": self.artifact_bucket,
            "${ArtifactPrefix}": self.artifact_prefix,
            "${SsmPrefix}": self.ssm_prefix,
            "${ExecutionRoleArn}": self.execution_role_arn,
            **{f"${{{name}}}": queue for name, queue in self.queues.items()},
        }
        image = self.image()
        if image:
            values["${ImageAccount}"] = image["account"]
            values["${ImageRepository}"] = image["repo"]
        return values

    def example_values(self) -> dict[str, str]:
        return {
            **self.stage_values(),
            "${Variant}": variant_name(self.resource_prefix, EXAMPLE_MODEL_ID, EXAMPLE_TASK_ID),
            "${ModelId}": EXAMPLE_MODEL_ID,
            "${TaskId}": EXAMPLE_TASK_ID,
            "${ContentHash}": EXAMPLE_CONTENT_HASH,
            "${AlarmName}": EXAMPLE_ALARM_NAME,
        }


Context = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, order=True)
class Needed:
    """One authorization a function's code (or AWS on its behalf) needs."""

    function: str
    principal: str  # "function": the function's own role; "execution-role": the role SageMaker assumes
    action: str
    resource: str
    context: Context = ()
    aws_check: str = ""  # the row of esdeploy/iam/aws_checks.py that asks for it; "" for the call itself
    # Only while this role does not exist (aws_checks' unless_role_exists), else always.
    unless_role_exists: str = field(default="", compare=True)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"principal": self.principal, "action": self.action, "resource": self.resource}
        if self.context:
            found["context"] = {key: list(values) for key, values in self.context}
        if self.aws_check:
            found["aws_check"] = self.aws_check
        if self.unless_role_exists:
            found["unless_role_exists"] = self.unless_role_exists
        return found

    @classmethod
    def from_json(cls, function: str, raw: Mapping[str, Any]) -> Needed:
        context = tuple(sorted((str(k), tuple(str(v) for v in vs)) for k, vs in raw.get("context", {}).items()))
        return cls(function, str(raw["principal"]), str(raw["action"]), str(raw["resource"]), context,
                   str(raw.get("aws_check", "")), str(raw.get("unless_role_exists", "")))

    def filled(self, values: Mapping[str, str]) -> Needed:
        """The entry with every placeholder replaced (a placeholder with no value stays as it is)."""
        return Needed(
            self.function, self.principal, self.action, _fill(self.resource, values),
            tuple((key, tuple(_fill(v, values) for v in vs)) for key, vs in self.context),
            self.aws_check, _fill(self.unless_role_exists, values),
        )

    def context_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.context)


def _fill(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\$\{[A-Za-z:]+\}", lambda m: values.get(m.group(0), m.group(0)), text)


# ---- from one run's concrete names to the list's placeholders (used by tests/iam) ------------------


def canonical(
    function: str, principal: str, action: str, resource: str, context: Mapping[str, Iterable[str]],
    names: StageNames, aws_check: str = "", unless_role_exists: str = "",
) -> Needed:
    """The list entry for one authorization the lifecycle made under the stage `names` describes."""
    kept = []
    for key, values in sorted(context.items()):
        if key in _EVERY_REQUEST:
            continue
        tag = key.rsplit("/", 1)[-1] if "tag/" in key else ""
        if tag in _TAG_PLACEHOLDERS:
            kept.append((key, tuple(_TAG_PLACEHOLDERS[tag] for _ in values)))
        else:
            kept.append((key, tuple(template_of(str(v), names) for v in values)))
    return Needed(function, principal, action, template_of(resource, names), tuple(kept), aws_check,
                  template_of(unless_role_exists, names) if unless_role_exists else "")


def template_of(value: str, names: StageNames) -> str:
    """`value` with this stage's names, and the per-deploy parts, replaced by placeholders."""
    if value == "*" or "${" in value:
        return value
    whole = {names.execution_role_arn: "${ExecutionRoleArn}", names.account: "${Account}", names.region: "${Region}"}
    if value in whole:
        return whole[value]
    if value.startswith("arn:"):
        parts = value.split(":", 5)
        if len(parts) == 6:
            _, partition, service, region, account, rest = parts
            image = names.image()
            head = [
                "arn",
                "${Partition}" if partition == names.partition else partition,
                service,
                "${Region}" if region == names.region else region,
                {names.account: "${Account}", image.get("account", ""): "${ImageAccount}"}.get(account, account)
                if account else "",
                _resource_part(rest, names),
            ]
            found = ":".join(head)
            _check_canonical(value, found)
            return found
    found = _resource_part(value, names)
    _check_canonical(value, found)
    return found


def _resource_part(text: str, names: StageNames) -> str:
    values = names.stage_values()
    # Longest names first, so a queue is not cut by its dead-letter queue's name (or a table's by a prefix).
    replacements = [
        (f"{names.artifact_bucket}/{names.artifact_prefix}/", "${ArtifactBucket}/${ArtifactPrefix}/"),
        (f"parameter{names.ssm_prefix}/", "parameter${SsmPrefix}/"),
        (f"/aws/lambda/esdeploy-{names.stage}-", "/aws/lambda/esdeploy-${Stage}-"),
    ]
    for placeholder in ("${TasksTable}", "${ModelsTable}", "${ArtifactBucket}", "${ImageRepository}",
                        *(f"${{{name}}}" for name in names.queues)):
        if values.get(placeholder):
            replacements.append((values[placeholder], placeholder))
    for concrete, placeholder in sorted(replacements, key=lambda pair: -len(pair[0])):
        text = _replace_name(text, concrete, placeholder)
    prefix = re.escape(names.resource_prefix)
    text = re.sub(rf"(?<![A-Za-z0-9]){prefix}-(?:[a-z0-9-]*-)?[0-9a-f]{{8}}-[0-9a-f]{{8}}", "${Variant}", text)
    text = re.sub(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])", "${ContentHash}", text)
    text = re.sub(r"(\$\{ArtifactPrefix\}/)[^/]+/", r"\1${ModelId}/", text)
    text = re.sub(r"(parameter\$\{SsmPrefix\}/models/)[^/]+/", r"\1${ModelId}/", text)
    return re.sub(r"^(alarm:)(?!\$\{Variant\})[^:]+$", r"\1${AlarmName}", text)


def _replace_name(text: str, concrete: str, placeholder: str) -> str:
    """Replace `concrete` where it is a whole name, not a piece of a longer one (a path prefix
    ending in "/" or "-" is a prefix by its nature)."""
    if not concrete:
        return text
    if concrete.endswith(("/", "-")):
        return text.replace(concrete, placeholder)
    return re.sub(rf"(?<![A-Za-z0-9_.-]){re.escape(concrete)}(?![A-Za-z0-9_.-])", placeholder, text)


def _check_canonical(value: str, found: str) -> None:
    if re.search(r"[0-9a-f]{8,}", re.sub(r"\$\{[A-Za-z:]+\}", "", found)):
        raise CanonicalError(f"{value} still holds a per-run id after canonicalisation: {found}")


# ---- the file ----------------------------------------------------------------------------------------


def dump(entries: Iterable[Needed]) -> str:
    """The file's text: one entry a line, sorted, so a change of the code's calls is a readable diff."""
    by_function: dict[str, list[str]] = {}
    for entry in sorted(set(entries)):
        by_function.setdefault(entry.function, []).append(json.dumps(entry.as_json(), sort_keys=True))
    about = ("What each function's code, and AWS on its behalf, asks IAM for; derived by tests/iam, read by "
             f"esdeploy doctor. Do not edit: {REGENERATE} writes it (esdeploy/iam/code_calls.py).")
    parts = [
        f"  {json.dumps(function)}: [\n" + ",\n".join(f"    {line}" for line in lines) + "\n  ]"
        for function, lines in sorted(by_function.items())
    ]
    return f'{{"about": {json.dumps(about)},\n "functions": {{\n' + ",\n".join(parts) + "\n }\n}\n"


def parse(text: str) -> list[Needed]:
    document = json.loads(text)
    return [Needed.from_json(function, raw)
            for function, entries in document["functions"].items() for raw in entries]


@cache
def load() -> tuple[Needed, ...]:
    """The list as committed (esdeploy/iam/code_calls.json)."""
    return tuple(parse(LIST_FILE.read_text()))


def functions() -> list[str]:
    return sorted({entry.function for entry in load()})


def logical_id(function: str) -> str:
    """A function's logical id in the packaged stack (Chalice's APIHandler, DeployWorker, ...; the
    template's own EndpointLogRetention)."""
    return "APIHandler" if function == "api_handler" else "".join(part.title() for part in function.split("_"))
