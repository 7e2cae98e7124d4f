"""Operator tool layer: `esdeploy acceptance --probe inference-components` — should versions become components?

On the run's cheap instance type: one endpoint enabled for inference components (an endpoint
config with an execution role and no model), then two components placed on it one after the
other (the second on an instance that is already warm), an invoke of each by
InferenceComponentName, the events EventBridge sent about them, the error an invoke of a deleted
component gets, then everything deleted. Reported only: nothing in the product uses components.
The product's own wire details (container environment, variant name) are reused, not copied.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from chalicelib.adapters.sagemaker_hosting import CONTAINER_ENVIRONMENT
from chalicelib.adapters.sagemaker_shapes import PRODUCTION_VARIANT
from esdeploy.acceptance.facts import Findings
from esdeploy.acceptance.observer import EventObserver, ObservedEvent

# Not the stage's resource prefix: the product's sweeper would take these for orphans of its own.
PROBE_PREFIX = "esdeploy-acc-ic-"
# Two components share one small CPU instance (ml.m5.large: 2 vCPUs, 8 GiB).
COMPONENT_CPUS = 0.5
COMPONENT_MEMORY_MB = 1024
PROBE_TEXTS = ["an embedding from an inference component"]
Say = Callable[[str], None]


class ProbeError(Exception):
    """A step of the probe did not go as SageMaker documents it; the message says which and what it saw."""


@dataclass(frozen=True)
class ProbeNames:
    run_id: str

    @property
    def endpoint(self) -> str:
        """Also the endpoint config's and the model's name."""
        return f"{PROBE_PREFIX}{self.run_id}"

    @property
    def components(self) -> tuple[str, str]:
        return f"{self.endpoint}-a", f"{self.endpoint}-b"


@dataclass
class InferenceComponentsProbe:
    sagemaker: Any
    runtime: Any
    names: ProbeNames
    instance_type: str
    image_uri: str
    model_data_url: str
    role_arn: str
    tags: dict[str, str]
    say: Say
    observer: EventObserver | None = None
    timeout: float = 1800
    interval: float = 10.0
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    results: dict[str, Any] = field(default_factory=dict)

    def run(self, findings: Findings) -> None:
        """Every step, recording each fact as soon as it is known; the deletes happen in `delete()` (teardown)."""
        tags = [{"Key": key, "Value": value} for key, value in self.tags.items()]
        name = self.names.endpoint
        self.sagemaker.create_model(
            ModelName=name,
            PrimaryContainer={
                "Image": self.image_uri,
                "ModelDataUrl": self.model_data_url,
                "Environment": dict(CONTAINER_ENVIRONMENT),
            },
            ExecutionRoleArn=self.role_arn,
            Tags=tags,
        )
        # An endpoint for inference components: the role on the config, no model on the variant.
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ExecutionRoleArn=self.role_arn,
            ProductionVariants=[
                {
                    "VariantName": PRODUCTION_VARIANT,
                    "InstanceType": self.instance_type,
                    "InitialInstanceCount": 1,
                    "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                }
            ],
            Tags=tags,
        )
        started = self.clock()
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)
        self.say(f"probe: endpoint {name} for inference components created; waiting for InService")
        self._wait_for(lambda: self.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"], "InService",
                       f"endpoint {name}")
        self.results["endpoint_in_service_seconds"] = round(self.clock() - started, 1)

        seconds: dict[str, float] = {}
        for index, component in enumerate(self.names.components):
            began = self.clock()
            self.sagemaker.create_inference_component(
                InferenceComponentName=component,
                EndpointName=name,
                VariantName=PRODUCTION_VARIANT,
                Specification={
                    "ModelName": name,
                    "ComputeResourceRequirements": {
                        "NumberOfCpuCoresRequired": COMPONENT_CPUS,
                        "MinMemoryRequiredInMb": COMPONENT_MEMORY_MB,
                    },
                },
                RuntimeConfig={"CopyCount": 1},
                Tags=tags,
            )
            self._wait_for(partial(self._component_status, component), "InService", f"inference component {component}")
            label = "first (instance just provisioned)" if index == 0 else "second (instance already warm)"
            seconds[f"{component} ({label})"] = round(self.clock() - began, 1)
            self.say(f"probe: {component} InService after {seconds[f'{component} ({label})']:.0f} s")
        findings.measured("component_in_service_seconds", seconds)

        invocations = {component: self._invoke(component) for component in self.names.components}
        findings.measured("component_invocations", invocations)

        first = self.names.components[0]
        self.sagemaker.delete_inference_component(InferenceComponentName=first)
        self._wait_gone(lambda: self.sagemaker.describe_inference_component(InferenceComponentName=first),
                        f"inference component {first}")
        findings.measured("deleted_component_error", self._invoke(first))

        if self.observer is not None:
            self.observer.collect()
            findings.measured("component_events", component_events(self.observer.seen, self.names.components))

    def _component_status(self, component: str) -> str:
        return str(self.sagemaker.describe_inference_component(InferenceComponentName=component)[
            "InferenceComponentStatus"])

    def _invoke(self, component: str) -> dict[str, Any]:
        """An embedding by InferenceComponentName: what it answered, or SageMaker's error word for word."""
        from botocore.exceptions import ClientError

        try:
            answer = self.runtime.invoke_endpoint(
                EndpointName=self.names.endpoint,
                InferenceComponentName=component,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps({"inputs": PROBE_TEXTS}).encode(),
            )
        except ClientError as error:
            return _error_of(error)
        body = json.loads(answer["Body"].read())
        vectors = body.get("embeddings") if isinstance(body, dict) else None
        return {"ok": isinstance(vectors, list) and bool(vectors), "dimension": body.get("dimension")}

    def _wait_for(self, status: Callable[[], str], wanted: str, what: str) -> None:
        deadline = self.clock() + self.timeout
        while (now := status()) != wanted:
            if now == "Failed" or self.clock() > deadline:
                raise ProbeError(f"{what} is {now}, not {wanted} (after up to {self.timeout:.0f} s)")
            self.sleep(self.interval)

    def _wait_gone(self, describe: Callable[[], Any], what: str) -> None:
        from botocore.exceptions import ClientError

        deadline = self.clock() + self.timeout
        while True:
            try:
                describe()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ValidationException":
                    return  # SageMaker's "Could not find"
                raise
            if self.clock() > deadline:
                raise ProbeError(f"{what} was not deleted within {self.timeout:.0f} s")
            self.sleep(self.interval)


