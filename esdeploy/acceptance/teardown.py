"""Operator tool layer: the acceptance run's teardown — all it made goes, then AWS's answers show nothing is left.

Name-based, not memory-based: the run's model id (its variants, alarms, scalable targets, alias,
artifacts), its own observer rule and queue, its probe's SageMaker resources. So the same teardown
runs at the end of a run, after Ctrl-C, and as `esdeploy acceptance --tear-down-only` after a
run that was killed outright (with no run id: every acceptance run's leftovers).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from esdeploy.acceptance.observer import EventObserver
from esdeploy.acceptance.probe import PROBE_PREFIX, ProbeResources
from esdeploy.acceptance.target import Target
from esdeploy.api_client import ApiError
from esdeploy.timeline import timestamp

OBSERVER_PREFIX = "esdeploy-acceptance-"
RUN_TAG = "esdeploy-acceptance-run"
ACTIVE = ("pending", "processing")
Say = Callable[[str], None]


@dataclass
class Scope:
    """What the teardown looks for: the run's model id, and one run's own resources (run_id) or
    every acceptance run's (run_id None)."""

    model_id: str
    run_id: str | None
    # The stage's resource prefix, when known: it names the model's variants and their alarms.
    resource_prefix: str | None = None

    @property
    def observer_prefix(self) -> str:
        return OBSERVER_PREFIX + (self.run_id or "")

    @property
    def probe_prefix(self) -> str:
        return PROBE_PREFIX + (self.run_id or "")


