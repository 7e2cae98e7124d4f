"""Local stack: the Hosting port on this machine — each variant is a loopback serving process, its life kept by
the rules it shares with the test fake (esdeploy/local/endpoint_lifecycle.py)."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
from boto3.s3.transfer import TransferConfig

from chalicelib.adapters.serving_wire import AnswerError, decode_answer_bytes, error_text
from chalicelib.adapters.system_clock import SystemClock
from chalicelib.domain.errors import (
    EndpointRefusedError,
    InvocationError,
    InvocationTimeoutError,
    RetryableError,
    TerminalHostingError,
)
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantInfo, VariantSpec, VariantStatus
from esdeploy.local import endpoint
from esdeploy.local.endpoint_lifecycle import ENDPOINT, Endpoints, Lifecycle
from esdeploy.local.environment import CREATION_SECONDS
from esdeploy.local.invocation_metrics import InvocationRecords
from esdeploy.local.misbehave import ENDPOINT_ROUTE, Misbehaviour, MisbehaviourError
from esdeploy.local.serving_processes import serving_process

logger = logging.getLogger(__name__)

_ONE_GET = TransferConfig(multipart_threshold=1 << 40, use_threads=False)
_LISTENING = re.compile(re.escape(endpoint.LISTENING) + r" http://127\.0\.0\.1:(\d+)")
StateListener = Callable[[VariantSpec, EndpointState, str | None], None]
# Starts the serving process of a variant from its downloaded artifact (start_endpoint_process, below).
ProcessStarter = Callable[[Path, Path, str, VariantSpec], "subprocess.Popen[str]"]


class EndpointGoneError(Exception):
    """InvokeEndpoint named an endpoint that does not exist here, or is not in service."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"Endpoint {name} of account 123456789012 {why}.")
        self.name = name


@dataclass
class LocalVariant:
    """The process side of one variant whose endpoint this hosting created; its life is `lifecycle`."""

    lifecycle: Lifecycle
    directory: Path
    port: int | None = None
    process: subprocess.Popen[str] | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    reported: EndpointState | None = None  # the last state reported to the listener
    timer: threading.Timer | None = None
    bring_up: threading.Thread | None = None  # downloads, starts the process and reads its output to the end

    @property
    def spec(self) -> VariantSpec:
        return self.lifecycle.spec


