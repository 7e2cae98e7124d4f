"""Operator tool layer: IAM's evaluation of identity policies for one request, as AWS documents it.

One evaluator for two users: tests/iam evaluates every call the product makes with it, and the
embedded AWS answers `iam:SimulatePrincipalPolicy` with it (moto has none), so `esdeploy doctor`
on `esdeploy local` is judged by the very rules the tests apply.

- An explicit Deny that applies wins; otherwise one Allow must apply; otherwise implicitly denied.
- A statement applies when its Action, its Resource and every condition match (operators AND,
  keys of one operator AND, values of one key OR; a negated operator's values NOR).
- A key absent from the request matches no operator, except negated ones (true), `...IfExists`
  (true) and `Null` (which tests presence). ForAllValues is true for an absent or empty key,
  ForAnyValue false.
- Wildcards: `*` and `?`; actions compare case-insensitively, resources case-sensitively, and an
  ARN's partition, service, region and account are matched segment by segment.
Anything this module cannot decide faithfully (an unknown operator, a policy variable, a key the
request cannot tell) raises CannotEvaluateError instead of guessing.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

Context = Mapping[str, tuple[str, ...]]


class CannotEvaluateError(Exception):
    """The evaluation would have to guess: fix the policy or teach esdeploy/iam the missing fact."""


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def arn_match(pattern: str, value: str) -> bool:
    """IAM's ARN matching: the first five segments one by one, the resource part as one glob."""
    if pattern == "*":
        return True
    wanted, given = pattern.split(":", 5), value.split(":", 5)
    if len(wanted) != 6 or len(given) != 6:
        return glob_match(pattern, value)
    return all(glob_match(w, g) for w, g in zip(wanted, given, strict=True))


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _no_variables(where: str, values: Iterable[str]) -> None:
    for value in values:
        if "${" in str(value):
            raise CannotEvaluateError(f"{where}: policy variable in {value!r}; this evaluator does not resolve them")


@dataclass(frozen=True)
class Request:
    """One authorization IAM makes: an action on one resource, with the request's context keys."""

    action: str
    resource: str
    context: Context
    label: str = ""
    # Keys the recorder could not determine (e.g. the tags of a resource it cannot look up):
    # a statement that conditions on one of them cannot be decided.
    unknowable: Callable[[str], bool] = field(default=lambda _key: False, compare=False)

    def values(self, key: str) -> tuple[str, ...] | None:
        return self.context.get(key.lower())

    def describe(self) -> str:
        keys = ", ".join(f"{k}={list(v)}" for k, v in sorted(self.context.items()))
        return f"{self.action} on {self.resource} [{keys or 'no context keys'}]"


def _compare(base: str) -> tuple[Callable[[str, str], bool], bool]:
    """(compare(request value, policy value), negated) for a base operator."""
    string_ops: dict[str, tuple[Callable[[str, str], bool], bool]] = {
        "StringEquals": (lambda v, p: v == p, False),
        "StringNotEquals": (lambda v, p: v == p, True),
        "StringEqualsIgnoreCase": (lambda v, p: v.lower() == p.lower(), False),
        "StringNotEqualsIgnoreCase": (lambda v, p: v.lower() == p.lower(), True),
        "StringLike": (lambda v, p: glob_match(p, v), False),
        "StringNotLike": (lambda v, p: glob_match(p, v), True),
        "ArnEquals": (lambda v, p: arn_match(p, v), False),
        "ArnLike": (lambda v, p: arn_match(p, v), False),
        "ArnNotEquals": (lambda v, p: arn_match(p, v), True),
        "ArnNotLike": (lambda v, p: arn_match(p, v), True),
        "Bool": (lambda v, p: v.lower() == p.lower(), False),
        "NumericEquals": (lambda v, p: float(v) == float(p), False),
        "NumericNotEquals": (lambda v, p: float(v) == float(p), True),
        "NumericLessThan": (lambda v, p: float(v) < float(p), False),
        "NumericLessThanEquals": (lambda v, p: float(v) <= float(p), False),
        "NumericGreaterThan": (lambda v, p: float(v) > float(p), False),
        "NumericGreaterThanEquals": (lambda v, p: float(v) >= float(p), False),
    }
    if base not in string_ops:
        raise CannotEvaluateError(f"condition operator {base} is not supported by esdeploy/iam/evaluation.py")
    return string_ops[base]


def _operator_parts(operator: str) -> tuple[str | None, str, bool]:
    """`ForAllValues:StringLikeIfExists` -> ("ForAllValues", "StringLike", True)."""
    qualifier, _, base = operator.rpartition(":")
    if qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise CannotEvaluateError(f"unknown set operator in {operator!r}")
    if_exists = base.endswith("IfExists")
    return qualifier or None, base[: -len("IfExists")] if if_exists else base, if_exists


