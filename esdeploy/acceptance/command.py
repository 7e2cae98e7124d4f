"""Operator tool layer: `esdeploy acceptance` end to end — plan, --yes, run, teardown on any exit, report.

SIGINT (Ctrl-C) and SIGTERM end the run where it is; the teardown then runs to its end (a second
Ctrl-C meanwhile is only answered with what is being done), the report is written, and the exit
code is 130. Exit codes: 0 the lifecycle went as documented and nothing is left; 1 a step did not,
or something is left (both named); 2 a usage error; 5 the stage cannot be reached or used.
"""
from __future__ import annotations

import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.text import Text

from esdeploy.acceptance.artifact import DEFAULT_MODEL_ID, MINILM, Artifact, ArtifactError, package_minilm, read_archive
from esdeploy.acceptance.facts import LIFECYCLE_FACTS, LOCAL_PROBE_LIMIT, PROBE, PROBE_FACTS, Findings, Outcome
from esdeploy.acceptance.lifecycle import Lifecycle, Options, StepFailedError
from esdeploy.acceptance.observer import EventObserver
from esdeploy.acceptance.plan import DEFAULT_CREATION_MINUTES, Plan
from esdeploy.acceptance.prices import UnknownInstanceTypeError, cheapest_cpu_type, price_of
from esdeploy.acceptance.probe import InferenceComponentsProbe, ProbeNames, component_events
from esdeploy.acceptance.report import Report
from esdeploy.acceptance.target import Target, TargetError, resolve_target
from esdeploy.acceptance.teardown import OBSERVER_PREFIX, RUN_TAG, Scope, Teardown
from esdeploy.api_client import ApiError
from esdeploy.client import Client
from esdeploy.progress import Exit


@dataclass(frozen=True)
class Request:
    """The command's options."""

    stage: str = "dev"
    yes: bool = False
    model_id: str | None = None
    instance_type: str | None = None
    artifact: Path | None = None
    upload: str | None = None
    ssm_prefix: str | None = None
    execution_role_arn: str | None = None
    bake_seconds: int = 60
    rollback_window_seconds: int = 900
    emf_wait_seconds: int = 600
    creation_minutes: float = DEFAULT_CREATION_MINUTES
    task_timeout_seconds: float = 3600
    teardown_timeout_seconds: float = 3600
    probes: tuple[str, ...] = ()
    report: Path | None = None
    tear_down_only: bool = False


class UsageError(Exception):
    """The options contradict each other or name something unknown (exit 2)."""


