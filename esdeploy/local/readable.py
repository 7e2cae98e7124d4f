"""Local stack: what `esdeploy local` prints while it runs, one readable line per thing that happened.

Like `chalice local`, `sam local` and `docker compose`: a request, a step of a task, an endpoint
coming up or going, an alarm moving, a warning; with `--log-format json`, the app's own JSON log
lines instead (what the log file always holds, and `esdeploy logs` reads). A status poll that
repeats (a `--wait` asks every 1.5 s) is one line, then a count when something else happens.

    12:00:01  api       POST /deploy -> 200 (8 ms)  deploy task 5c1d... of minilm
    12:00:01  task      deploy 5c1d... minilm: queued (pending)  deploy task accepted via http
    12:00:02  endpoint  esdlocal-minilm-...-33d8b6c9 Creating
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from chalicelib.adapters.sagemaker_shapes import platform_status
from chalicelib.domain.models import EndpointState, Task
from chalicelib.ports import TaskStore

TEXT, JSON = "text", "json"
LOG_FORMATS = (TEXT, JSON)
_SOURCE_WIDTH = 8  # "endpoint", the longest source


def request_line(record: dict[str, Any]) -> tuple[str, str]:
    """("api", text) of an "http request" log line; the route with its parameters filled in (a path
    the local API server answered itself is the path as asked)."""
    route = str(record.get("route") or "?")
    try:
        path = route.format(**(record.get("path_params") or {}))
    except (KeyError, IndexError, ValueError, AttributeError):
        path = route
    text = f"{record.get('http_method', '?')} {path} -> {record.get('status_code', '?')}"
    if record.get("duration_ms") is not None:
        text += f" ({record['duration_ms']:g} ms)"
    if record.get("answered_by"):
        text += f" ({record['answered_by']}: {record.get('detail')})"
    about = [str(record[key]) for key in ("task_id", "embedding_model_id") if record.get(key)]
    if about:
        text += "  " + " of ".join(about)
    return "api", text


def task_line(task: Task, index: int) -> tuple[str, str]:
    """("task", text) of a task's event number `index`: what `esdeploy status` lists, as it happens."""
    event = task.events[index]
    text = f"{task.kind.value} {task.task_id} {task.embedding_model_id}: {event.stage.value} ({event.status.value})"
    if event.detail:
        text += f"  {event.detail}"
    return "task", text


def endpoint_line(name: str, state: EndpointState, reason: str | None) -> tuple[str, str]:
    text = f"{name} {platform_status(state) if state != EndpointState.MISSING else 'gone'}"
    return "endpoint", f"{text}: {reason}" if reason else text


def alarm_line(name: str, previous: str, state: str, reason: str) -> tuple[str, str]:
    return "alarm", f"{name} {previous} -> {state}: {reason}"


def other_line(record: dict[str, Any]) -> tuple[str, str]:
    """A warning or error the app logged: its message, then its own fields."""
    skip = {"level", "location", "message", "timestamp", "service", "name", "xray_trace_id", "exception_name",
            "request_id"}
    fields = " ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in record.items()
        if key not in skip and value is not None
    )
    text = f"{record.get('message', '')}  {fields}".rstrip()
    if record.get("exception"):
        text += f"\n{record['exception']}"
    return str(record.get("level", "warning")).lower(), text