class LocalHosting:
    """Create starts a `python -m esdeploy.local.endpoint` process on a free loopback port: Creating
    until the model has loaded (`/ping` would say 200) and at least `creation_seconds` have passed
    (a GPU endpoint takes minutes), InService then, Failed if it cannot load. While it is Creating,
    a delete is refused with SageMaker's "Cannot update in-progress endpoint", as SageMaker does.
    Every state change is reported to `on_state_change`, which the stack turns into the same
    "Endpoint State Change" message EventBridge would put on the deploy-tasks queue."""

    def __init__(
        self,
        s3_client: Any,
        workdir: Path,
        on_state_change: StateListener | None = None,
        python: str = sys.executable,
        invoke_timeout: float = 60.0,
        creation_seconds: float = CREATION_SECONDS,
        region: str = "us-east-1",
        account: str = "123456789012",
        invocations_log: Path | None = None,
        start_process: ProcessStarter | None = None,
    ) -> None:
        self._s3 = s3_client
        self._workdir = workdir
        self._listener = on_state_change
        self._python = python
        self._timeout = invoke_timeout
        self._creation_seconds = creation_seconds
        self._start_process = start_process or start_endpoint_process
        # Which variants exist and what each endpoint is: the lifecycle rules; `_variants` their processes.
        self.endpoints = Endpoints(SystemClock(), region=region, account=account)
        self._variants: dict[str, LocalVariant] = {}
        self._lock = threading.RLock()
        self._http = requests.Session()
        # Every invocation, once, whichever way it came: what the alarm stand-in reads SageMaker's metrics from.
        self.invocations = InvocationRecords(log=invocations_log)

    # ---- the port ---------------------------------------------------------------------------

    def create_variant(self, spec: VariantSpec) -> None:
        with self._lock:
            # Its outcome comes from the serving process (`_settle`); until then, and its creation time, Creating.
            lifecycle, made = self.endpoints.create(spec, self._creation_seconds)
            if ENDPOINT not in made:
                return  # redelivered step: found, not duplicated
            variant = LocalVariant(lifecycle, self._workdir / spec.name, reported=EndpointState.CREATING)
            self._variants[spec.name] = variant
        self.invocations.register(spec.name)
        self._report(variant, EndpointState.CREATING, None)
        variant.bring_up = threading.Thread(target=self._bring_up, args=(variant,), name=f"up-{spec.name}",
                                            daemon=True)
        variant.bring_up.start()

    def describe(self, name: str) -> VariantStatus:
        return self.endpoints.describe(name)

    def invoke(self, name: str, payload: dict[str, Any], timeout_seconds: float | None = None) -> dict[str, Any]:
        with self._lock:
            self.endpoints.serving(name)  # InvocationError unless it is in service
            variant = self._variants.get(name)
            port = variant.port if variant else None
        if port is None:
            raise InvocationError(f"endpoint `{name}` refused the request: it has no serving process here")
        started = time.perf_counter()
        try:
            answer = self._http.post(
                f"http://127.0.0.1:{port}/invocations", json=payload, timeout=timeout_seconds or self._timeout
            )
        except requests.Timeout as exc:
            self.invocations.record(name, None, None)
            if timeout_seconds is not None:
                raise InvocationTimeoutError(name, timeout_seconds) from None
            raise RetryableError(f"endpoint {name} timed out") from exc
        except requests.ConnectionError as exc:
            self.invocations.record(name, None, None)
            raise InvocationError(f"endpoint {name} refused the connection: {exc}") from exc
        self.invocations.record(name, answer.status_code, _micros_since(started))
        if 400 <= answer.status_code < 500:  # the request's fault, in the handler's words
            raise EndpointRefusedError(name, answer.status_code, _detail_of(answer))
        if answer.status_code >= 400:
            raise InvocationError(f"endpoint {name} answered {answer.status_code}: {answer.text[:500]}")
        try:
            return decode_answer_bytes(answer.content).as_dict()
        except AnswerError as error:
            raise InvocationError(f"endpoint {name} answered no usable embeddings: {error}") from None

    def forward(self, name: str, body: bytes, content_type: str, accept: str) -> tuple[int, bytes, str]:
        """SageMaker Runtime's InvokeEndpoint for the embedded AWS: the container's status, body and type.

        Raises EndpointGoneError when no such endpoint is in service, also when it was deleted while
        the request was on its way (SageMaker answers ValidationError in both cases).
        """
        variant, port = self._serving(name)
        started = time.perf_counter()
        try:
            answer = self._http.post(
                f"http://127.0.0.1:{port}/invocations",
                data=body,
                headers={"Content-Type": content_type, "Accept": accept},
                timeout=self._timeout,
            )
        except requests.RequestException:  # refused, or cut off mid-answer by the teardown's SIGTERM
            with self._lock:
                gone = self._variants.get(name) is not variant
            if gone:
                raise EndpointGoneError(name, "not found") from None
            self.invocations.record(name, None, None)
            raise
        self.invocations.record(name, answer.status_code, _micros_since(started))
        return answer.status_code, answer.content, answer.headers.get("Content-Type", "application/json")

    def misbehave(self, name: str, misbehaviour: Misbehaviour) -> Misbehaviour:
        """Local only: the endpoint answers 500 for `errors` of its invocations and/or `latency_ms`
        later, from now on (esdeploy.local.misbehave); the setting now in force."""
        _, port = self._serving(name)
        answer = self._http.post(f"http://127.0.0.1:{port}{ENDPOINT_ROUTE}", json=misbehaviour.as_dict(), timeout=30)
        if answer.status_code != 200:
            raise MisbehaviourError(_detail_of(answer))
        return Misbehaviour.parse(answer.json())

    def _serving(self, name: str) -> tuple[LocalVariant, int]:
        """The variant in service under `name` and its port, or EndpointGoneError (SageMaker's ValidationError)."""
        with self._lock:
            variant = self._variants.get(name)
            state, _ = self.endpoints.state(name)
            port = variant.port if variant and state is EndpointState.IN_SERVICE else None
        if variant is None or port is None:
            why = "not found" if variant is None else f"is {state.value}, not in service"
            raise EndpointGoneError(name, why)
        return variant, port

    def delete_variant(self, name: str) -> None:
        with self._lock:
            self.endpoints.delete(name)  # refused while its endpoint is Creating
            variant = self._variants.pop(name, None)
        if variant is None:
            return
        self._report(variant, EndpointState.DELETING, None)
        self._remove(variant)
        logger.info("local endpoint deleted", extra={"variant": name})

    def _remove(self, variant: LocalVariant) -> None:
        if variant.timer is not None:
            variant.timer.cancel()
        self._stop(variant)
        shutil.rmtree(variant.directory, ignore_errors=True)

    def list_variants(self, name_prefix: str) -> list[VariantInfo]:
        return self.endpoints.list_variants(name_prefix)

    # ---- local extras -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop every endpoint process, Creating ones too (Ctrl-C of the stack must leave nothing running)."""
        with self._lock:
            self.endpoints.clear()
            variants = list(self._variants.values())
            self._variants.clear()
        for variant in variants:
            self._remove(variant)
        for variant in variants:
            # A download still running would write into a removed folder: wait for it, then remove again.
            if variant.bring_up is not None:
                variant.bring_up.join(timeout=30)
            self._remove(variant)
        self._http.close()

    # ---- bringing one variant up -----------------------------------------------------------

    def _bring_up(self, variant: LocalVariant) -> None:
        try:
            artifact = self._download(variant)
        except TerminalHostingError as error:
            self._settle(variant, EndpointState.FAILED, str(error))
            return
        with self._lock:
            if self._variants.get(variant.spec.name) is not variant:
                shutil.rmtree(variant.directory, ignore_errors=True)  # deleted while downloading
                return
            # Its working folder inside the variant's, which the stack removes when it deletes the variant.
            variant.process = self._start_process(artifact, variant.directory / "run", self._python, variant.spec)
        assert variant.process.stdout is not None
        # Read to the end, whatever a line leads to: an endpoint whose pipe nobody reads blocks on its next log line.
        for line in variant.process.stdout:
            line = line.rstrip()
            variant.output.append(line)
            try:
                found = _LISTENING.search(line)
                if found:
                    variant.port = int(found.group(1))
                elif line.startswith(endpoint.READY):
                    self._settle(variant, EndpointState.IN_SERVICE, None)
                elif line.startswith(endpoint.FAILED):
                    self._settle(variant, EndpointState.FAILED, line[len(endpoint.FAILED):].strip())
            except Exception:
                logger.exception("local endpoint: acting on its output failed", extra={"variant": variant.spec.name})
        code = variant.process.wait()
        tail = " | ".join(list(variant.output)[-5:])
        self._settle(variant, EndpointState.FAILED, f"serving process exited with {code}: {tail}")

    def _download(self, variant: LocalVariant) -> Path:
        parsed = urlparse(variant.spec.model_data_url)
        target = variant.directory / "model.tar.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # One GET, no parts: the embedded S3 copies the whole object for each ranged part it serves,
            # so the default's ten parallel 8 MB parts of an 84 MB artifact cost about a CPU-second on a
            # small machine (0.2 s as one GET), taken from the deploy steps that run meanwhile.
            self._s3.download_file(parsed.netloc, parsed.path.lstrip("/"), str(target), Config=_ONE_GET)
        except Exception as exc:
            raise TerminalHostingError(
                f"could not download the model artifact {variant.spec.model_data_url}: {exc}"
            ) from exc
        return target

    def _settle(self, variant: LocalVariant, state: EndpointState, reason: str | None) -> None:
        """The endpoint loaded, could not, or its process ended (the lifecycle keeps a failure final); the state
        change is reported once its creation time is up (then SageMaker would report it too)."""
        with self._lock:
            if self._variants.get(variant.spec.name) is not variant:
                return  # deleted meanwhile
            if not self.endpoints.settle(variant.lifecycle, state, reason):
                return
        self._creation_over(variant)

    def _creation_over(self, variant: LocalVariant) -> None:
        """Report what the endpoint is now, once its creation time is up (until then a timer waits for it)."""
        with self._lock:
            if self._variants.get(variant.spec.name) is not variant:
                return
            ready_at = variant.lifecycle.ready_at
            due = (ready_at - self.endpoints.clock.now()).total_seconds() if ready_at is not None else 0.0
            if due > 0:
                # Again from the timer itself too: the wall clock may be stepped back while it waited.
                timer = variant.timer
                if timer is None or timer is threading.current_thread() or not timer.is_alive():
                    variant.timer = threading.Timer(due, self._creation_over, (variant,))
                    variant.timer.daemon = True
                    variant.timer.start()
                return
            state, reason = self.endpoints.state(variant.spec.name)
            if state is variant.reported:
                return
            variant.reported = state
        self._report(variant, state, reason)

    def _report(self, variant: LocalVariant, state: EndpointState, reason: str | None) -> None:
        logger.info("local endpoint state", extra={"variant": variant.spec.name, "state": state.value,
                                                   "reason": reason, "port": variant.port})
        if self._listener is not None:
            try:
                self._listener(variant.spec, state, reason)
            except Exception:  # EventBridge's delivery is not the caller's business
                logger.exception("local endpoint: reporting a state change failed",
                                 extra={"variant": variant.spec.name})

    def _stop(self, variant: LocalVariant) -> None:
        process = variant.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def start_endpoint_process(
    artifact: Path, workdir: Path, python: str = sys.executable, spec: VariantSpec | None = None
) -> subprocess.Popen[str]:
    """The serving process for one variant (`python -m esdeploy.local.endpoint`, or the TEI stand-in for a
    `tei` variant: esdeploy.local.serving_processes), tied to this process: it stops when this process
    dies, however it dies (the parent-death signal, and its own watch of this pid). Its output is a pipe:
    the caller must read it to the end."""
    command, env = serving_process(spec, artifact, python)
    command += ["--workdir", str(workdir.resolve()), "--parent-pid", str(os.getpid())]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # Own session: a terminal's Ctrl-C reaches the stack, which stops endpoints in order.
        start_new_session=True,
        preexec_fn=functools.partial(_die_with_parent, os.getpid()),
    )


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGTERM this child when the stack process dies, however it dies. A stack that died
    between the fork and this call sends nothing: then the child ends here. (The endpoint watches
    its parent's pid as well: esdeploy.local.lifeline.)"""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _micros_since(started: float) -> int:
    """Microseconds since `started` (time.perf_counter()): the ModelLatency SageMaker reports."""
    return int((time.perf_counter() - started) * 1_000_000)


def _detail_of(answer: requests.Response) -> str:
    """What the serving process said, in either serving's words (serving_wire.error_text)."""
    return error_text(answer.content)[:500]
