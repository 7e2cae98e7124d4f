"""`esdeploy acceptance`'s plan: the instance type it picks, what it says it creates, and what that costs."""
from __future__ import annotations

from dataclasses import replace

import pytest

from esdeploy.acceptance.plan import Plan
from esdeploy.acceptance.prices import (
    PRICES,
    PRICES_AS_OF,
    PRICES_REGION,
    UnknownInstanceTypeError,
    cheapest_cpu_type,
    price_of,
)


def plan(**changes: object) -> Plan:
    base = Plan(
        where="AWS account 123456789012 (arn:aws:iam::123456789012:user/me)", region="eu-west-1",
        api="https://abc.execute-api.eu-west-1.amazonaws.com/api/", model_id="esdeploy-acceptance",
        artifact="all-MiniLM-L6-v2", upload_url="s3://bucket/models", price=cheapest_cpu_type(), bake_seconds=60,
        rollback_window_seconds=900, observer_name="esdeploy-acceptance-r1", probe=False, emf_wait_seconds=600,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_default_is_the_cheapest_cpu_type_with_room_for_the_model_server() -> None:
    chosen = cheapest_cpu_type()
    assert chosen.instance_type == "ml.m5.large"
    roomy_cpus = [p for p in PRICES if not p.gpu and p.memory_gib >= 8]
    assert chosen.usd_per_hour == min(p.usd_per_hour for p in roomy_cpus)
    # Cheaper CPU types exist, with less memory: asked for by name, they are priced too.
    assert cheapest_cpu_type(min_memory_gib=4).usd_per_hour < chosen.usd_per_hour


def test_an_unpriced_instance_type_is_refused_with_the_ones_that_are_known() -> None:
    with pytest.raises(UnknownInstanceTypeError, match=r"ml\.p5\.48xlarge.*ml\.m5\.large"):
        price_of("ml.p5.48xlarge")


def test_the_plan_names_where_what_on_which_type_and_the_cost_with_its_source() -> None:
    text = "\n".join(plan().lines())
    assert "nothing has been created yet" in text
    assert "AWS account 123456789012" in text and "eu-west-1" in text
    assert "ml.m5.large" in text and "4 SageMaker endpoints" in text
    assert "EventBridge rule and an SQS queue, both named esdeploy-acceptance-r1" in text
    assert f"about ${plan().estimated_usd:.2f}" in text
    assert f"as of {PRICES_AS_OF}" in text and PRICES_REGION in text and "eu-west-1 may differ" in text
    assert "--tear-down-only" in text
    assert "inference components" not in text


def test_the_estimate_follows_the_price_the_probe_and_the_creation_time() -> None:
    base = plan()
    assert base.estimated_usd == pytest.approx(base.instance_hours * 0.115)
    assert plan(price=price_of("ml.g5.xlarge")).estimated_usd == pytest.approx(base.instance_hours * 1.408)
    with_probe = plan(probe=True)
    assert len(with_probe.endpoints()) == len(base.endpoints()) + 1
    assert with_probe.estimated_usd > base.estimated_usd
    assert "2 inference components" in "\n".join(with_probe.lines())
    assert plan(creation_minutes=20).estimated_usd > base.estimated_usd


def test_a_local_plan_costs_nothing() -> None:
    text = "\n".join(plan(local=True, where="the endpoint http://127.0.0.1:4566 (AWS_ENDPOINT_URL; not AWS)").lines())
    assert "cost: none (esdeploy local" in text
    assert "$" not in text