def component_events(events: Sequence[ObservedEvent], components: Sequence[str]) -> dict[str, Any]:
    """Which SageMaker events named one of our components: their detail-types and statuses, or none."""
    mentioned = [
        event for event in events
        if event.body.get("source") == "aws.sagemaker" and any(name in json.dumps(event.body) for name in components)
    ]
    return {
        "events": len(mentioned),
        "detail_types": sorted({event.detail_type for event in mentioned}),
        "example": mentioned[0].body if mentioned else None,
    }


def _error_of(error: Any) -> dict[str, Any]:
    response = error.response
    return {
        "ok": False,
        "code": response.get("Error", {}).get("Code"),
        "message": response.get("Error", {}).get("Message"),
        "http_status": response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
    }


@dataclass
class ProbeResources:
    """The probe's SageMaker resources that exist now, found by name (a teardown may run in a new process)."""

    sagemaker: Any
    components: list[str]
    endpoints: list[str]
    configs: list[str]
    models: list[str]

    @classmethod
    def in_scope(cls, sagemaker: Any, prefix: str, *, components: bool = True) -> ProbeResources:
        def names(operation: str, key: str, name_key: str) -> list[str]:
            pages = sagemaker.get_paginator(operation).paginate(NameContains=prefix)
            return [item[name_key] for page in pages for item in page.get(key, [])]

        return cls(
            sagemaker,
            names("list_inference_components", "InferenceComponents", "InferenceComponentName") if components else [],
            names("list_endpoints", "Endpoints", "EndpointName"),
            names("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"),
            names("list_models", "Models", "ModelName"),
        )

    def delete(self, say: Say, *, sleep: Callable[[float], None] = time.sleep, timeout: float = 1800,
               clock: Callable[[], float] = time.time) -> None:
        """Components first (an endpoint with components cannot go), then endpoints (once not
        Creating: SageMaker refuses that), configs, models; "could not find" is done."""
        from botocore.exceptions import ClientError

        deadline = clock() + timeout

        def gone_or(call: Callable[[], Any]) -> bool:
            """True when done or already gone; False when SageMaker refuses for now (the endpoint is
            Creating, its components are still being deleted): try again later."""
            try:
                call()
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                message = str(error.response.get("Error", {}).get("Message", ""))
                if "Could not find" in message:
                    return True
                if code == "ValidationException":
                    return False
                raise
            return True

        def until_gone(what: str, call: Callable[[], Any]) -> None:
            say(f"teardown: deleting {what}")
            while not gone_or(call):
                if clock() > deadline:
                    raise ProbeError(f"{what} could not be deleted within {timeout:.0f} s")
                sleep(10)

        sm = self.sagemaker
        for component in self.components:
            until_gone(f"inference component {component}", partial(sm.delete_inference_component,
                                                                  InferenceComponentName=component))
        for endpoint in self.endpoints:
            until_gone(f"endpoint {endpoint}", partial(sm.delete_endpoint, EndpointName=endpoint))
        for config in self.configs:
            gone_or(partial(sm.delete_endpoint_config, EndpointConfigName=config))
        for model in self.models:
            gone_or(partial(sm.delete_model, ModelName=model))
