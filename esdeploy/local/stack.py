"""Local stack: starts embedded AWS, the app's HTTP API, the queue pollers and local endpoints."""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.adapters.sagemaker_shapes import endpoint_state_change, variant_tags
from chalicelib.domain.models import EndpointState
from chalicelib.ports import VariantSpec
from esdeploy.local.account import settle_account
from esdeploy.local.alarm_standin import AlarmStandIn
from esdeploy.local.aws_server import EmbeddedAws
from esdeploy.local.embedded_aws import TEMPLATE, create_resources, keep_dynamodb_atomic, load_cfn
from esdeploy.local.environment import CREATION_SECONDS, LOCAL_REGION, local_environment
from esdeploy.local.event_rules import EventRules
from esdeploy.local.hosting import LocalHosting
from esdeploy.local.housekeeping import Cleaned, FolderLock, claim_state_dir, clean_temp_leftovers
from esdeploy.local.invocation_metrics import INVOCATIONS_LOG
from esdeploy.local.pollers import LOCAL_ACCOUNT, QueuePoller, Scheduler, event_source_concurrency, queue_functions
from esdeploy.local.processes import LOOPBACK, PortInUseError, ensure_port_free, free_port
from esdeploy.local.readable import Reporter, ReportingTaskStore, Swapped, readable_console, restore_console

logger = logging.getLogger(__name__)
LOG_FILE = "esdeploy.log"
ALARM_EVENTS = "alarm-events.jsonl"  # every alarm the stand-in moved, for a person, the demo and the tests

POLLER_CONNECTIONS = 32



def deploy_queue_rules(template: dict[str, Any], settings: Any) -> EventRules:
    """The template's EventBridge rules that feed the deploy-tasks queue, for this stage's names."""
    return EventRules.targeting(
        template, "DeployTasksQueue", {"ResourcePrefix": settings.resource_prefix, "Stage": settings.stage}
    )


