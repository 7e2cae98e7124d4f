"""Local stack: EventBridge's part — infra/template.yaml's rules that feed a queue, applied to an event.

On AWS, EventBridge puts an event on the deploy-tasks queue only when a rule's pattern matches it
(SageMaker's endpoint changes of our endpoints, CloudWatch's alarms of our name going to ALARM).
The local stack makes those events itself; it delivers one only when the same rule, read from the
template with the stage's parameters, would (moto's own EventBridge pattern matcher decides), so
that a pattern narrowed in the template is narrowed here too, with no second copy of it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from moto.events.models import EventPattern

from esdeploy.local.embedded_aws import TemplateError, resolve_sub

_RULE = "AWS::Events::Rule"


@dataclass(frozen=True)
class EventRules:
    """The enabled rules of a template that target one resource, as (name, pattern) pairs."""

    rules: tuple[tuple[str, EventPattern], ...]

    @classmethod
    def targeting(cls, template: Mapping[str, Any], target: str, parameters: Mapping[str, str]) -> EventRules:
        """The rules whose targets name `target` (a logical id, by `!GetAtt target.Arn`), their
        patterns with `!Sub` resolved from `parameters` (the stage's values of the template's parameters)."""
        found = []
        for name, resource in template.get("Resources", {}).items():
            properties = resource.get("Properties", {})
            if resource.get("Type") != _RULE or properties.get("State", "ENABLED") != "ENABLED":
                continue
            if not any(_names(t.get("Arn"), target) for t in properties.get("Targets", [])):
                continue
            pattern = _resolved(properties.get("EventPattern", {}), parameters, name)
            found.append((name, EventPattern.load(json.dumps(pattern))))
        if not found:
            raise TemplateError(f"no enabled rule of the template targets {target}")
        return cls(tuple(found))

    def matching(self, event: Mapping[str, Any]) -> list[str]:
        """The names of the rules that would deliver `event`."""
        # moto types the event as its own TypedDict; ours is the documented envelope, as a dict.
        message = cast(Any, dict(event))
        return [name for name, pattern in self.rules if pattern.matches_event(message)]


def _names(arn: Any, target: str) -> bool:
    return isinstance(arn, dict) and arn.get("Fn::GetAtt") in ([target, "Arn"], f"{target}.Arn")


def _resolved(node: Any, parameters: Mapping[str, str], rule: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return resolve_sub(node["Fn::Sub"], parameters, f"the pattern of {rule}")
        return {key: _resolved(value, parameters, rule) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(item, parameters, rule) for item in node]
    return node