@dataclass
class Reporter:
    """Prints the lines; every thread of the stack reports here (one lock, whole lines)."""

    out: IO[str]
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _told: dict[str, int] = field(default_factory=dict)  # task id -> events printed
    _repeat: tuple[str, str] | None = None
    _repeats: int = 0

    def request(self, record: dict[str, Any]) -> None:
        source, text = request_line(record)
        with self._lock:
            if record.get("http_method") in ("GET", "HEAD") and self._repeat == (source, text.split(" (", 1)[0]):
                self._repeats += 1  # a poll like the last one: counted, shown when something else happens
                return
            self._write(source, text)
            self._repeat = (source, text.split(" (", 1)[0])

    def task(self, task: Task) -> None:
        """The events of `task` not printed yet (called after every write of a task)."""
        with self._lock:
            told = self._told.get(task.task_id, 0)
            for index in range(told, len(task.events)):
                self._write(*task_line(task, index))
            self._told[task.task_id] = max(told, len(task.events))

    def endpoint(self, name: str, state: EndpointState, reason: str | None) -> None:
        with self._lock:
            self._write(*endpoint_line(name, state, reason))

    def alarm(self, name: str, previous: str, state: str, reason: str) -> None:
        with self._lock:
            self._write(*alarm_line(name, previous, state, reason))

    def log(self, record: dict[str, Any]) -> None:
        """One of the app's log lines: a request, or a warning or error; other lines (its steps) are
        told by the task's events. A warning about a task whose events are shown says nothing more."""
        if record.get("message") == "http request":
            self.request(record)
            return
        if record.get("level") not in ("WARNING", "ERROR", "CRITICAL"):
            return
        with self._lock:
            if record.get("level") == "WARNING" and record.get("task_id") in self._told:
                return
            self._write(*other_line(record))

    def _write(self, source: str, text: str) -> None:
        if self._repeats:
            assert self._repeat is not None
            times = "time" if self._repeats == 1 else "times"
            self._print(self._repeat[0], f"{self._repeat[1]} again, {self._repeats} more {times}")
        self._repeat, self._repeats = None, 0
        self._print(source, text)

    def _print(self, source: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        self.out.write(f"{stamp}  {source:<{_SOURCE_WIDTH}}  {text}\n")
        self.out.flush()


class ReadableLogHandler(logging.Handler):
    """The app's log records, formatted as the JSON lines they are (Powertools' formatter, so the
    keys are the log file's), then told by the reporter."""

    def __init__(self, reporter: Reporter, formatter: logging.Formatter) -> None:
        super().__init__(logging.INFO)
        self.reporter = reporter
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parsed = json.loads(self.format(record))
        except ValueError:
            parsed = {"level": record.levelname, "message": record.getMessage()}
        if isinstance(parsed, dict):
            self.reporter.log(parsed)


Swapped = list[tuple[logging.Logger, list[logging.Handler]]]


def readable_console(reporter: Reporter, formatter: logging.Formatter, loggers: Iterable[logging.Logger]) -> Swapped:
    """On each of `loggers`, the reporter's handler in place of any handler writing to stdout
    (Powertools' JSON lines); each logger's handlers as they were, for `restore_console`."""
    readable = ReadableLogHandler(reporter, formatter)
    swapped: Swapped = []
    for target in loggers:
        swapped.append((target, list(target.handlers)))
        for handler in list(target.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                target.removeHandler(handler)
        target.addHandler(readable)
    return swapped


def restore_console(swapped: Swapped) -> None:
    """The loggers' handlers as they were before `readable_console`, in their order."""
    for target, handlers in swapped:
        for handler in list(target.handlers):
            if isinstance(handler, ReadableLogHandler):
                target.removeHandler(handler)
        for index, handler in enumerate(handlers):
            if handler not in target.handlers:
                target.handlers.insert(index, handler)


class ReportingTaskStore:
    """The task store, telling the reporter each task's new events once a write of it succeeded."""

    def __init__(self, inner: TaskStore, reporter: Reporter) -> None:
        self._inner = inner
        self._reporter = reporter

    def create(self, task: Task) -> Task:
        stored = self._inner.create(task)
        self._reporter.task(stored)
        return stored

    def update(self, task: Task) -> Task:
        stored = self._inner.update(task)
        self._reporter.task(stored)
        return stored

    def request_cancel(self, task_id: str, at: datetime, detail: str) -> Task | None:
        stored = self._inner.request_cancel(task_id, at, detail)
        if stored is not None:
            self._reporter.task(stored)
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