@dataclass(frozen=True)
class StackInfo:
    """Where things are; written as JSON to the state file for the CLI, the demo and the tests."""

    api_url: str
    aws_endpoint: str
    artifact_upload_url: str
    region: str
    state_dir: str
    pid: int
    ssm_prefix: str
    log_file: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LocalStack:
    """Everything in one process tree on 127.0.0.1. `start()`, then `stop()` (or use `with`)."""

    def __init__(
        self,
        port: int = 8000,
        state_dir: Path | None = None,
        sweep_every: float = 60.0,
        endpoint_creation_seconds: float = CREATION_SECONDS,
        reporter: Reporter | None = None,
    ) -> None:
        self.port = port
        # Where the readable lines go (`esdeploy local`'s default); None: the app's JSON lines on stdout.
        self.reporter = reporter
        self._creation_seconds = endpoint_creation_seconds
        self._own_state_dir = state_dir is None
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="esdeploy-local-"))
        self._sweep_every = sweep_every
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: EmbeddedAws | None = None
        self._http: Any = None
        self._http_thread: threading.Thread | None = None
        self.hosting: LocalHosting | None = None
        self.info: StackInfo | None = None
        self._events_lock = threading.Lock()
        self._state_lock: FolderLock | None = None
        self.cleaned = Cleaned()
        self._log_handler: logging.Handler | None = None
        self._console_handlers: Swapped = []
        self._rules = EventRules(())  # the template's, from start(): until then nothing is delivered

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ---- start ------------------------------------------------------------------------------

    def start(self) -> StackInfo:
        ensure_port_free(self.port)  # before anything starts: a taken port is one line, not a traceback
        # Ours alone from here on; then whatever a killed earlier run left (here and in the temp folder) goes.
        self._state_lock, self.cleaned = claim_state_dir(self.state_dir)
        clean_temp_leftovers(self.cleaned)
        # moto's server logs every request at INFO; the stack's own lines are what a person reads.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        keep_dynamodb_atomic()  # the server runs in this process: its DynamoDB keeps AWS's guarantee
        self._moto = EmbeddedAws(LOOPBACK, free_port())
        self._moto.start()
        aws_endpoint = self._moto.url
        # The app reads its settings (and Chalice its queue names) from the environment at import.
        os.environ.update(local_environment(aws_endpoint))
        if self.reporter is not None:
            # The EMF metric lines Powertools prints (for CloudWatch, which is not here) would be the
            # only JSON left on the readable console; --log-format json keeps them.
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"

        import boto3
        from botocore.config import Config

        from chalicelib.config import load_settings

        settings = load_settings(os.environ)
        session = boto3.Session(region_name=LOCAL_REGION)
        # The whole stack as doctor reads one on AWS (roles, functions, outputs: `esdeploy doctor --stage local`),
        # and an account ready for it (the service-linked role, quotas for blue and green).
        api_url = f"http://{LOOPBACK}:{self.port}"
        urls = create_resources(session, os.environ, functions=True, outputs={"EndpointURL": f"{api_url}/"})
        settle_account(session, self._moto.quotas, settings.allowed_instance_types)
        # One client for every poller (Lambda runs several per queue) and the events: a connection each.
        sqs = session.client("sqs", config=Config(max_pool_connections=POLLER_CONNECTIONS))
        self._sqs = sqs
        self._deploy_url = urls.deploy

        self.hosting = LocalHosting(
            session.client("s3"),
            self.state_dir / "endpoints",
            on_state_change=self._endpoint_changed,
            creation_seconds=self._creation_seconds,
            region=LOCAL_REGION,
            account=LOCAL_ACCOUNT,
            invocations_log=self.state_dir / INVOCATIONS_LOG,
        )
        self._moto.hosting = self.hosting  # InvokeEndpoint at AWS_ENDPOINT_URL reaches the local endpoints
        self._install_adapters(settings, self.hosting, self.reporter)
        self._warm_up(session)

        import app as chalice_app

        template = load_cfn(TEMPLATE)
        self._rules = deploy_queue_rules(template, settings)
        self._log_to_file(self.state_dir / LOG_FILE)

        for queue, name in queue_functions(chalice_app.app).items():
            handler = getattr(chalice_app, name)
            for index in range(1, event_source_concurrency(name, template) + 1):
                self._threads.append(QueuePoller(sqs, urls.url_of(queue), name, handler, self._stop, index=index))
        self._threads.append(Scheduler("sweeper", chalice_app.sweeper, self._sweep_every, self._stop))
        # CloudWatch's part: moto keeps alarms but never moves them; this evaluates them on the local endpoints.
        self._threads.append(
            AlarmStandIn(session.client("cloudwatch"), self.hosting.invocations, self._alarm_changed, self._stop,
                         region=LOCAL_REGION, account=LOCAL_ACCOUNT)
        )
        for thread in self._threads:
            thread.start()

        self._serve_http(chalice_app.app)
        self.info = StackInfo(
            api_url=api_url,
            aws_endpoint=aws_endpoint,
            artifact_upload_url=f"s3://{settings.artifact_bucket}/{settings.artifact_prefix.rstrip('/')}",
            region=LOCAL_REGION,
            state_dir=str(self.state_dir),
            pid=os.getpid(),
            ssm_prefix=settings.ssm_prefix,
            log_file=str(self.state_dir / LOG_FILE),
        )
        (self.state_dir / "stack.json").write_text(json.dumps(self.info.as_dict(), indent=2))
        return self.info

    @staticmethod
    def _warm_up(session: Any) -> None:
        """Once, before the first request, what would otherwise land on the first deploy's clock although it
        is no deploy's own time: moto sets up a service's backend on its first call (SSM's took most of a
        second here), and a worker's first message builds its lazy clients and imports Powertools' batch
        module (on AWS, a Lambda container's cold start)."""
        import chalicelib.batch_processor  # noqa: F401
        from chalicelib import wiring

        session.client("ssm").describe_parameters(MaxResults=1)
        session.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
        adapters = wiring.adapters()
        for build in (lambda: adapters.alarms, lambda: adapters.scaling):
            build()
        for queue in (adapters.deploy_queue, adapters.teardown_queue, adapters.requests_queue):
            getattr(queue, "url", None)  # an SqsQueue asks SQS for its URL once

    @staticmethod
    def _install_adapters(settings: Any, hosting: LocalHosting, reporter: Reporter | None) -> None:
        from chalicelib import wiring

        adapters = wiring.aws_adapters(settings, hosting_factory=lambda: hosting)
        if reporter is not None:
            adapters.store = ReportingTaskStore(adapters.store, reporter)
        wiring.use(adapters)

    def _log_to_file(self, path: Path) -> None:
        """The app's JSON log lines also go to a file: what `esdeploy logs TASK_ID` reads locally
        (on AWS, CloudWatch Logs Insights reads the same lines)."""
        from chalicelib.logs import PARENT
        from chalicelib.logs import logger as app_logger

        self._log_handler = logging.FileHandler(path, encoding="utf-8")
        self._log_handler.setFormatter(app_logger.registered_formatter)
        self._log_handler.setLevel(logging.INFO)
        for target in (PARENT, logging.getLogger(app_logger.name)):
            target.addHandler(self._log_handler)
        if self.reporter is not None:
            self._report_on_console(self.reporter, app_logger.registered_formatter)

    def _report_on_console(self, reporter: Reporter, formatter: logging.Formatter) -> None:
        """Instead of Powertools' JSON on stdout, the reporter's readable lines (the file keeps the JSON)."""
        from chalicelib.logs import PARENT
        from chalicelib.logs import logger as app_logger

        self._console_handlers = readable_console(reporter, formatter, (PARENT, logging.getLogger(app_logger.name)))

    def _serve_http(self, app: Any) -> None:
        from esdeploy.local.http_server import create_api_server

        try:
            self._http = create_api_server(app, LOOPBACK, self.port)
        except OSError as error:  # taken since the check at start
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(self.port) from None
            raise
        # The server itself, not chalice's wrapper, which prints "Serving on ..." (the ready line says it).
        self._http_thread = threading.Thread(target=self._http.server.serve_forever, name="http", daemon=True)
        self._http_thread.start()

    # ---- EventBridge's part -----------------------------------------------------------------

    def _endpoint_changed(self, spec: VariantSpec, state: EndpointState, reason: str | None) -> None:
        """Every state change, as EventBridge delivers SageMaker's documented event to the deploy queue."""
        event = endpoint_state_change(
            spec.name, state, variant_tags(spec), reason, region=LOCAL_REGION, account=LOCAL_ACCOUNT
        )
        status = event["detail"]["EndpointStatus"]
        with self._events_lock, (self.state_dir / "endpoint-events.jsonl").open("a") as log:
            log.write(json.dumps({"at": time.time(), "endpoint": spec.name, "status": status}) + "\n")
        if self.reporter is not None:
            self.reporter.endpoint(spec.name, state, reason)
        self._deliver(event)

    def _alarm_changed(self, event: dict[str, Any]) -> None:
        """The alarm stand-in moved an alarm: CloudWatch's event, as EventBridge delivers it to the deploy queue."""
        detail = event["detail"]
        with self._events_lock, (self.state_dir / ALARM_EVENTS).open("a") as log:
            log.write(json.dumps({"at": time.time(), "alarm": detail["alarmName"], "state": detail["state"]["value"],
                                  "previous": detail["previousState"]["value"],
                                  "reason": detail["state"]["reason"]}) + "\n")
        if self.reporter is not None:
            self.reporter.alarm(detail["alarmName"], detail["previousState"]["value"], detail["state"]["value"],
                                detail["state"]["reason"])
        self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        """What EventBridge's rules do with SageMaker's and CloudWatch's events: onto the deploy-tasks
        queue, when a rule of the template that targets it matches (else nowhere, as on AWS)."""
        if self._stop.is_set():
            return
        if not self._rules.matching(event):
            logger.debug("no rule routes this event to deploy-tasks: %s %s", event.get("detail-type"),
                         json.dumps(event.get("detail"))[:200])
            return
        self._sqs.send_message(QueueUrl=self._deploy_url, MessageBody=json.dumps(event))

    # ---- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop in dependency order; every endpoint process is terminated and waited for."""
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.hosting is not None:
            self.hosting.close()
        if self._moto is not None:
            self._moto.stop()
        from chalicelib import wiring

        wiring.use(None)
        if self._log_handler is not None:
            from chalicelib.logs import PARENT
            from chalicelib.logs import logger as app_logger

            for target in (PARENT, logging.getLogger(app_logger.name)):
                target.removeHandler(self._log_handler)
            self._log_handler.close()
        restore_console(self._console_handlers)
        self._console_handlers = []
        if self._own_state_dir:  # made by this stack (a given --state-dir is the person's; only its downloads go)
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._state_lock is not None:
            self._state_lock.release()
            self._state_lock = None