def condition_holds(operator: str, key: str, wanted: Sequence[str], request: Request) -> tuple[bool, str]:
    """Whether one `operator: {key: wanted}` entry holds, and a reason a person can read."""
    qualifier, base, if_exists = _operator_parts(operator)
    if request.unknowable(key.lower()):
        raise CannotEvaluateError(
            f"a condition on {key} needs a fact this test cannot determine for {request.describe()}"
        )
    values = request.values(key)
    shown = f"{operator} {key} {list(wanted)}"
    if base == "Null":
        want_absent = {str(w).lower() for w in wanted}
        holds = ("true" in want_absent and values is None) or ("false" in want_absent and values is not None)
        return holds, f"{shown}: key is {'absent' if values is None else 'present'}"
    compare, negated = _compare(base)

    def one(value: str) -> bool:
        hit = any(compare(value, str(w)) for w in wanted)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        holds = True if not values else all(one(v) for v in values)
    elif qualifier == "ForAnyValue":
        holds = False if not values else any(one(v) for v in values)
    elif values is None:
        holds = if_exists or negated
    elif len(values) != 1:
        raise CannotEvaluateError(
            f"{shown}: {key} has several values {list(values)}; use ForAllValues/ForAnyValue"
        )
    else:
        holds = one(values[0])
    got = "absent from the request" if values is None else f"request has {list(values)}"
    return holds, f"{shown}: {got}"


@dataclass(frozen=True)
class Statement:
    where: str  # "infra/iam/sweeper.json#ListSageMakerResources"
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, source: str, document: Mapping[str, Any]) -> list[Statement]:
        if document.get("Version") != "2012-10-17":
            raise CannotEvaluateError(f"{source}: Version must be 2012-10-17 (policy variables differ before it)")
        found = []
        for index, raw in enumerate(_as_tuple(document["Statement"])):
            where = f"{source}#{raw.get('Sid', index)}"
            conditions = {
                op: {key: tuple(str(v) for v in _as_tuple(vals)) for key, vals in keys.items()}
                for op, keys in raw.get("Condition", {}).items()
            }
            statement = cls(
                where=where,
                effect=raw["Effect"],
                actions=_as_tuple(raw.get("Action", ())),
                not_actions=_as_tuple(raw.get("NotAction", ())),
                resources=_as_tuple(raw.get("Resource", ())),
                not_resources=_as_tuple(raw.get("NotResource", ())),
                conditions=conditions,
            )
            _no_variables(where, (*statement.resources, *statement.not_resources))
            for keys in conditions.values():
                for vals in keys.values():
                    _no_variables(where, vals)
            found.append(statement)
        return found

    def matches_action(self, action: str) -> bool:
        if self.not_actions:
            return not any(glob_match(a, action, ignore_case=True) for a in self.not_actions)
        return any(glob_match(a, action, ignore_case=True) for a in self.actions)

    def matches_resource(self, resource: str) -> bool:
        if self.not_resources:
            return not any(arn_match(r, resource) for r in self.not_resources)
        return any(arn_match(r, resource) for r in self.resources)

    def conditions_hold(self, request: Request) -> tuple[bool, str]:
        for operator, keys in self.conditions.items():
            for key, wanted in keys.items():
                holds, why = condition_holds(operator, key, wanted, request)
                if not holds:
                    return False, f"condition {why}"
        return True, "applies"


@dataclass
class Decision:
    request: Request
    allowed_by: list[Statement]
    denied_by: list[Statement]
    # statements for this action that did not apply, with the reason
    passed_over: list[tuple[Statement, str]]
    sources: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.denied_by and bool(self.allowed_by)

    def explain(self) -> str:
        head = f"{'ALLOWED' if self.allowed else 'DENIED'} {self.request.describe()}"
        if self.request.label:
            head += f"\n    ({self.request.label})"
        if self.denied_by:
            return head + "\n    explicitly denied by: " + ", ".join(s.where for s in self.denied_by)
        if self.allowed_by:
            return head + "\n    allowed by: " + ", ".join(s.where for s in self.allowed_by)
        if not self.passed_over:
            return head + f"\n    no statement in {', '.join(self.sources)} grants {self.request.action}"
        lines = [f"\n    {s.where} ({s.effect}): {why}" for s, why in self.passed_over]
        return head + "\n    statements considered, none applies:" + "".join(lines)


def evaluate(statements: Sequence[Statement], request: Request, sources: Sequence[str] = ()) -> Decision:
    allowed_by: list[Statement] = []
    denied_by: list[Statement] = []
    passed_over: list[tuple[Statement, str]] = []
    for statement in statements:
        if not statement.matches_action(request.action):
            continue
        if not statement.matches_resource(request.resource):
            passed_over.append((statement, f"resource {request.resource} matches none of {list(statement.resources)}"))
            continue
        holds, why = statement.conditions_hold(request)
        if not holds:
            passed_over.append((statement, why))
        elif statement.effect == "Deny":
            denied_by.append(statement)
        else:
            allowed_by.append(statement)
    return Decision(request, allowed_by, denied_by, passed_over, tuple(sources))