@dataclass
class Acceptance:
    client: Client
    request: Request
    out: Console
    err: Console
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._probe_findings: Findings | None = None
        self.started = self.clock()
        self.run_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"

    def say(self, text: str) -> None:
        self.err.print(Text(f"[{self.clock() - self.started:7.1f}s] {text}"), soft_wrap=True)

    # ---- the whole command -------------------------------------------------------------------

    def main(self) -> int:
        request = self.request
        try:
            target = resolve_target(
                self.client, request.stage, upload=request.upload, ssm_prefix=request.ssm_prefix,
                execution_role_arn=request.execution_role_arn,
            )
        except TargetError as error:
            self.err.print(Text(f"error: {error}", style="red"), soft_wrap=True)
            return Exit.ERROR
        if request.tear_down_only:
            return self.tear_down_only(target)
        try:
            price = price_of(request.instance_type) if request.instance_type else cheapest_cpu_type()
            self._check_probes(target)
            with tempfile.TemporaryDirectory(prefix="esdeploy-acceptance-") as workdir:
                given = read_archive(request.artifact, Path(workdir)) if request.artifact else None
                model_id = self._model_id(given)
                self._model_free(model_id)
                plan = self._plan(target, model_id, price, given)
                for line in plan.lines():
                    self.err.print(Text(line), soft_wrap=True)
                if not request.yes:
                    self.err.print(Text("nothing was created: run it again with --yes to go ahead", style="yellow"))
                    return Exit.DONE
                artifact = given or package_minilm(model_id, target.region, price.instance_type, Path(workdir))
                return self.run(target, plan, artifact)
        except (UsageError, UnknownInstanceTypeError) as error:
            self.err.print(Text(f"usage: {error}", style="red"), soft_wrap=True)
            return Exit.USAGE
        except ArtifactError as error:
            self.err.print(Text(f"error: {error}", style="red"), soft_wrap=True)
            return Exit.ERROR

    def _check_probes(self, target: Target) -> None:
        unknown = [p for p in self.request.probes if p != PROBE]
        if unknown:
            raise UsageError(f"--probe {unknown[0]!r} is not a probe; the one there is: --probe {PROBE}")
        if self.request.probes and target.local:
            raise UsageError(f"{LOCAL_PROBE_LIMIT}; nothing was created")
        if self.request.probes and not target.execution_role_arn:
            raise UsageError("the probe needs the stage's SageMaker execution role: pass --execution-role-arn")

    def _model_id(self, given: Artifact | None) -> str:
        wanted = self.request.model_id
        if given is None:
            return wanted or DEFAULT_MODEL_ID
        if wanted and wanted != given.manifest.model_id:
            raise UsageError(
                f"--artifact is packaged for model id {given.manifest.model_id!r}, not {wanted!r} (a deploy's model "
                "id must be its manifest's): drop --model-id, or package the artifact with --model-id " + wanted
            )
        return given.manifest.model_id

    def _model_free(self, model_id: str) -> None:
        """The run's model id must be unused on the stage: its teardown removes everything of that model."""
        try:
            alias = self.client.model(model_id)
        except ApiError as error:
            if error.status == 404:
                return
            raise
        raise UsageError(
            f"model {model_id} is deployed on this stage (live: {alias.get('endpoint_name')}): the run would delete "
            f"it. If a killed run left it: esdeploy acceptance --tear-down-only --yes; else pass another --model-id"
        )

    def _plan(self, target: Target, model_id: str, price: Any, given: Artifact | None) -> Plan:
        request = self.request
        return Plan(
            where=target.where,
            region=target.region,
            api=self.client.api_url,
            model_id=model_id,
            artifact=f"{given.archive} ({given.megabytes:.1f} MB)" if given else MINILM,
            upload_url=target.upload_url,
            price=price,
            bake_seconds=request.bake_seconds,
            rollback_window_seconds=request.rollback_window_seconds,
            observer_name=f"{OBSERVER_PREFIX}{self.run_id}",
            probe=bool(request.probes),
            emf_wait_seconds=request.emf_wait_seconds,
            creation_minutes=request.creation_minutes,
            local=target.local,
        )

    # ---- the run -----------------------------------------------------------------------------

    def run(self, target: Target, plan: Plan, artifact: Artifact) -> int:
        from esdeploy import s3upload
        from esdeploy.images import serving_image_uri

        request = self.request
        findings = Findings(LIFECYCLE_FACTS, local=target.local)
        findings.local_limits()
        probe_findings = Findings(PROBE_FACTS, local=False) if request.probes else None
        self._probe_findings = probe_findings
        report = Report(
            run_id=self.run_id,
            started_at=_iso(self.started),
            target={"where": target.where, "region": target.region, "stage": target.stage, "api": plan.api,
                    "local": target.local, "upload_url": target.upload_url},
            plan={"model_id": plan.model_id, "instance_type": plan.price.instance_type,
                  "usd_per_hour": plan.price.usd_per_hour, "estimated_usd": round(plan.estimated_usd, 2),
                  "estimated_minutes": round(plan.estimated_minutes), "artifact": plan.artifact,
                  "content_sha256": artifact.manifest.content_sha256},
            findings=findings,
            probe=probe_findings,
        )
        tags = {RUN_TAG: self.run_id}
        observer = EventObserver(target.aws("events"), target.aws("sqs"), plan.observer_name, tags)
        lifecycle: Lifecycle | None = None
        code = Exit.FAILED
        with _interruptible():
            try:
                self.say(f"run {self.run_id}: uploading the artifact ({artifact.megabytes:.1f} MB)")
                uploaded = s3upload.upload_artifact(
                    artifact.archive, artifact.manifest_path, target.upload_url, plan.model_id,
                    artifact.manifest.content_sha256, s3_client=target.aws("s3"), console=self.err,
                )
                observer.start()
                self.say(f"observer rule and queue {observer.name} ready")
                options = Options(
                    model_id=plan.model_id,
                    instance_type=plan.price.instance_type,
                    image_uri=serving_image_uri(target.region, plan.price.instance_type),
                    artifact_url=uploaded.archive_url,
                    bake_seconds=request.bake_seconds,
                    rollback_window_seconds=request.rollback_window_seconds,
                    emf_wait_seconds=request.emf_wait_seconds,
                    task_timeout_seconds=request.task_timeout_seconds,
                    interval=min(self.client.poll_interval, 2.0),
                )
                lifecycle = Lifecycle(target, options, findings, self.say, observer, clock=self.clock, sleep=self.sleep)
                report.steps = lifecycle.steps
                lifecycle.run()
                if probe_findings is not None:
                    self._probe(target, options, observer, probe_findings, tags)
                missed = [step.name for step in lifecycle.steps if not step.ok]
                if missed:
                    report.outcome, report.error = "failed", f"not as expected: {', '.join(missed)}"
                else:
                    report.outcome, code = "passed", Exit.DONE
            except KeyboardInterrupt:
                report.outcome, code = "interrupted", Exit.INTERRUPTED
                self.say("interrupted: tearing down what the run made")
            except StepFailedError as error:
                report.outcome, report.error = "failed", str(error)
                self.say(f"the run stopped: {error}")
            except Exception as error:  # whatever stopped it, the teardown below still runs
                report.outcome, report.error = "failed", f"{type(error).__name__}: {error}"
                self.say(f"the run stopped: {report.error}")
            finally:
                with _deferred(self.say):
                    report.leftovers = self._finish(target, lifecycle, observer)
        report.ended_at = _iso(self.clock())
        path = request.report or Path(f"acceptance-{self.run_id}.json")
        report.write(path)
        self.out.print(report.table())
        self.err.print(Text(f"report: {path} (send it to us: docs/infra.md, \"What only an account shows\")"))
        if report.leftovers:
            self.err.print(Text("LEFT BEHIND (remove by hand, or esdeploy acceptance --tear-down-only --yes):",
                                style="red"))
            for thing in report.leftovers:
                self.err.print(Text(f"  {thing}", style="red"), soft_wrap=True)
            return Exit.FAILED if code == Exit.DONE else code
        return code

    def _probe(
        self, target: Target, options: Options, observer: EventObserver, findings: Findings, tags: dict[str, str]
    ) -> None:
        assert target.execution_role_arn is not None
        self.say("== probe: inference components")
        InferenceComponentsProbe(
            sagemaker=target.aws("sagemaker"),
            runtime=target.aws("sagemaker-runtime"),
            names=ProbeNames(self.run_id),
            instance_type=options.instance_type,
            image_uri=options.image_uri,
            model_data_url=options.artifact_url,
            role_arn=target.execution_role_arn,
            tags=tags,
            say=self.say,
            observer=observer,
            clock=self.clock,
            sleep=self.sleep,
        ).run(findings)

    def _finish(self, target: Target, lifecycle: Lifecycle | None, observer: EventObserver) -> list[str]:
        """Read the events (whatever the run reached), then tear down and check."""
        if lifecycle is not None:
            try:
                lifecycle.record_events()
                probe = self._probe_findings
                if probe is not None and probe.found["component_events"].outcome == Outcome.MEASURED:
                    # Events that arrived after the probe's own look count too.
                    components = ProbeNames(self.run_id).components
                    probe.measured("component_events", component_events(observer.seen, components))
            except Exception as error:
                self.say(f"reading the observer's events failed: {type(error).__name__}: {error}")
        scope = Scope(
            self.request.model_id or (lifecycle.options.model_id if lifecycle else DEFAULT_MODEL_ID),
            self.run_id,
            (lifecycle.resource_prefix if lifecycle else None) or target.resource_prefix,
        )
        self.say("tearing down everything the run made")
        left = self._teardown(target, scope).run()
        self.say("teardown done: nothing tagged by the run is left" if not left else f"{len(left)} thing(s) left")
        return left

    def tear_down_only(self, target: Target) -> int:
        """After a killed run: every acceptance run's leftovers of the model, shown, then removed with --yes."""
        model_id = self.request.model_id or DEFAULT_MODEL_ID
        scope = Scope(model_id, None, target.resource_prefix or self._resource_prefix(model_id))
        teardown = self._teardown(target, scope)
        left = teardown.leftovers()
        if not left:
            self.err.print(Text(f"nothing of an acceptance run (model {model_id}) is left"))
            return Exit.DONE
        for thing in left:
            self.err.print(Text(f"  {thing}"), soft_wrap=True)
        if not self.request.yes:
            self.err.print(Text("nothing was removed: run it again with --yes to remove these", style="yellow"))
            return Exit.DONE
        with _deferred(self.say):
            left = teardown.run()
        for thing in left:
            self.err.print(Text(f"LEFT BEHIND: {thing}", style="red"), soft_wrap=True)
        return Exit.FAILED if left else Exit.DONE

    def _teardown(self, target: Target, scope: Scope) -> Teardown:
        return Teardown(
            target, scope, self.say, timeout=self.request.teardown_timeout_seconds,
            interval=min(self.client.poll_interval * 2, 5.0), recheck_seconds=2.0 if target.local else 20.0,
            clock=self.clock, sleep=self.sleep,
        )

    def _resource_prefix(self, model_id: str) -> str | None:
        """The stage's resource prefix from a variant name the API knows of (a stack on AWS says it directly)."""
        for kind in ("deploy", "delete"):
            try:
                name = self.client.api.newest_task(model_id, kind).get("endpoint_name")
            except ApiError:
                continue
            if name:
                return str(name).split("-", 1)[0]
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C and SIGTERM end the run (KeyboardInterrupt), so the teardown runs for both; also when
    the shell started it with SIGINT ignored (a background job of a script)."""
    if not _main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _deferred(say: Callable[[str], None]) -> Iterator[None]:
    """During the teardown, Ctrl-C and SIGTERM only say that it goes on: stopping it would leave
    endpoints billing."""
    if not _main_thread():
        yield
        return

    def wait(signum: int, frame: FrameType | None) -> None:
        say("still tearing down what the run made; it ends by itself (stopping it now would leave endpoints billing)")

    previous = {sig: signal.signal(sig, wait) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
