"""Operator tool layer: `esdeploy.Client`, the Python client of esdeploy (task API over HTTP, embeddings direct).

Deploys, deletes and rollbacks go through the esdeploy API (its tasks are the record of what
happened); embeddings go straight to SageMaker Runtime through the alias in SSM
(`Client.embedder`), without the API's extra hop, 29-second and 6 MB limits. The CLI is built
on this class.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

from chalicelib.domain.models import TERMINAL_STATUSES
from esdeploy.api_client import (
    DEFAULT_API_URL,
    DEFAULT_TIMEOUT_SECONDS,
    Alias,
    ApiClient,
    ApiError,
    Models,
    SigV4Signer,
    Task,
)
from esdeploy.embedder import DEFAULT_ALIAS_TTL_SECONDS, Embedder
from esdeploy.progress import DEFAULT_POLL_SECONDS, DEFAULT_WAIT_TIMEOUT_SECONDS, View, WaitOutcome, wait_for_task

DEFAULT_SSM_PREFIX = "/esdeploy"  # the product's own default (chalicelib/config.py); stages set /esdeploy/<stage>
Progress = Callable[[Task], None]


class AwsSetupError(Exception):
    """The AWS profile, region or credentials needed for the call are missing or broken. The message
    names what to pass in Python; `cli_message`, when the CLI would say it otherwise, its flags."""

    def __init__(self, message: str, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message or message


class TaskWaitTimeoutError(Exception):
    """`wait()` gave up before the task ended; the task goes on (`task` is the last state seen)."""

    def __init__(self, task: Task, waited_seconds: float) -> None:
        super().__init__(
            f"{task['kind']} task {task['task_id']} still {task['status']} ({task['stage']}) "
            f"after {waited_seconds:.0f} s; it goes on"
        )
        self.task = task


class TaskHandle:
    """A deploy or delete task: what the API last said about it, and what can be done with it."""

    def __init__(self, client: Client, task: Task) -> None:
        self._client = client
        self.task = task
        # Promoted through this handle: a wait goes on past awaiting_promotion to the swap.
        self._promoted = False

    @property
    def task_id(self) -> str:
        return self.task["task_id"]

    @property
    def kind(self) -> str:
        return self.task["kind"]

    @property
    def embedding_model_id(self) -> str:
        return self.task["embedding_model_id"]

    @property
    def done(self) -> bool:
        """Ended, however it ended (done, failed, refused, canceled), as last seen."""
        return self.task["status"] in TERMINAL_STATUSES

    def status(self) -> Task:
        """Ask the API again; the answer is kept in `task`."""
        self.task = self._client.api.task(self.task_id, self.kind)
        return self.task

    def wait(self, progress: Progress | None = None, *, timeout: float = DEFAULT_WAIT_TIMEOUT_SECONDS) -> Task:
        """Poll until the task ends (or its candidate awaits promotion: deployed with promotion
        "manual", it waits for `promote()`) and return its last state; `progress` sees every answer.

        A failed, refused or canceled task is returned, not raised: its `status` and `detail` say why.
        Raises TaskWaitTimeoutError after `timeout` seconds (the task itself goes on).
        """
        outcome = self.follow(_Callback(progress), timeout=timeout)
        if outcome.timed_out:
            raise TaskWaitTimeoutError(outcome.task, outcome.waited_seconds)
        return outcome.task

    def follow(
        self, view: View, *, timeout: float = DEFAULT_WAIT_TIMEOUT_SECONDS, stop_at_promotion: bool | None = None
    ) -> WaitOutcome:
        """`wait` with a progress view of the CLI's kind (updates and transient poll errors); it also
        stops at a candidate awaiting promotion, unless `stop_at_promotion` is false or this handle
        promoted it."""
        client = self._client
        outcome = wait_for_task(
            lambda: client.api.task(self.task_id, self.kind),
            self.task,
            view,
            interval=client.poll_interval,
            timeout=timeout,
            clock=client.clock,
            sleep=client.sleep,
            stop_at_promotion=not self._promoted if stop_at_promotion is None else stop_at_promotion,
        )
        self.task = outcome.task
        return outcome

    def cancel(self) -> TaskHandle:
        """Cancel this deploy before it swaps (its green variant is torn down); a handle on the answer."""
        self.task = self._client.api.cancel(self.task_id)
        return self

    def promote(self) -> TaskHandle:
        """Make this deploy's candidate (deployed with promotion "manual", awaiting promotion) live."""
        self.task = self._client.api.promote(self.task_id)
        self._promoted = True
        return self

    def promoted(self) -> TaskHandle:
        """This handle, marked as having promoted its task (its waits go on past awaiting_promotion)."""
        self._promoted = True
        return self

    def rollback(self) -> Alias:
        """Point this task's model back at its previous variant (during the bake period)."""
        return self._client.rollback(self.embedding_model_id)

    def delete(self, *, reason: str | None = None) -> TaskHandle:
        """Delete this task's model: unalias it and tear down every variant. A handle on the delete task."""
        return self._client.delete(self.embedding_model_id, reason=reason)

    def embedder(self) -> Embedder:
        return self._client.embedder(self.embedding_model_id)

    def __repr__(self) -> str:
        return f"TaskHandle({self.kind} {self.task_id} of {self.embedding_model_id}: {self.task['status']})"


