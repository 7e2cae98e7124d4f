"""Operator tool layer: the facts only an AWS account shows — the one list `esdeploy acceptance` measures.

docs/infra.md "What only an account shows" lists the same keys (tests/unit/test_acceptance_facts.py
keeps both in agreement). Each fact is recorded as measured (a value), not measurable here (the
local stack cannot show it: why), or not reached (the run ended before the step that measures it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Fact:
    key: str
    title: str
    # What a run on `esdeploy local` cannot show, in one sentence (empty: it measures it locally too).
    local_limit: str = ""


LIFECYCLE_FACTS: tuple[Fact, ...] = (
    Fact("stage_seconds", "Time each task spent in each stage (deploys, cancel, delete)"),
    Fact(
        "in_service_seconds",
        "Time from CreateEndpoint to InService, per endpoint",
        "local endpoints are processes that load in seconds; SageMaker's provisioning and image pull do not happen",
    ),
    Fact(
        "event_tags",
        "Whether SageMaker's Endpoint State Change events carry our tags, and in which form",
        "the local stack builds these events itself; SageMaker's are only seen through EventBridge on AWS",
    ),
    Fact(
        "delete_while_creating_error",
        "The exact error of DeleteEndpoint on an endpoint that is Creating",
        "the embedded SageMaker (moto) has no local endpoints; the local stand-in's copy of the error is ours",
    ),
    Fact(
        "alarm_event_latency",
        "Seconds from SetAlarmState to the Alarm State Change event, and to the alias back on blue",
        "moto's SetAlarmState sends no event; locally the alarm is forced by the misbehave switch instead",
    ),
    Fact(
        "emf_metrics",
        "Which of our EMF metrics CloudWatch Logs extracted (ListMetrics in esdeploy/<stage>)",
        "the local stack writes the EMF lines to its log file; nothing extracts them",
    ),
    Fact(
        "autoscaling_validation",
        "The outcome of Application Auto Scaling's validation of the deploy worker at a swap with autoscaling",
        "moto registers scalable targets without validating the caller's permissions",
    ),
)

PROBE_FACTS: tuple[Fact, ...] = (
    Fact("component_in_service_seconds", "Seconds from CreateInferenceComponent to InService, first and second"),
    Fact("component_invocations", "Whether an invoke by InferenceComponentName answers, for each component"),
    Fact("component_events", "Which EventBridge events report an inference component's status"),
    Fact("deleted_component_error", "The exact error an invoke of a deleted inference component gets"),
)

# `--probe inference-components`: the one probe there is.
PROBE = "inference-components"
LOCAL_PROBE_LIMIT = (
    "the inference-components probe needs an AWS account: moto (the embedded AWS of esdeploy local) has no "
    "inference components"
)


class Outcome(StrEnum):
    MEASURED = "measured"
    NOT_MEASURABLE = "not measurable here"
    NOT_REACHED = "not reached"


@dataclass
class Finding:
    fact: Fact
    outcome: Outcome = Outcome.NOT_REACHED
    value: Any = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.fact.title, "outcome": str(self.outcome), "value": self.value, "note": self.note}


@dataclass
class Findings:
    """One finding per fact of `facts`, each not reached until a step records it."""

    facts: tuple[Fact, ...]
    local: bool
    found: dict[str, Finding] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.found = {fact.key: Finding(fact) for fact in self.facts}

    def measured(self, key: str, value: Any, note: str = "") -> None:
        """A value measured on this run. Locally, a fact with a local limit is recorded as not measurable,
        its local value kept beside the reason, so that nobody mistakes it for AWS's answer."""
        finding = self.found[key]
        if self.local and finding.fact.local_limit:
            finding.outcome = Outcome.NOT_MEASURABLE
            finding.value = None
            finding.note = f"not measurable locally: {finding.fact.local_limit}" + (
                f" (the local run saw: {_short(value)})" if value not in (None, {}, []) else ""
            )
            return
        finding.outcome, finding.value, finding.note = Outcome.MEASURED, value, note

    def not_measurable(self, key: str, why: str) -> None:
        finding = self.found[key]
        finding.outcome, finding.value, finding.note = Outcome.NOT_MEASURABLE, None, why

    def local_limits(self) -> None:
        """Locally, every fact with a local limit is said to be not measurable up front (a step may add what it saw)."""
        if self.local:
            for finding in self.found.values():
                if finding.fact.local_limit:
                    finding.outcome = Outcome.NOT_MEASURABLE
                    finding.note = f"not measurable locally: {finding.fact.local_limit}"

    def as_dict(self) -> dict[str, Any]:
        return {key: finding.as_dict() for key, finding in self.found.items()}


def _short(value: Any, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
