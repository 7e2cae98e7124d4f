"""Local stack: CloudWatch's evaluation of a metric alarm, over a local endpoint's invocation records (pure).

What CloudWatch does with an alarm on an AWS/SageMaker metric of one endpoint: datapoints are the
alarm's Statistic over periods aligned to its Period; the last EvaluationPeriods of them are looked
at; the alarm is ALARM when at least DatapointsToAlarm breach the threshold, missing datapoints
counted as TreatMissingData says. One difference, on purpose: the period still running counts as a
datapoint, so a breach shows within seconds (CloudWatch would wait for the period to end and
publish its data, a minute or more), which is what a demo and a test of a short bake need.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from esdeploy.local.invocation_metrics import METRICS, NAMESPACE, Invocation

ALARM = "ALARM"
OK = "OK"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
PRODUCTION_VARIANT = "AllTraffic"

_OPERATORS: Mapping[str, tuple[str, Any]] = {
    "GreaterThanThreshold": ("greater than", lambda value, limit: value > limit),
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda value, limit: value >= limit),
    "LessThanThreshold": ("less than", lambda value, limit: value < limit),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda value, limit: value <= limit),
}
_STATISTICS = ("Sum", "Average", "SampleCount", "Maximum", "Minimum")
_MISSING = ("notBreaching", "breaching", "ignore", "missing")


@dataclass(frozen=True)
class AlarmRule:
    """The parts of a DescribeAlarms MetricAlarm the evaluation reads."""

    name: str
    endpoint: str
    metric: str
    statistic: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: str
    threshold: float
    treat_missing: str

    @classmethod
    def of(cls, alarm: Mapping[str, Any]) -> AlarmRule | None:
        """The rule of `alarm`, or None when it is not one the stand-in can evaluate: another namespace
        or metric, no EndpointName, a variant other than AllTraffic, other dimensions, a percentile,
        metric math, an anomaly band."""
        if alarm.get("Namespace") != NAMESPACE or alarm.get("MetricName") not in METRICS or alarm.get("Metrics"):
            return None
        dimensions = {d.get("Name"): d.get("Value") for d in alarm.get("Dimensions") or []}
        endpoint = dimensions.pop("EndpointName", None)
        if not endpoint or dimensions.pop("VariantName", PRODUCTION_VARIANT) != PRODUCTION_VARIANT or dimensions:
            return None
        statistic = alarm.get("Statistic")
        comparison = alarm.get("ComparisonOperator")
        period = int(alarm.get("Period") or 0)
        evaluation_periods = int(alarm.get("EvaluationPeriods") or 0)
        if statistic not in _STATISTICS or comparison not in _OPERATORS or period <= 0 or evaluation_periods <= 0:
            return None
        if alarm.get("Threshold") is None:
            return None
        treat_missing = alarm.get("TreatMissingData") or "missing"
        return cls(
            name=str(alarm["AlarmName"]),
            endpoint=str(endpoint),
            metric=str(alarm["MetricName"]),
            statistic=str(statistic),
            period=period,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or evaluation_periods),
            comparison=str(comparison),
            threshold=float(alarm["Threshold"]),
            treat_missing=treat_missing if treat_missing in _MISSING else "missing",
        )

    def window_start(self, now: float) -> float:
        """Where the oldest period this rule looks at begins (records before it do not matter)."""
        return _period_start(now, self.period) - (self.evaluation_periods - 1) * self.period


@dataclass(frozen=True)
class Datapoint:
    start: float  # epoch seconds: the period's start, CloudWatch's timestamp of the datapoint
    value: float | None  # None: no sample in the period (missing)
    samples: int


@dataclass(frozen=True)
class Verdict:
    """The state the alarm should be in, with CloudWatch's wording of why."""

    state: str
    reason: str
    reason_data: dict[str, Any]


def datapoints(rule: AlarmRule, records: Sequence[Invocation], now: float) -> list[Datapoint]:
    """The rule's datapoints, newest (the period now running) first."""
    current = _period_start(now, rule.period)
    found: list[Datapoint] = []
    for back in range(rule.evaluation_periods):
        start = current - back * rule.period
        samples = [
            sample
            for record in records
            if start <= record.at < start + rule.period and (sample := record.sample(rule.metric)) is not None
        ]
        found.append(Datapoint(start, _statistic(rule.statistic, samples), len(samples)))
    return found


