"""Alarms that can fire: in the scenario each alarm is for, the app emits exactly the metric the
alarm in infra/template.yaml reads (namespace, name, dimensions), or leaves the queue it watches deep.

Failed messages never reach Lambda's Errors (they are batch item failures), and the teardown DLQ's
handler acknowledges what it cannot redo, so those alarms read custom metrics (EMF log lines).
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import dead_letter_name
from chalicelib.domain.errors import RetryableError, TerminalHostingError
from chalicelib.domain.names import variant_name
from chalicelib.ports import VariantSpec
from tests.conftest import TEST_ENV
from tests.fakes.artifacts import publish_in_memory
from tests.fakes.crash_points import CrashPlan
from tests.fakes.fake_hosting import FakeHosting
from tests.scenarios.conftest import DIMENSION, manifest_for
from tests.scenarios.memory_world import MemoryWorld, creating_for_one_poll, memory_world

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("infra_support", ROOT / "tests" / "infra" / "infra_support.py")
assert _spec is not None and _spec.loader is not None
infra_support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(infra_support)

TEMPLATE = infra_support.load_cfn(ROOT / "infra" / "template.yaml")
# chalice.test.Client gives the functions the dev stage's environment (.chalice/config.json),
# POWERTOOLS_METRICS_NAMESPACE included: the metrics go where dev's alarms read them.
STAGE = "dev"


def alarm(logical_id: str) -> dict[str, Any]:
    resource = TEMPLATE["Resources"][logical_id]
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    properties: dict[str, Any] = resource["Properties"]
    return properties


def metric_alarm(logical_id: str) -> tuple[str, str, dict[str, str]]:
    """(namespace, metric name, dimensions) of a custom-metric alarm, for the tests' stage."""
    properties = alarm(logical_id)
    namespace = infra_support.substitute(properties["Namespace"], {"Stage": STAGE})
    dimensions = {d["Name"]: d["Value"] for d in properties["Dimensions"]}
    return namespace, properties["MetricName"], dimensions


def watched_queues(logical_id: str, stage: str) -> set[str]:
    """The queue names an SQS alarm reads (each metric of a metric-math alarm included)."""
    properties = alarm(logical_id)
    metrics = [m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m]
    metrics = metrics or [properties]
    names = set()
    for metric in metrics:
        assert metric["Namespace"] == "AWS/SQS"
        [dimension] = metric["Dimensions"]
        queue = dimension["Value"]["Fn::GetAtt"][0]
        names.add(infra_support.substitute(TEMPLATE["Resources"][queue]["Properties"]["QueueName"], {"Stage": stage}))
    return names