class _Callback:
    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def update(self, task: Task) -> None:
        if self._progress is not None:
            self._progress(task)

    def retrying(self, error: Exception) -> None:
        pass


def _names(names: Sequence[str] | None) -> list[str] | None:
    """A list for the JSON body; one name given as a string is that one name, not its letters."""
    if names is None:
        return None
    return [names] if isinstance(names, str) else list(names)


class Client:
    """esdeploy from Python.

    `api_url`: the esdeploy API (default: ESDEPLOY_API, else http://127.0.0.1:8000). `iam=True` signs
    requests with SigV4 (every deployed stage). `profile` / `region`: the AWS profile and region for
    signing and for the embedder's SSM and SageMaker Runtime clients (a profile's own region is
    honoured). `ssm_prefix`: the stage's alias path (default: ESDEPLOY_SSM_PREFIX, else /esdeploy;
    `/esdeploy/dev` for the dev stage). Boto3 clients and the HTTP session can be injected.
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        iam: bool = False,
        profile: str | None = None,
        region: str | None = None,
        ssm_prefix: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        poll_interval: float = DEFAULT_POLL_SECONDS,
        alias_ttl_seconds: float = DEFAULT_ALIAS_TTL_SECONDS,
        http: requests.Session | None = None,
        boto3_session: Any = None,
        ssm_client: Any = None,
        runtime_client: Any = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url or os.environ.get("ESDEPLOY_API") or DEFAULT_API_URL
        self.iam = iam
        self.profile = profile
        self.region = region
        self.ssm_prefix = ssm_prefix or os.environ.get("ESDEPLOY_SSM_PREFIX") or DEFAULT_SSM_PREFIX
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.alias_ttl_seconds = alias_ttl_seconds
        self.clock = clock
        self.sleep = sleep
        self._http = http
        self._boto3_session = boto3_session
        self._ssm = ssm_client
        self._runtime = runtime_client
        self._api: ApiClient | None = None

    # -- the task API ----------------------------------------------------------------------------

    @property
    def api(self) -> ApiClient:
        """The HTTP client (one method per route); built on first use, so credentials are read only then."""
        if self._api is None:
            signer = SigV4Signer.for_api(self.api_url, self.region, self.profile) if self.iam else None
            self._api = ApiClient(self.api_url, timeout=self.timeout, signer=signer, session=self._http)
        return self._api

    def deploy(
        self,
        embedding_model_id: str,
        *,
        artifact: str | None = None,
        instance_type: str | None = None,
        instance_count: int | None = None,
        image_uri: str | None = None,
        bake_seconds: int | None = None,
        skip_parity_check: bool = False,
        manual_promotion: bool = False,
        promotion_timeout_seconds: int | None = None,
        autoscaling: Mapping[str, int] | None = None,
        rollback_alarms: Sequence[str] | None = None,
        max_5xx_errors_per_minute: int | None = None,
        max_model_latency_ms: int | None = None,
        serving: str | None = None,
        dtype: str | None = None,
        task_id: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> TaskHandle:
        """Submit a deploy (green variant, parity gate, swap, bake); returns at once with a handle to `wait()` on.

        `artifact` defaults to the model's latest uploaded version. `manual_promotion`: the checked
        candidate waits beside the live variant until `promote()` (at most `promotion_timeout_seconds`).
        `autoscaling`: {"min_instances", "max_instances", "target_invocations_per_instance"}.
        During the bake, any alarm in `rollback_alarms` (CloudWatch alarm names), or green's own
        5XX or latency alarm (thresholds `max_5xx_errors_per_minute`, `max_model_latency_ms`), in
        ALARM rolls the alias back. `serving`: "handler" (default) or "tei" (the artifact must have been
        packaged for it); `dtype`: "float32" or "float16" (default: float16 on a GPU, float32 on a CPU).
        Only what is given is sent; the stage fills in the rest.
        `config` takes any other deploy setting the API accepts. The same `task_id` again returns the
        same task.
        """
        given = {
            "model_data_url": artifact,
            "instance_type": instance_type,
            "initial_instance_count": instance_count,
            "image_uri": image_uri,
            "bake_seconds": bake_seconds,
            "parity_check": "skip" if skip_parity_check else None,
            "promotion": "manual" if manual_promotion else None,
            "promotion_timeout_seconds": promotion_timeout_seconds,
            "autoscaling": None if autoscaling is None else dict(autoscaling),
            "rollback_alarms": _names(rollback_alarms),
            "max_5xx_errors_per_minute": max_5xx_errors_per_minute,
            "max_model_latency_ms": max_model_latency_ms,
            "serving": serving,
            "dtype": dtype,
        }
        body = {**(config or {}), **{key: value for key, value in given.items() if value is not None}}
        return TaskHandle(self, self.api.deploy(embedding_model_id, task_id=task_id, config=body))

    def delete(self, embedding_model_id: str, *, reason: str | None = None, task_id: str | None = None) -> TaskHandle:
        """Submit a delete: unalias the model and tear down every variant."""
        return TaskHandle(self, self.api.delete(embedding_model_id, task_id=task_id, reason=reason))

    def task(self, task_id: str, kind: str | None = None) -> TaskHandle:
        """A handle on an existing task (its kind is looked up when not given)."""
        found = self.api.task(task_id, kind) if kind else self.api.find_task(task_id)
        return TaskHandle(self, found)

    def newest_task(self, embedding_model_id: str, kind: str = "deploy") -> TaskHandle:
        return TaskHandle(self, self.api.newest_task(embedding_model_id, kind))

    def cancel(self, task_id: str) -> TaskHandle:
        return TaskHandle(self, self.api.cancel(task_id))

    def promote(self, task_id: str) -> TaskHandle:
        """Make the candidate of a deploy awaiting promotion live (the swap follows, as after a gate)."""
        return TaskHandle(self, self.api.promote(task_id)).promoted()

    def rollback(self, embedding_model_id: str) -> Alias:
        return self.api.rollback(embedding_model_id)

    def models(self) -> Models:
        """`{"models": [alias, ...]}`: GET /models's answer, as every method here returns the API's
        answer (the same shape as `esdeploy --output json models` prints)."""
        return self.api.models()

    def model(self, embedding_model_id: str) -> Alias:
        return self.api.model(embedding_model_id)

    def invoke(
        self, embedding_model_id: str, texts: Sequence[str], *, normalize: bool | None = None, candidate: bool = False
    ) -> dict[str, Any]:
        """Embed through the API (one more hop, API Gateway's limits): for a quick look; use `embedder()`.
        `candidate`: the candidate of a deploy awaiting promotion answers (re-embedding a corpus)."""
        return self.api.invoke(embedding_model_id, list(texts), normalize=normalize, candidate=candidate)

    # -- embeddings, direct -----------------------------------------------------------------------

    def embedder(self, embedding_model_id: str, *, ttl_seconds: float | None = None) -> Embedder:
        """Embeds through the model's alias straight at SageMaker Runtime (see esdeploy.embedder)."""
        return Embedder(
            embedding_model_id,
            ssm=self._ssm_client(),
            runtime=self._runtime_client(),
            ssm_prefix=self.ssm_prefix,
            ttl_seconds=self.alias_ttl_seconds if ttl_seconds is None else ttl_seconds,
        )

    def boto3_session(self) -> Any:
        """The boto3 session of `profile` and `region` (AWS_ENDPOINT_URL, when set, applies as boto3 does)."""
        if self._boto3_session is None:
            import boto3
            from botocore.exceptions import BotoCoreError

            try:
                self._boto3_session = boto3.Session(profile_name=self.profile, region_name=self.region)
            except BotoCoreError as error:  # an unknown profile: named, with where to look
                raise AwsSetupError(f"{error} (`aws configure list-profiles` shows the ones there are)") from None
        return self._boto3_session

    def aws_client(self, service: str) -> Any:
        """A boto3 client of `profile` and `region`; no region anywhere is an AwsSetupError, not a traceback."""
        from botocore.exceptions import BotoCoreError, NoRegionError

        try:
            return self.boto3_session().client(service)
        except NoRegionError:
            ways = "set AWS_REGION, or give the profile a region"
            raise AwsSetupError(
                f"{service} needs a region: pass region= to esdeploy.Client, {ways}",
                cli_message=f"{service} needs a region: pass --region, {ways}",
            ) from None
        except BotoCoreError as error:
            raise AwsSetupError(f"{service}: {error}") from None

    def _ssm_client(self) -> Any:
        if self._ssm is None:
            self._ssm = self.aws_client("ssm")
        return self._ssm

    def _runtime_client(self) -> Any:
        if self._runtime is None:
            self._runtime = self.aws_client("sagemaker-runtime")
        return self._runtime


__all__ = ["ApiError", "AwsSetupError", "Client", "TaskHandle", "TaskWaitTimeoutError"]