class Teardown:
    def __init__(
        self,
        target: Target,
        scope: Scope,
        say: Say,
        *,
        timeout: float = 3600,
        interval: float = 5.0,
        recheck_seconds: float = 20.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.scope = scope
        self.say = say
        self.timeout = timeout
        self.interval = interval
        # Between two rounds of checks (a dozen List/Describe calls): an endpoint that was Creating
        # takes minutes to go, and SageMaker throttles List* per account.
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self.sleep = sleep

    # ---- removing ----------------------------------------------------------------------------

    def run(self) -> list[str]:
        """Remove everything in scope, then wait (up to `timeout`) until nothing of it is left; what is left."""
        deadline = self.clock() + self.timeout
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the model's tasks and variants", lambda: self.remove_model(deadline)),
            ("the probe's inference components and endpoint", self.remove_probe),
            ("the observer rule and queue", self.remove_observers),
            ("the artifacts", self.remove_artifacts),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as error:  # the other steps still run; the check below says what is left
                self.say(f"teardown: removing {what} failed: {type(error).__name__}: {error}")
        return self.wait_until_gone(deadline)

    def remove_model(self, deadline: float) -> None:
        """Cancel the model's active deploy, then delete the model through the esdeploy API (its
        variants, alarms, autoscaling and alias go with it) and wait for the delete to end."""
        client = self.target.client
        model = self.scope.model_id
        cancelled: set[str] = set()
        while self.clock() < deadline:
            newest = self._newest(model)
            if newest is not None and newest["status"] in ACTIVE:
                if newest["kind"] == "deploy" and newest["task_id"] not in cancelled:
                    self.say(f"teardown: cancelling deploy {newest['task_id']} ({newest['stage']})")
                    cancelled.add(newest["task_id"])
                    try:
                        client.cancel(newest["task_id"])
                    except ApiError as error:
                        if error.status != 409:  # 409: it ended or is ending meanwhile
                            raise
                self.sleep(self.interval)
                continue
            if not self._api_leftovers():
                return  # unknown to the API and no task running: nothing to delete through it
            try:
                deletion = client.delete(model, reason="esdeploy acceptance: teardown")
            except ApiError as error:
                if error.status == 404:  # the API knows no such model: nothing of it to delete
                    return
                if error.status == 409:  # a task started or is still ending: look again
                    self.sleep(self.interval)
                    continue
                raise
            self.say(f"teardown: deleting model {model} (task {deletion.task_id})")
            while deletion.task["status"] in ACTIVE and self.clock() < deadline:
                self.sleep(self.interval)
                deletion.status()
            ended = deletion.task
            self.say(f"teardown: delete {deletion.task_id} {ended['status']}: {ended.get('detail', '')}")
            return

    def _newest(self, model: str) -> Any:
        """The model's newest task of either kind (by creation time), or None."""
        found = []
        for kind in ("deploy", "delete"):
            try:
                found.append(self.target.client.api.newest_task(model, kind))
            except ApiError as error:
                if error.status != 404:
                    raise
        return max(found, key=lambda task: timestamp(task["created_at"]), default=None)

    def remove_probe(self) -> None:
        # moto (esdeploy local) has no inference components, and the probe never runs there.
        found = ProbeResources.in_scope(
            self.target.aws("sagemaker"), self.scope.probe_prefix, components=not self.target.local
        )
        found.delete(self.say, sleep=self.sleep, clock=self.clock)

    def remove_observers(self) -> None:
        events, sqs = self.target.aws("events"), self.target.aws("sqs")
        for name in self._observer_names(events, sqs):
            self.say(f"teardown: deleting the observer rule and queue {name}")
            EventObserver.existing(events, sqs, name).tear_down()

    def _observer_names(self, events: Any, sqs: Any) -> list[str]:
        prefix = self.scope.observer_prefix
        rules = [r["Name"] for r in events.list_rules(NamePrefix=prefix).get("Rules", [])]
        queues = [url.rsplit("/", 1)[-1] for url in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])]
        return sorted(set(rules) | set(queues))

    def remove_artifacts(self) -> None:
        """Every version of every object under the model's folder (the bucket is versioned)."""
        s3 = self.target.aws("s3")
        bucket, prefix = self._artifact_folder()
        doomed = self._versions(s3, bucket, prefix)
        for start in range(0, len(doomed), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True})
        if doomed:
            self.say(f"teardown: deleted {len(doomed)} object version(s) under s3://{bucket}/{prefix}")

    def _artifact_folder(self) -> tuple[str, str]:
        from chalicelib.domain.artifacts import ArtifactLayout

        bucket, prefix = self.target.upload_url[len("s3://"):].partition("/")[::2]
        return bucket, ArtifactLayout.of(bucket, prefix).folder(self.scope.model_id)

    @staticmethod
    def _versions(s3: Any, bucket: str, prefix: str) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                found.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
        return found

    # ---- checking ----------------------------------------------------------------------------

    def wait_until_gone(self, deadline: float) -> list[str]:
        """Ask AWS until nothing in scope is left or the deadline passed; what is left then."""
        while True:
            left = self.leftovers()
            if not left or self.clock() >= deadline:
                return left
            self.say(f"teardown: waiting for {len(left)} thing(s) to go: {'; '.join(left[:3])}")
            self.sleep(self.recheck_seconds)

    def leftovers(self) -> list[str]:
        """Everything in scope that AWS (and the esdeploy API) still shows, each named."""
        left: list[str] = []
        checks: list[tuple[str, Callable[[], list[str]]]] = [
            ("the esdeploy API", self._api_leftovers),
            ("SSM", self._alias_leftovers),
            ("SageMaker", self._sagemaker_leftovers),
            ("CloudWatch", self._alarm_leftovers),
            ("Application Auto Scaling", self._scaling_leftovers),
            ("EventBridge and SQS", self._observer_leftovers),
            ("S3", self._artifact_leftovers),
        ]
        for where, check in checks:
            try:
                left += check()
            except Exception as error:  # a check that cannot answer is not a clean bill
                left.append(f"{where}: could not check ({type(error).__name__}: {error})")
        return left

    def _api_leftovers(self) -> list[str]:
        try:
            alias = self.target.client.model(self.scope.model_id)
        except ApiError as error:
            if error.status == 404:
                return []
            raise
        return [f"model {self.scope.model_id} is still known to the esdeploy API (live: {alias.get('endpoint_name')})"]

    def _alias_leftovers(self) -> list[str]:
        from botocore.exceptions import ClientError

        from chalicelib.domain.names import alias_parameter

        name = alias_parameter(self.target.ssm_prefix, self.scope.model_id)
        try:
            self.target.aws("ssm").get_parameter(Name=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return []
            raise
        return [f"SSM parameter {name}"]

    def _name_parts(self) -> list[str]:
        """Name fragments that find the model's variants (and their alarms) and the probe's resources."""
        from chalicelib.domain.names import model_name_prefix

        parts = [self.scope.probe_prefix]
        if self.scope.resource_prefix:
            parts.append(model_name_prefix(self.scope.resource_prefix, self.scope.model_id).rstrip("-"))
        return parts

    def _sagemaker_leftovers(self) -> list[str]:
        sagemaker = self.target.aws("sagemaker")
        left: list[str] = []
        listings: tuple[tuple[str, str, str, str], ...] = (
            ("endpoint", "list_endpoints", "Endpoints", "EndpointName"),
            ("endpoint config", "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
            ("model", "list_models", "Models", "ModelName"),
            ("inference component", "list_inference_components", "InferenceComponents", "InferenceComponentName"),
        )
        if self.target.local:
            listings = listings[:-1]
        for part in self._name_parts():
            for what, operation, key, name_key in listings:
                for page in sagemaker.get_paginator(operation).paginate(NameContains=part):
                    left += [f"SageMaker {what} {item[name_key]}" for item in page.get(key, [])]
        return sorted(set(left))

    def _alarm_leftovers(self) -> list[str]:
        if not self.scope.resource_prefix:
            return []
        from chalicelib.domain.names import model_name_prefix

        prefix = model_name_prefix(self.scope.resource_prefix, self.scope.model_id)
        pages = self.target.aws("cloudwatch").get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix)
        return [f"CloudWatch alarm {a['AlarmName']}" for page in pages for a in page.get("MetricAlarms", [])]

    def _scaling_leftovers(self) -> list[str]:
        if not self.scope.resource_prefix:
            return []
        from chalicelib.domain.names import model_name_prefix

        wanted = f"endpoint/{model_name_prefix(self.scope.resource_prefix, self.scope.model_id)}"
        scaling = self.target.aws("application-autoscaling")
        pages = scaling.get_paginator("describe_scalable_targets").paginate(ServiceNamespace="sagemaker")
        return [
            f"Application Auto Scaling target {t['ResourceId']}"
            for page in pages
            for t in page.get("ScalableTargets", [])
            if str(t["ResourceId"]).startswith(wanted)
        ]

    def _observer_leftovers(self) -> list[str]:
        events, sqs = self.target.aws("events"), self.target.aws("sqs")
        names = self._observer_names(events, sqs)
        return [thing for name in names for thing in EventObserver.existing(events, sqs, name).leftovers()]

    def _artifact_leftovers(self) -> list[str]:
        bucket, prefix = self._artifact_folder()
        versions = self._versions(self.target.aws("s3"), bucket, prefix)
        return [f"S3 object s3://{bucket}/{v['Key']} (version {v['VersionId']})" for v in versions]
