"""Operator tool layer: the acceptance run's lifecycle, step by step, each one measuring what only an account shows.

v1 deployed; v2 deployed with a bake, its 5XX alarm forced (SetAlarmState on AWS, the misbehave
switch on esdeploy local) and the rollback watched; v3 deployed with manual promotion and
autoscaling, its candidate invoked, then promoted; v4 deployed and its endpoint deleted while it is
Creating (SageMaker's refusal recorded), then cancelled; the model deleted; the EMF metrics looked
up. Every step goes through the esdeploy API, as a user's deploys do; AWS is only read, except for
the forced alarm and the one DeleteEndpoint whose refusal is the measurement.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.adapters.sagemaker_shapes import (
    ENDPOINT_STATE_CHANGE,
    TAG_MANAGED_BY,
    TAG_MODEL_ID,
    TAG_TASK_ID,
    read_endpoint_state_change,
)
from chalicelib.domain.models import TERMINAL_STATUSES, Stage, stages_before
from chalicelib.domain.names import variant_alarm_names
from esdeploy.acceptance.facts import Findings
from esdeploy.acceptance.observer import EventObserver, ObservedEvent
from esdeploy.acceptance.target import Target
from esdeploy.api_client import ApiError, Task
from esdeploy.client import TaskHandle
from esdeploy.embedder import Embedder
from esdeploy.timeline import first_at, stage_durations, timestamp

# How often the forced alarm is forced again: CloudWatch re-evaluates the real metric each period
# (a minute) and may set it back to OK before the worker has looked.
FORCE_EVERY_SECONDS = 15
# v3's autoscaling: registered and validated, but 1 to 1 instance, so it never adds one.
AUTOSCALING = {"min_instances": 1, "max_instances": 1, "target_invocations_per_instance": 1000}
Say = Callable[[str], None]


class StepFailedError(Exception):
    """A step did not go as the product documents it; the message says what happened instead."""


@dataclass
class Step:
    name: str
    expected: str
    ok: bool | None = None  # None: not reached
    task_id: str | None = None
    status: str | None = None
    detail: str = ""
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Options:
    model_id: str
    instance_type: str
    image_uri: str
    artifact_url: str
    bake_seconds: int
    rollback_window_seconds: int
    emf_wait_seconds: int = 600
    task_timeout_seconds: float = 3600
    interval: float = 2.0


@dataclass
class Lifecycle:
    target: Target
    options: Options
    findings: Findings
    say: Say
    observer: EventObserver | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    steps: list[Step] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    resource_prefix: str | None = None
    # Forced-alarm readings, combined with the observer's events once they are collected.
    _forced: dict[str, Any] = field(default_factory=dict)
    _in_service_readings: dict[str, Any] = field(default_factory=dict)

    # ---- the story ---------------------------------------------------------------------------

    def run(self) -> None:
        blue = self.deploy_v1()
        self.deploy_v2_and_roll_back(blue)
        self.manual_promotion()
        self.delete_while_creating()
        self.delete_model()
        self.look_for_emf_metrics()

    def deploy_v1(self) -> str:
        step = self._step("deploy v1", "done: the first variant live, no bake")
        task = self._follow(self._deploy(step, bake_seconds=self.options.bake_seconds))
        self._expect(step, task, task["status"] == "done")
        self._in_service("v1", task)
        answer = self.embedder().embed(["esdeploy acceptance: v1 answers through the alias"])
        self.say(f"v1 answers through the alias: {answer.dimension} dimensions from {answer.endpoint_name}")
        return str(task["endpoint_name"])

    def deploy_v2_and_roll_back(self, blue: str) -> None:
        step = self._step(
            "deploy v2, force its 5XX alarm", "failed: rolled back by its alarm within the bake, the alias on v1"
        )
        handle = self._deploy(
            step, bake_seconds=self.options.rollback_window_seconds, max_5xx_errors_per_minute=0
        )
        live = self._follow(handle, until=lambda task: task.get("live_at") is not None)
        if live["status"] in TERMINAL_STATUSES:
            self._expect(step, live, False)
        green = str(live["endpoint_name"])
        self._in_service("v2", live)
        alarm = variant_alarm_names(green)[0]
        window_ends = timestamp(str(live["live_at"])) + self.options.rollback_window_seconds
        force = self._force_locally if self.target.local else self._force
        forced_at, back_at = force(alarm, green, blue, window_ends)
        task = self._follow(handle)
        rolled_back = back_at is not None and task["status"] == "failed" and alarm in task.get("detail", "")
        self._expect(step, task, rolled_back)
        self._forced = {"alarm": alarm, "forced_at": forced_at, "alias_back_at": back_at}

    def manual_promotion(self) -> None:
        step = self._step(
            "deploy v3 (manual promotion, autoscaling)", "done: candidate answered, promoted, baked, autoscaling set"
        )
        handle = self._deploy(step, bake_seconds=self.options.bake_seconds, manual_promotion=True,
                              autoscaling=AUTOSCALING)
        waiting = self._follow(handle, until=lambda task: task["stage"] == "awaiting_promotion")
        if waiting["status"] in TERMINAL_STATUSES:
            self._expect(step, waiting, False)
        answer = self.target.client.invoke(self.options.model_id, ["the candidate, before its promotion"],
                                           candidate=True)
        self.say(f"v3's candidate answers: {answer.get('dimension')} dimensions from {answer.get('endpoint_name')}")
        handle.promote()
        task = self._follow(handle)
        self._in_service("v3", task)
        self.findings.measured("autoscaling_validation", self._autoscaling_outcome(task))
        # A swap refused by Application Auto Scaling's validation is this step's finding, not the
        # run's end: the model is still live on v1, so the steps after it still measure their facts.
        events = task["events"]
        swapped, baked = first_at(events, "swapping"), first_at(events, "baking")
        refused_at_swap = task["status"] == "failed" and swapped is not None and baked is None
        self._expect(step, task, task["status"] == "done", stop=not refused_at_swap)

    def delete_while_creating(self) -> None:
        step = self._step(
            "deploy v4, DeleteEndpoint while Creating, cancel",
            "canceled: SageMaker refused the delete while Creating; the cancel tore the variant down once it settled",
        )
        handle = self._deploy(step, bake_seconds=self.options.bake_seconds)
        if self.target.local:
            # The embedded SageMaker cannot be asked (the fact is not measurable locally), and a local
            # endpoint cancelled while Creating is torn down only after the teardown worker's fixed
            # one-minute retry: locally the cancel comes once the endpoint is up.
            self._follow(handle, until=lambda task: task["stage"] not in stages_before(Stage.VERIFYING))
        else:
            creating = self._follow(handle, until=lambda task: task["stage"] == "waiting", interval=0.2)
            if creating["status"] not in TERMINAL_STATUSES:
                refusal = self._delete_endpoint_now(str(creating["endpoint_name"]))
                self.findings.measured("delete_while_creating_error", refusal)
        try:
            handle.cancel()
        except ApiError as error:
            if error.status != 409:  # 409: it got past where a cancel applies (a local endpoint is quick)
                raise
            self.say(f"v4: the cancel came too late: {error}")
        task = self._follow(handle)
        # Locally an endpoint may be InService before the cancel lands: then the deploy goes through.
        self._expect(step, task, task["status"] == "canceled" or (self.target.local and task["status"] == "done"))

    def delete_model(self) -> None:
        step = self._step("delete the model", "done: every variant, alarm and the alias gone")
        started = self.clock()
        deletion = self.target.client.delete(self.options.model_id, reason="esdeploy acceptance: the lifecycle's end")
        step.task_id = deletion.task_id
        self.say(f"delete: task {deletion.task_id}")
        task = self._follow(deletion)
        step.seconds = round(self.clock() - started, 1)
        self._expect(step, task, task["status"] == "done")

    def look_for_emf_metrics(self) -> None:
        """CloudWatch Logs turns the functions' EMF lines into metrics within minutes: v2's rollback
        failed a task, so `TasksFailed` should appear in the stage's namespace."""
        if self.target.local:
            return
        cloudwatch = self.target.aws("cloudwatch")
        namespace = self.target.metrics_namespace
        started = self.clock()
        names: set[str] = set()
        self.say(f"waiting up to {self.options.emf_wait_seconds} s for EMF metrics in {namespace}")
        while True:
            pages = cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace)
            names = {metric["MetricName"] for page in pages for metric in page.get("Metrics", [])}
            if "TasksFailed" in names or self.clock() - started > self.options.emf_wait_seconds:
                break
            self.sleep(30)
        self.findings.measured(
            "emf_metrics",
            {"namespace": namespace, "metrics": sorted(names), "tasks_failed_seen": "TasksFailed" in names,
             "seconds_waited": round(self.clock() - started)},
        )

    def record_events(self) -> None:
        """(Called however the run ended.) What the observer's queue received: our endpoints' state
        changes (their tags) and the forced alarm's."""
        if self.observer is None:
            return
        self.observer.collect()
        ours = [v for v in (t.get("endpoint_name") for t in self.tasks.values()) if v]
        self.findings.measured("event_tags", endpoint_event_tags(self.observer.seen, ours, self.tasks))
        if self._forced:
            self.findings.measured("alarm_event_latency", alarm_latency(self.observer.seen, self._forced))

    # ---- forcing the alarm -------------------------------------------------------------------

    def _force(self, alarm: str, green: str, blue: str, window_ends: float) -> tuple[float, float | None]:
        """SetAlarmState(ALARM) on green's 5XX alarm, again every FORCE_EVERY_SECONDS, until the alias
        is back on blue."""
        cloudwatch = self.target.aws("cloudwatch")
        forced_at = self.clock()
        forcings = 0
        next_force = forced_at
        while self.clock() < window_ends:
            if self.clock() >= next_force:
                cloudwatch.set_alarm_state(
                    AlarmName=alarm, StateValue="ALARM",
                    StateReason="esdeploy acceptance: forced to test the rollback during the bake",
                )
                forcings += 1
                if forcings == 1:
                    (reading,) = cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
                    self._forced["state_updated_at"] = reading["StateUpdatedTimestamp"].timestamp()
                next_force = self.clock() + FORCE_EVERY_SECONDS
                self.say(f"{alarm} set to ALARM (SetAlarmState #{forcings})")
            if self.target.client.model(self.options.model_id)["endpoint_name"] == blue:
                self._forced["forcings"] = forcings
                self.say(f"the alias is back on {blue}, {self.clock() - forced_at:.1f} s after the first SetAlarmState")
                return forced_at, self.clock()
            self.sleep(1)
        self._forced["forcings"] = forcings
        return forced_at, None

    def _force_locally(self, alarm: str, green: str, blue: str, window_ends: float) -> tuple[float, float | None]:
        """The local stack's alarm stand-in moves the alarm from real 5XX answers: green misbehaves,
        and an application's embedder keeps invoking it until the alias is back on blue."""
        from esdeploy.local.misbehave import Misbehaviour, set_misbehaviour

        assert self.target.aws_endpoint is not None
        forced_at = self.clock()
        set_misbehaviour(self.target.aws_endpoint, green, Misbehaviour(errors=1.0))
        self.say(f"{green} answers 500 to every invocation (esdeploy.local.misbehave); invoking it")
        stop = threading.Event()
        traffic = threading.Thread(target=self._invoke_until, args=(self.embedder(ttl_seconds=1.0), stop), daemon=True)
        traffic.start()
        try:
            while self.clock() < window_ends:
                if self.target.client.model(self.options.model_id)["endpoint_name"] == blue:
                    took = self.clock() - forced_at
                    self.say(f"the alias is back on {blue}, {took:.1f} s after the misbehave switch")
                    return forced_at, self.clock()
                self.sleep(0.5)
            return forced_at, None
        finally:
            stop.set()
            traffic.join(timeout=30)

    @staticmethod
    def _invoke_until(embedder: Embedder, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            try:
                embedder.embed(["esdeploy acceptance: traffic for the alarm"])
            except Exception:  # the 500s are the point; an endpoint torn down meanwhile too
                continue

    # ---- measurements ------------------------------------------------------------------------

    def _in_service(self, label: str, task: Task) -> None:
        """CreateEndpoint (the stage `creating` began) to the worker seeing InService (`verifying` began),
        and, on AWS, SageMaker's own CreationTime to LastModifiedTime of the InService endpoint."""
        created, verified = first_at(task["events"], "creating"), first_at(task["events"], "verifying")
        reading: dict[str, Any] = {
            "by_task_events": None if created is None or verified is None else round(verified - created, 1)
        }
        if not self.target.local and task.get("endpoint_name"):
            described = self.target.aws("sagemaker").describe_endpoint(EndpointName=task["endpoint_name"])
            if described["EndpointStatus"] == "InService":
                took = described["LastModifiedTime"].timestamp() - described["CreationTime"].timestamp()
                reading["by_sagemaker"] = round(took, 1)
        self._in_service_readings[label] = reading
        self.findings.measured("in_service_seconds", dict(self._in_service_readings))

    def _delete_endpoint_now(self, name: str) -> dict[str, Any]:
        """DeleteEndpoint on the Creating endpoint, as a person would: SageMaker's answer word for word."""
        from botocore.exceptions import ClientError

        sagemaker = self.target.aws("sagemaker")
        status = sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
        try:
            sagemaker.delete_endpoint(EndpointName=name)
        except ClientError as error:
            response = error.response
            self.say(f"DeleteEndpoint on {name} ({status}): {response.get('Error', {}).get('Message')}")
            return {
                "endpoint_status": status,
                "refused": True,
                "code": response.get("Error", {}).get("Code"),
                "message": response.get("Error", {}).get("Message"),
                "http_status": response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            }
        self.say(f"DeleteEndpoint on {name} ({status}) was ACCEPTED: SageMaker deletes it")
        return {"endpoint_status": status, "refused": False}

    def _autoscaling_outcome(self, task: Task) -> dict[str, Any]:
        """The swap registered green with Application Auto Scaling (validated by AWS as the deploy worker's call)."""
        swap = [e for e in task["events"] if e["stage"] == "swapping"]
        outcome: dict[str, Any] = {
            "task_status": task["status"],
            "swap_events": [e["detail"] for e in swap],
        }
        if task["status"] != "done":
            outcome["detail"] = task.get("detail")
        if task.get("endpoint_name"):
            scaling = self.target.aws("application-autoscaling")
            found = scaling.describe_scalable_targets(
                ServiceNamespace="sagemaker",
                ResourceIds=[f"endpoint/{task['endpoint_name']}/variant/AllTraffic"],
            )["ScalableTargets"]
            outcome["registered"] = bool(found)
        return outcome

    # ---- plumbing ----------------------------------------------------------------------------

    def embedder(self, ttl_seconds: float = 5.0) -> Embedder:
        return Embedder(
            self.options.model_id,
            ssm=self.target.aws("ssm"),
            runtime=self.target.aws("sagemaker-runtime"),
            ssm_prefix=self.target.ssm_prefix,
            ttl_seconds=ttl_seconds,
        )

    def _step(self, name: str, expected: str) -> Step:
        step = Step(name, expected)
        self.steps.append(step)
        self.say(f"== {name} (expected: {expected})")
        return step

    def _deploy(self, step: Step, **config: Any) -> TaskHandle:
        options = self.options
        handle = self.target.client.deploy(
            options.model_id,
            artifact=options.artifact_url,
            instance_type=options.instance_type,
            instance_count=1,
            image_uri=options.image_uri,
            **config,
        )
        step.task_id = handle.task_id
        self.say(f"{step.name}: task {handle.task_id}")
        return handle

    def _follow(
        self, handle: TaskHandle, until: Callable[[Task], bool] | None = None, interval: float | None = None
    ) -> Task:
        """Poll the task until it ended (or `until` says so), saying each stage it reaches."""
        deadline = self.clock() + self.options.task_timeout_seconds
        seen = handle.task["stage"]
        while True:
            task = handle.task
            if task["stage"] != seen:
                seen = task["stage"]
                self.say(f"  task {task['task_id'][:8]}: {task['status']} / {task['stage']}")
            self._record(task["task_id"], task)
            if task["status"] in TERMINAL_STATUSES or (until is not None and until(task)):
                return task
            if self.clock() > deadline:
                raise StepFailedError(
                    f"task {task['task_id']} still {task['status']} ({task['stage']}) after "
                    f"{self.options.task_timeout_seconds:.0f} s"
                )
            self.sleep(self.options.interval if interval is None else interval)
            handle.status()

    def _record(self, key: str, task: Task) -> None:
        self.tasks[key] = task
        if self.resource_prefix is None and task.get("endpoint_name"):
            self.resource_prefix = str(task["endpoint_name"]).split("-", 1)[0]
        self.findings.measured("stage_seconds", {_label(t): _stages(t) for t in self.tasks.values()})

    def _expect(self, step: Step, task: Task, ok: bool, *, stop: bool = True) -> None:
        step.status, step.detail, step.ok = task["status"], task.get("detail", ""), ok
        events = task["events"]
        if events:
            step.seconds = round(timestamp(events[-1]["at"]) - timestamp(events[0]["at"]), 1)
        self.say(f"{step.name}: {task['status']}: {step.detail}")
        if not ok and stop:
            raise StepFailedError(f"{step.name}: expected {step.expected}; the task is {task['status']}: {step.detail}")


def _label(task: Task) -> str:
    return f"{task['kind']} {task['task_id'][:8]}"


def _stages(task: Task) -> list[list[Any]]:
    return [[stage, round(took, 1)] for stage, took in stage_durations(task["events"])]


def endpoint_event_tags(
    events: Sequence[ObservedEvent], endpoints: Sequence[str], tasks: Mapping[str, Task]
) -> dict[str, Any]:
    """Whether SageMaker's state-change events for our endpoints carry our three tags, and their form."""
    ours = [
        e for e in events
        if e.detail_type == ENDPOINT_STATE_CHANGE and str(e.detail.get("EndpointName", "")) in endpoints
    ]
    with_tags = []
    forms: set[str] = set()
    for event in ours:
        tags = event.detail.get("Tags")
        forms.add("absent" if tags is None else "map" if isinstance(tags, dict) else "list" if isinstance(tags, list)
                  else type(tags).__name__)
        read = read_endpoint_state_change(event.body)
        if read is not None and read.embedding_model_id and read.task_id:
            with_tags.append(event)
    statuses = sorted({str(e.detail.get("EndpointStatus")) for e in ours})
    example = ours[0].detail.get("Tags") if ours else None
    return {
        "events": len(ours),
        "with_our_tags": len(with_tags),
        "tag_forms": sorted(forms),
        "statuses": statuses,
        "keys_expected": [TAG_MODEL_ID, TAG_TASK_ID, TAG_MANAGED_BY],
        "example_tags": example,
        "task_ids_known": sorted(t["task_id"] for t in tasks.values() if t.get("kind") == "deploy"),
    }


def alarm_latency(events: Sequence[ObservedEvent], forced: Mapping[str, Any]) -> dict[str, Any]:
    """SetAlarmState to EventBridge's delivery of the ALARM event (AWS's clocks: the alarm's
    StateUpdatedTimestamp and the queue's SentTimestamp), and to the alias back on blue (this machine's)."""
    alarm = forced["alarm"]
    delivered = [
        e for e in events
        if e.detail_type == "CloudWatch Alarm State Change" and e.detail.get("alarmName") == alarm
        and isinstance(e.detail.get("state"), dict) and e.detail["state"].get("value") == "ALARM"
    ]
    first = min(delivered, key=lambda e: e.delivered_at) if delivered else None
    updated = forced.get("state_updated_at")
    back = forced.get("alias_back_at")
    return {
        "alarm": alarm,
        "set_alarm_state_calls": forced.get("forcings"),
        "alarm_to_event_delivered_seconds": None if first is None or updated is None
        else round(first.delivered_at - updated, 2),
        "alarm_events_seen": len(delivered),
        "set_alarm_state_to_alias_back_seconds": None if back is None else round(back - forced["forced_at"], 1),
    }