def evaluate(rule: AlarmRule, records: Sequence[Invocation], now: float) -> Verdict | None:
    """The state `rule` calls for given an endpoint's `records` at `now`; None: keep the current state
    (TreatMissingData ignore, and no datapoint at all)."""
    points = datapoints(rule, records, now)
    words, crosses = _OPERATORS[rule.comparison]
    present = [p for p in points if p.value is not None]
    breaching = [p for p in present if crosses(p.value, rule.threshold)]
    missing = len(points) - len(present)
    breach_count = len(breaching) + (missing if rule.treat_missing == "breaching" else 0)
    data = _reason_data(rule, points, now)
    if not present and rule.treat_missing in ("ignore", "missing"):
        if rule.treat_missing == "ignore":
            return None
        return Verdict(INSUFFICIENT_DATA, f"Insufficient Data: {_count(missing, 'datapoint')} "
                                          f"{'was' if missing == 1 else 'were'} unknown.", data)
    if breach_count >= rule.datapoints_to_alarm:
        return Verdict(ALARM, _crossed(rule, breaching, missing, words, negated=False), data)
    calm = [p for p in present if p not in breaching]
    if calm:
        return Verdict(OK, _crossed(rule, calm, missing, words, negated=True), data)
    # Some breached, fewer than DatapointsToAlarm: CloudWatch says so, with the minimum.
    return Verdict(OK, _crossed(rule, breaching, missing, words, negated=False), data)


# ---- CloudWatch's wording ------------------------------------------------------------------------


def _crossed(rule: AlarmRule, shown: list[Datapoint], missing: int, words: str, *, negated: bool) -> str:
    """E.g. "Threshold Crossed: 1 datapoint [7.0 (02/12/26 03:10:00)] was greater than the threshold (5.0)."."""
    threshold = _number(rule.threshold)
    treated = "Breaching" if rule.treat_missing == "breaching" else "NonBreaching"
    if not shown:
        periods = _count(missing, "period")
        return (f"Threshold Crossed: no datapoints were received for {periods} and "
                f"{_count(missing, 'missing datapoint')} {'was' if missing == 1 else 'were'} treated as [{treated}].")
    listed = ", ".join(f"{_number(p.value)} ({_stamp(p.start)})" for p in shown if p.value is not None)
    negation = "not " if negated else ""
    plural = len(shown) != 1
    if len(shown) == rule.evaluation_periods:
        lead = _count(len(shown), "datapoint")
    else:
        lead = f"{len(shown)} out of the last {rule.evaluation_periods} datapoints"
    verb = "were" if plural else "was"
    text = f"Threshold Crossed: {lead} [{listed}] {verb} {negation}{words} the threshold ({threshold})"
    if not negated and rule.evaluation_periods > 1:
        text += f" (minimum {rule.datapoints_to_alarm} datapoint{'s' if rule.datapoints_to_alarm != 1 else ''} "
        text += "for OK -> ALARM transition)"
    if missing and rule.treat_missing in ("notBreaching", "breaching"):
        text += f"; {_count(missing, 'missing datapoint')} treated as [{treated}]"
    return text + "."


def _reason_data(rule: AlarmRule, points: list[Datapoint], now: float) -> dict[str, Any]:
    """StateReasonData as CloudWatch writes it for a threshold alarm."""
    return {
        "version": "1.0",
        "queryDate": iso_millis(now),
        "startDate": iso_millis(points[-1].start),
        "statistic": rule.statistic,
        "period": rule.period,
        "recentDatapoints": [p.value for p in reversed(points) if p.value is not None],
        "threshold": rule.threshold,
        "evaluatedDatapoints": [
            {"timestamp": iso_millis(p.start), "sampleCount": float(p.samples), "value": p.value}
            for p in points
            if p.value is not None
        ],
    }


def iso_millis(epoch: float) -> str:
    """CloudWatch's timestamps in events and reason data: 2026-12-02T03:10:00.000+0000."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}+0000"


def _statistic(statistic: str, samples: list[float]) -> float | None:
    if not samples:
        return None
    if statistic == "Sum":
        return float(sum(samples))
    if statistic == "Average":
        return float(sum(samples) / len(samples))
    if statistic == "SampleCount":
        return float(len(samples))
    if statistic == "Maximum":
        return float(max(samples))
    return float(min(samples))


def _period_start(now: float, period: int) -> float:
    return float(math.floor(now / period) * period)


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%m/%y %H:%M:%S")


def _number(value: float | None) -> str:
    return repr(float(value)) if value is not None else "null"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
