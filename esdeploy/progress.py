"""Operator tool layer: waiting for a task to end, and showing its stages while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from chalicelib.domain.models import DELETE_STAGES, TERMINAL_STATUSES, Promotion, TaskKind, TaskStatus
from chalicelib.domain.models import stage_order as stages_of
from esdeploy.api_client import ApiError, ApiUnreachableError, Task
from esdeploy.exits import Exit
from esdeploy.wording import for_the_cli

DEFAULT_POLL_SECONDS = 1.5
DEFAULT_WAIT_TIMEOUT_SECONDS = 1800.0
# A gateway blip must not end a 20-minute wait; a persistent outage must not hang it either.
MAX_CONSECUTIVE_POLL_ERRORS = 5

# Plain wait lines keep their columns whatever stage comes: as wide as the longest stage name.
STAGE_WIDTH = max(len(stage) for stage in stages_of(TaskKind.DEPLOY, Promotion.MANUAL) + DELETE_STAGES)

# The exit code of each way a task ends (the domain's terminal statuses: a test holds the two together).
_BY_STATUS: dict[str, Exit] = {
    TaskStatus.DONE: Exit.DONE, TaskStatus.FAILED: Exit.FAILED, TaskStatus.REFUSED: Exit.REFUSED,
    TaskStatus.CANCELED: Exit.CANCELED,
}


def is_terminal(task: Task) -> bool:
    return task["status"] in TERMINAL_STATUSES


def awaits_promotion(task: Task) -> bool:
    """A manual-promotion deploy whose candidate passed the gate: a wait ends here, since only a
    person (or a reindex job) moves it on, with `esdeploy promote`."""
    return task["status"] == "processing" and task["stage"] == "awaiting_promotion"


def stage_order(task: Task) -> list[str]:
    """The stages a task goes through, in order (the server's): a manual promotion adds its wait before the swap."""
    kind = task.get("kind", TaskKind.DEPLOY.value)
    if kind not in tuple(TaskKind):
        return []
    manual = task.get("config", {}).get("promotion") == Promotion.MANUAL
    return [stage.value for stage in stages_of(TaskKind(kind), Promotion.MANUAL if manual else Promotion.AUTO)]


def exit_for(task: Task) -> Exit:
    """The exit code of a task that ended; a task still running is not an error to report."""
    return _BY_STATUS.get(task["status"], Exit.DONE)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@dataclass(frozen=True)
class StageSpan:
    """One uninterrupted stretch of a task in one stage, from its events."""

    stage: str
    started: datetime
    ended: datetime | None  # the next stage's start; None while the task is still in it
    last_at: datetime
    status: str
    detail: str | None


def spans(task: Task) -> list[StageSpan]:
    result: list[StageSpan] = []
    for event in task.get("events", []):
        at = parse_time(event["at"])
        detail = event.get("detail")
        if result and result[-1].stage == event["stage"]:
            last = result[-1]
            result[-1] = StageSpan(last.stage, last.started, None, at, event["status"], detail or last.detail)
            continue
        if result:
            last = result[-1]
            result[-1] = StageSpan(last.stage, last.started, at, last.last_at, last.status, last.detail)
        result.append(StageSpan(event["stage"], at, None, at, event["status"], detail))
    return result


class View(Protocol):
    """Where a wait shows what it sees."""

    def update(self, task: Task) -> None: ...

    def retrying(self, error: Exception) -> None: ...


@dataclass(frozen=True)
class WaitOutcome:
    task: Task
    timed_out: bool
    waited_seconds: float

    @property
    def exit_code(self) -> Exit:
        return Exit.WAIT_TIMEOUT if self.timed_out else exit_for(self.task)


def wait_for_task(
    fetch: Callable[[], Task],
    first: Task,
    view: View,
    *,
    interval: float = DEFAULT_POLL_SECONDS,
    timeout: float = DEFAULT_WAIT_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    max_errors: int = MAX_CONSECUTIVE_POLL_ERRORS,
    stop_at_promotion: bool = True,
) -> WaitOutcome:
    """Poll `fetch` until the task is terminal (or awaits promotion) or `timeout` seconds have passed."""
    started = clock()
    deadline = started + timeout
    task = first
    errors = 0
    view.update(task)
    while not is_terminal(task) and not (stop_at_promotion and awaits_promotion(task)):
        remaining = deadline - clock()
        if remaining <= 0:
            return WaitOutcome(task, True, clock() - started)
        sleep(min(interval, remaining))
        try:
            task = fetch()
        except (ApiError, ApiUnreachableError) as error:
            if isinstance(error, ApiError) and not error.transient:
                raise
            errors += 1
            if errors >= max_errors:
                raise
            view.retrying(error)
            continue
        errors = 0
        view.update(task)
    return WaitOutcome(task, False, clock() - started)


class QuietView:
    """--json: nothing while waiting; the caller prints the final JSON."""

    def update(self, task: Task) -> None:
        pass

    def retrying(self, error: Exception) -> None:
        pass


@dataclass
class LineView:
    """No terminal: one plain line per new task event, times relative to the task's creation."""

    console: Console
    _printed: int = 0

    def update(self, task: Task) -> None:
        events = task.get("events", [])
        if len(events) < self._printed:  # the server rewrote history; start over rather than skip
            self._printed = 0
        created = parse_time(task["created_at"])
        for event in events[self._printed :]:
            offset = (parse_time(event["at"]) - created).total_seconds()
            line = f"+{format_seconds(max(offset, 0.0)):>8}  {event['stage']:<{STAGE_WIDTH}} {event['status']:<11} "
            line += for_the_cli(event.get("detail", ""))
            self.console.print(Text(line.rstrip()), soft_wrap=True)
        self._printed = len(events)

    def retrying(self, error: Exception) -> None:
        self.console.print(Text(f"poll failed ({error}); retrying"), soft_wrap=True)


@dataclass
class Board:
    """The live picture of one task: every stage of its kind, done / current / to come, with times."""

    task: Task
    clock: Callable[[], float] = time.time
    note: str | None = None
    # One spinner for the board's life: a fresh one per refresh would never leave its first frame.
    _spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="cyan"))

    def __rich__(self) -> RenderableType:
        task = self.task
        seen = spans(task)
        by_stage = {span.stage: span for span in seen}
        order = stage_order(task)
        order += [span.stage for span in seen if span.stage not in order]
        current = seen[-1] if seen else None
        table = Table.grid(padding=(0, 2))
        for stage in order:
            span = by_stage.get(stage)
            icon, took, style = self._row(span, span is current)
            detail = Text(for_the_cli(span.detail or ""), style="dim") if span else Text("")
            table.add_row(icon, Text(stage, style=style), Text(took, style=style), detail)
        header = Text.assemble(
            (f"{task.get('kind', 'task')} ", "bold"),
            (task["task_id"], "bold"),
            f" · {task['embedding_model_id']} · ",
            (task["status"], STATUS_STYLE.get(task["status"], "")),
            f" · {format_seconds(self._total(seen))}",
        )
        # The task's final detail is in its stage's row and in the line printed under the board.
        parts: list[RenderableType] = [header, table]
        if self.note:
            parts.append(Text(self.note, style="yellow"))
        return Group(*parts)

    def _row(self, span: StageSpan | None, is_current: bool) -> tuple[RenderableType, str, str]:
        if span is None:
            return Text("·", style="dim"), "", "dim"
        status = self.task["status"]
        if not is_current:
            return Text("✓", style="green"), self._took(span), ""
        if status == "done":
            return Text("✓", style="green"), "", "green"
        if status in ("failed", "refused"):
            return Text("✗", style="red"), self._took(span), "red"
        if status == "canceled":
            return Text("⊘", style="yellow"), self._took(span), "yellow"
        return self._spinner, self._took(span), "bold"

    def _took(self, span: StageSpan) -> str:
        if span.ended is not None:
            return format_seconds((span.ended - span.started).total_seconds())
        if is_terminal(self.task):
            return format_seconds((span.last_at - span.started).total_seconds())
        # Still running: local clock against server time; a skewed clock must not show "-3s".
        return format_seconds(max(self.clock() - span.started.timestamp(), 0.0))

    def _total(self, seen: list[StageSpan]) -> float:
        if not seen:
            return 0.0
        start = seen[0].started
        if is_terminal(self.task):
            return (seen[-1].last_at - start).total_seconds()
        return max(self.clock() - start.timestamp(), 0.0)


STATUS_STYLE = {
    "pending": "cyan",
    "processing": "cyan",
    "done": "green",
    "failed": "red",
    "refused": "red",
    "canceled": "yellow",
}


@dataclass
class LiveView:
    """A terminal: the board redrawn in place (it keeps ticking between polls)."""

    board: Board
    live: Live

    def update(self, task: Task) -> None:
        self.board.task = task
        self.board.note = None
        self.live.refresh()

    def retrying(self, error: Exception) -> None:
        self.board.note = f"poll failed ({error}); retrying"
        self.live.refresh()


@contextmanager
def live_view(console: Console, first: Task, clock: Callable[[], float] = time.time) -> Iterator[LiveView]:
    board = Board(first, clock=clock)
    with Live(board, console=console, refresh_per_second=4, transient=False) as live:
        yield LiveView(board, live)
    if not console.is_terminal:
        console.line()  # rich ends the last frame with a newline only on terminals
