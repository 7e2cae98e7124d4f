"""What `esdeploy local` prints while it runs: one readable line per thing that happened
(esdeploy/local/readable.py), fed by the app's real loggers and a real task store."""
from __future__ import annotations

import io
import logging
import sys
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.api.schemas import parse_deploy
from chalicelib.domain.models import EndpointState, TaskStatus
from chalicelib.logs import PARENT
from chalicelib.logs import logger as app_logger
from chalicelib.services.tasks import TaskService
from esdeploy.local.readable import Reporter, ReportingTaskStore, readable_console, restore_console
from tests.fakes.artifacts import publish_in_memory


def request(method: str, route: str, status: int, **params: str) -> dict[str, Any]:
    return {"level": "INFO", "message": "http request", "http_method": method, "route": route,
            "path_params": params, "status_code": status, "duration_ms": 3.0, "task_id": params.get("task_id")}


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def reporter(out: io.StringIO) -> Reporter:
    return Reporter(out, clock=lambda: 0.0)


def said(out: io.StringIO) -> list[str]:
    """The lines without their time stamp (local time of the machine running the test)."""
    return [line[10:] for line in out.getvalue().splitlines()]


def test_a_request_is_one_line_and_repeated_polls_are_counted(reporter: Reporter, out: io.StringIO) -> None:
    reporter.log(request("POST", "/deploy", 200, task_id="t1"))
    for _ in range(4):  # a --wait polling
        reporter.log(request("GET", "/deploy/{task_id}", 200, task_id="t1"))
    reporter.endpoint("esd-m1-1", EndpointState.IN_SERVICE, None)
    reporter.log(request("GET", "/deploy/{task_id}", 200, task_id="t1"))
    assert said(out) == [
        "api       POST /deploy -> 200 (3 ms)  t1",
        "api       GET /deploy/t1 -> 200 (3 ms)  t1",
        "api       GET /deploy/t1 -> 200 again, 3 more times",
        "endpoint  esd-m1-1 InService",
        "api       GET /deploy/t1 -> 200 (3 ms)  t1",
    ]


def test_an_answer_of_the_local_server_itself_is_an_api_line_too(reporter: Reporter, out: io.StringIO) -> None:
    reporter.log({"level": "INFO", "message": "http request", "http_method": "GET", "route": "/nope",
                  "status_code": 403, "answered_by": "local API server",
                  "detail": "Missing Authentication Token: no route answers GET /nope"})
    assert said(out) == [
        "api       GET /nope -> 403 (local API server: Missing Authentication Token: no route answers GET /nope)"
    ]


def test_steps_are_told_by_the_task_and_warnings_about_it_are_not_repeated(
    reporter: Reporter, out: io.StringIO, memory_adapters: wiring.Adapters
) -> None:
    """The task's own events, each once, as `esdeploy status` lists them; the app's INFO lines about
    its steps say nothing more, nor a warning about a task whose events are shown."""
    memory_adapters.store = ReportingTaskStore(memory_adapters.store, reporter)
    publish_in_memory(memory_adapters.artifacts, memory_adapters.settings, "m1")
    tasks = memory_adapters.build(TaskService)
    task = tasks.submit(parse_deploy({"embedding_model_id": "m1", "id": "t1"}))
    tasks.submit(parse_deploy({"embedding_model_id": "m1", "id": "t1"}))  # a replay writes nothing
    tasks.cancel(task.task_id)
    reporter.log({"level": "INFO", "message": "deploy step", "task_id": "t1", "stage": "queued"})
    reporter.log({"level": "WARNING", "message": "deploy ended", "task_id": "t1", "detail": "canceled"})
    reporter.log({"level": "ERROR", "message": "unexpected error", "error": "boom", "task_id": None})
    assert said(out) == [
        "task      deploy t1 m1: queued (pending)  deploy task accepted via http",
        "task      deploy t1 m1: queued (canceled)  canceled before it started",
        "error     unexpected error  error=boom",
    ]
    assert memory_adapters.store.get("t1").status == TaskStatus.CANCELED  # type: ignore[union-attr]


def test_alarms_and_endpoints_in_their_own_words(reporter: Reporter, out: io.StringIO) -> None:
    reporter.alarm("esd-m1-2-invocation-5xx", "OK", "ALARM", "Threshold Crossed: 1 datapoint [7.0] > 5.0")
    reporter.endpoint("esd-m1-2", EndpointState.FAILED, "the model did not load")
    reporter.endpoint("esd-m1-2", EndpointState.DELETING, None)
    assert said(out) == [
        "alarm     esd-m1-2-invocation-5xx OK -> ALARM: Threshold Crossed: 1 datapoint [7.0] > 5.0",
        "endpoint  esd-m1-2 Failed: the model did not load",
        "endpoint  esd-m1-2 Deleting",
    ]


def test_the_apps_json_on_stdout_becomes_readable_lines_and_comes_back(reporter: Reporter, out: io.StringIO) -> None:
    """The app's loggers write Powertools JSON to stdout (`--log-format json` keeps that); the default
    swaps it for the reporter, and stopping the stack puts it back."""
    loggers = (PARENT, logging.getLogger(app_logger.name))
    before = [list(target.handlers) for target in loggers]
    assert any(_on_stdout(handler) for handlers in before for handler in handlers)
    swapped = readable_console(reporter, app_logger.registered_formatter, loggers)
    try:
        assert not any(_on_stdout(handler) for target in loggers for handler in target.handlers)
        app_logger.info("http request", extra={"http_method": "GET", "route": "/health", "path_params": {},
                                               "status_code": 200, "duration_ms": 0.2})
        logging.getLogger("chalicelib.services.example").warning("advance for an unknown deploy task",
                                                                 extra={"task_id": "t9"})
    finally:
        restore_console(swapped)
    assert said(out) == [
        "api       GET /health -> 200 (0.2 ms)",
        "warning   advance for an unknown deploy task  task_id=t9",
    ]
    assert [list(target.handlers) for target in loggers] == before  # in their order too


def _on_stdout(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__)
