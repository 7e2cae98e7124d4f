"""The local alarm stand-in evaluates an alarm on an endpoint's invocations as CloudWatch would (a pure function)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from esdeploy.local.alarm_evaluation import ALARM, INSUFFICIENT_DATA, OK, AlarmRule, evaluate
from esdeploy.local.invocation_metrics import Invocation

# 2026-12-02 03:10:30 UTC: 30 s into the minute that starts at 03:10:00.
NOW = datetime(2026, 12, 2, 3, 10, 30, tzinfo=UTC).timestamp()
MINUTE = datetime(2026, 12, 2, 3, 10, tzinfo=UTC).timestamp()


def alarm(**overrides: Any) -> dict[str, Any]:
    """One of esdeploy's own alarms as DescribeAlarms returns it (the contract's `V-invocation-5xx`)."""
    base: dict[str, Any] = {
        "AlarmName": "V-invocation-5xx",
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocation5XXErrors",
        "Statistic": "Sum",
        "Dimensions": [{"Name": "EndpointName", "Value": "V"}, {"Name": "VariantName", "Value": "AllTraffic"}],
        "Period": 60,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "StateValue": "OK",
        "Metrics": [],
    }
    return {**base, **overrides}


def rule(**overrides: Any) -> AlarmRule:
    found = AlarmRule.of(alarm(**overrides))
    assert found is not None
    return found


def calls(count: int, status: int, at: float = MINUTE + 5, latency_us: int | None = 1_000) -> list[Invocation]:
    return [Invocation(at + i * 0.01, Invocation.class_of(status), latency_us) for i in range(count)]


def test_more_5xx_than_the_threshold_in_the_running_minute_is_alarm_in_cloudwatchs_words() -> None:
    verdict = evaluate(rule(), calls(7, 500) + calls(20, 200), NOW)
    assert verdict is not None
    assert verdict.state == ALARM
    assert verdict.reason == (
        "Threshold Crossed: 1 datapoint [7.0 (02/12/26 03:10:00)] was greater than the threshold (5.0)."
    )
    assert verdict.reason_data["recentDatapoints"] == [7.0]
    assert verdict.reason_data["statistic"] == "Sum"


def test_errors_at_the_threshold_are_ok_and_say_so() -> None:
    verdict = evaluate(rule(), calls(5, 500), NOW)
    assert verdict is not None
    assert verdict.state == OK
    assert verdict.reason == (
        "Threshold Crossed: 1 datapoint [5.0 (02/12/26 03:10:00)] was not greater than the threshold (5.0)."
    )


def test_errors_of_an_earlier_minute_do_not_count_with_one_evaluation_period() -> None:
    verdict = evaluate(rule(), calls(9, 500, at=MINUTE - 30), NOW)
    assert verdict is not None
    assert verdict.state == OK


def test_no_traffic_is_not_breaching() -> None:
    verdict = evaluate(rule(), [], NOW)
    assert verdict is not None
    assert verdict.state == OK
    assert verdict.reason == (
        "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as "
        "[NonBreaching]."
    )


def test_client_errors_are_not_5xx_but_count_as_4xx_and_invocations() -> None:
    records = calls(8, 400)
    assert evaluate(rule(), records, NOW).state == OK  # type: ignore[union-attr]
    assert evaluate(rule(MetricName="Invocation4XXErrors"), records, NOW).state == ALARM  # type: ignore[union-attr]
    invocations = evaluate(rule(MetricName="Invocations", Threshold=7.0), records, NOW)
    assert invocations is not None and invocations.state == ALARM


def test_no_answer_at_all_counts_as_a_5xx() -> None:
    verdict = evaluate(rule(Threshold=0.0), [Invocation(MINUTE, Invocation.class_of(None), None)], NOW)
    assert verdict is not None and verdict.state == ALARM


def test_model_latency_average_in_microseconds_against_the_contracts_threshold() -> None:
    latency = rule(AlarmName="V-model-latency", MetricName="ModelLatency", Statistic="Average",
                   Threshold=2000 * 1000.0)
    slow = calls(3, 200, latency_us=2_500_000) + calls(1, 200, latency_us=1_000_000)
    verdict = evaluate(latency, slow, NOW)
    assert verdict is not None
    assert verdict.state == ALARM
    assert verdict.reason == (
        "Threshold Crossed: 1 datapoint [2125000.0 (02/12/26 03:10:00)] was greater than the threshold (2000000.0)."
    )
    # Invocations without an answer add no latency sample (a 5xx of a dead process has none).
    assert evaluate(latency, calls(4, 0, latency_us=None), NOW).state == OK  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("statistic", "expected"),
    [("Sum", 6_000_000.0), ("Average", 2_000_000.0), ("SampleCount", 3.0), ("Maximum", 3_000_000.0),
     ("Minimum", 1_000_000.0)],
)
def test_every_statistic_the_alarm_names(statistic: str, expected: float) -> None:
    records = [Invocation(MINUTE + i, "2XX", (i + 1) * 1_000_000) for i in range(3)]
    verdict = evaluate(rule(MetricName="ModelLatency", Statistic=statistic, Threshold=expected - 1), records, NOW)
    assert verdict is not None and verdict.state == ALARM
    assert verdict.reason_data["recentDatapoints"] == [expected]


def test_datapoints_to_alarm_out_of_evaluation_periods() -> None:
    two_of_three = rule(EvaluationPeriods=3, DatapointsToAlarm=2)
    one_bad_minute = calls(9, 500, at=MINUTE - 60 + 1) + calls(1, 200, at=MINUTE - 120 + 1) + calls(1, 200)
    verdict = evaluate(two_of_three, one_bad_minute, NOW)
    assert verdict is not None and verdict.state == OK
    two_bad = one_bad_minute + calls(8, 500)
    verdict = evaluate(two_of_three, two_bad, NOW)
    assert verdict is not None and verdict.state == ALARM
    assert verdict.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [8.0 (02/12/26 03:10:00), 9.0 (02/12/26 03:09:00)] "
        "were greater than the threshold (5.0) (minimum 2 datapoints for OK -> ALARM transition)."
    )


def test_treat_missing_data_as_the_alarm_says() -> None:
    assert evaluate(rule(TreatMissingData="breaching"), [], NOW).state == ALARM  # type: ignore[union-attr]
    assert evaluate(rule(TreatMissingData="ignore"), [], NOW) is None  # the alarm keeps its state
    missing = evaluate(rule(TreatMissingData="missing"), [], NOW)
    assert missing is not None and missing.state == INSUFFICIENT_DATA


@pytest.mark.parametrize(
    ("operator", "state"),
    [("GreaterThanOrEqualToThreshold", ALARM), ("LessThanThreshold", OK), ("LessThanOrEqualToThreshold", ALARM)],
)
def test_every_comparison_operator(operator: str, state: str) -> None:
    verdict = evaluate(rule(ComparisonOperator=operator), calls(5, 500), NOW)
    assert verdict is not None and verdict.state == state


@pytest.mark.parametrize(
    "overrides",
    [
        {"Namespace": "AWS/Lambda"},
        {"MetricName": "CPUUtilization"},
        {"Dimensions": [{"Name": "FunctionName", "Value": "f"}]},
        {"Dimensions": [{"Name": "EndpointName", "Value": "V"}, {"Name": "VariantName", "Value": "Canary"}]},
        {"Dimensions": [{"Name": "EndpointName", "Value": "V"}, {"Name": "Host", "Value": "h"}]},
        {"Statistic": None, "ExtendedStatistic": "p99"},
        {"ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"},
        {"Metrics": [{"Id": "m1", "Expression": "a+b"}]},
    ],
)
def test_alarms_the_stand_in_cannot_evaluate_are_left_alone(overrides: dict[str, Any]) -> None:
    assert AlarmRule.of(alarm(**overrides)) is None


def test_an_alarm_on_the_endpoint_alone_without_a_variant_dimension_is_evaluated() -> None:
    found = AlarmRule.of(alarm(Dimensions=[{"Name": "EndpointName", "Value": "V"}]))
    assert found is not None and found.endpoint == "V"