def emitted(out: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(namespace, metric name, dimensions) of every EMF metric in captured stdout."""
    for line in out.splitlines():
        if '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = {name: document[name] for name in dimension_set}
                for metric in directive["Metrics"]:
                    yield directive["Namespace"], metric["Name"], dimensions


@pytest.fixture
def world() -> Iterator[MemoryWorld]:
    with memory_world(TEST_ENV, CrashPlan(), FakeHosting(dimension=DIMENSION)) as made:
        made.hosting.script(None, creation_seconds=creating_for_one_poll(made.adapters.settings))
        publish_in_memory(made.adapters.artifacts, made.adapters.settings, "m1", manifest_for("m1"))
        yield made


def failed_invocations(world: MemoryWorld, worker: str) -> int:
    return sum(1 for i in world.invocations if i.worker == worker and i.outcome == "failed")


@pytest.mark.parametrize(
    ("alarm_id", "worker"),
    [
        ("DeployWorkerFailedMessagesAlarm", "deploy_worker"),
        ("TeardownWorkerFailedMessagesAlarm", "teardown_worker"),
        ("RequestsWorkerFailedMessagesAlarm", "requests_worker"),
    ],
)
def test_a_worker_failing_messages_emits_the_metric_its_alarm_reads_once_per_failure(
    world: MemoryWorld, capsys: pytest.CaptureFixture[str], alarm_id: str, worker: str
) -> None:
    settings = world.adapters.settings
    capsys.readouterr()
    if worker == "deploy_worker":
        poison = variant_name(settings.resource_prefix, "m1", "t1")
        world.hosting.fail("describe", RetryableError("DescribeEndpoint throttled"), times=None, name=poison)
        world.post("/deploy", {"embedding_model_id": "m1", "id": "t1"})
    elif worker == "teardown_worker":
        leftover = f"{settings.resource_prefix}-leftover-00000000-11111111"
        world.hosting.seed(VariantSpec(leftover, "leftover", "gone", "s3://x", "img", "ml.g5.xlarge", 1))
        world.hosting.fail("delete_variant", TerminalHostingError("denied"), times=None, name=leftover)
        world.sweep()
    else:
        world.intake({"action": "deploy", "embedding_model_id": "m1", "config": {"instance_type": "ml.t2.nano"}})
    world.pump(until=lambda: failed_invocations(world, worker) >= 5)
    failures = failed_invocations(world, worker)
    assert failures == 5
    wanted = metric_alarm(alarm_id)
    assert wanted[2]["function"] == worker
    metrics = list(emitted(capsys.readouterr().out))
    assert metrics.count(wanted) == failures
    # Lambda's own Errors metric sees none of this: every invocation returned normally.
    assert not any(i.outcome == "crashed" for i in world.invocations)


def test_a_teardown_that_reaches_its_dlq_emits_the_abandoned_teardown_metric_and_the_sweeper_tries_again(
    world: MemoryWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = world.adapters.settings
    leftover = f"{settings.resource_prefix}-leftover-00000000-11111111"
    world.hosting.seed(VariantSpec(leftover, "leftover", "gone", "s3://x", "img", "ml.g5.xlarge", 1))
    world.hosting.fail("delete_variant", TerminalHostingError("denied"), times=5, name=leftover)
    capsys.readouterr()
    world.sweep()
    world.pump(until=lambda: any(i.worker == "teardown_dead_letters" for i in world.invocations))
    world.pump(until=lambda: not world.sqs.queues[dead_letter_name(settings.teardown_queue)].messages)
    metrics = list(emitted(capsys.readouterr().out))
    assert metrics.count(metric_alarm("AbandonedTeardownsAlarm")) == 1
    # Acknowledged: the DLQ's depth says nothing about it (hence the metric).
    assert world.sqs.queues[dead_letter_name(settings.teardown_queue)].messages == []
    world.settle()
    assert world.hosting.owned_resources() == []


def test_nothing_is_emitted_for_alarms_when_a_deploy_goes_well(
    world: MemoryWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    world.post("/deploy", {"embedding_model_id": "m1", "id": "t1"})
    world.settle()
    assert world.task("t1")["status"] == "done"
    alarmed = {metric_alarm(a)[1] for a in ("DeployWorkerFailedMessagesAlarm", "AbandonedTeardownsAlarm",
                                            "FailedTasksAlarm")}
    assert not [m for m in emitted(capsys.readouterr().out) if m[1] in alarmed]


def test_a_dead_letter_handler_that_keeps_failing_leaves_its_dlq_deep_where_the_depth_alarm_looks(
    world: MemoryWorld,
) -> None:
    settings = world.adapters.settings
    poison = variant_name(settings.resource_prefix, "m1", "t1")
    world.hosting.fail("describe", RetryableError("DescribeEndpoint throttled"), times=None, name=poison)
    world.post("/deploy", {"embedding_model_id": "m1", "id": "t1"})
    world.pump(until=lambda: failed_invocations(world, "deploy_worker") >= 5)
    world.adapters.store = Unavailable(world.adapters.store)  # DynamoDB throttles the DLQ handler too
    world.pump(until=lambda: failed_invocations(world, "deploy_dead_letters") >= 3)
    dlq = dead_letter_name(settings.deploy_queue)
    assert len(world.sqs.queues[dlq].messages) == 1
    assert watched_queues("DeployDeadLettersAlarm", "test") == {dlq}
    assert watched_queues("TeardownDeadLettersAlarm", "test") == {dead_letter_name(settings.teardown_queue)}


def test_a_request_nobody_can_submit_ends_in_the_requests_dlq_that_its_alarm_watches(world: MemoryWorld) -> None:
    world.intake({"action": "deploy", "embedding_model_id": "m1", "config": {"instance_type": "ml.t2.nano"}})
    world.pump()
    dlq = dead_letter_name(world.adapters.settings.requests_queue)
    assert len(world.sqs.queues[dlq].messages) == 1
    assert watched_queues("RequestsDeadLettersAlarm", "test") == {dlq}


class Unavailable:
    """A task store whose reads work and whose writes are throttled."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in ("create", "update", "note_rekick"):
            return attribute

        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise RetryableError("DynamoDB throttled the write")

        return refuse
