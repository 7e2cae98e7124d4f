"""The wait loop and the stage board, on a fake clock: no test sleeps."""
from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from esdeploy.api_client import ApiError, ApiUnreachableError, Task
from esdeploy.progress import Board, Exit, LineView, exit_for, format_seconds, spans, wait_for_task
from tests.cli.conftest import FakeClock, task
from tests.cli.test_commands import DEPLOY_TRAIL


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.errors: list[str] = []

    def update(self, current: Task) -> None:
        self.seen.append(f"{current['status']}/{current['stage']}")

    def retrying(self, error: Exception) -> None:
        self.errors.append(str(error))


def scripted(*answers: Any) -> Any:
    queue = list(answers)

    def fetch() -> Task:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    return fetch


def rendered(board: Board, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(board)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_spans_group_events_by_stage_with_durations() -> None:
    found = spans(task("processing", "creating", trail=DEPLOY_TRAIL[:3]))
    assert [s.stage for s in found] == ["queued", "preflight", "creating"]
    assert [(s.ended - s.started).total_seconds() for s in found[:2] if s.ended] == [1.0, 1.0]
    assert found[-1].ended is None


def test_wait_polls_until_terminal_and_maps_the_exit_code() -> None:
    clock, view = FakeClock(), Recorder()
    outcome = wait_for_task(
        scripted(task("processing", "preflight"), task("refused", "preflight", detail="no such artifact")),
        task(), view, interval=2, timeout=60, clock=clock.time, sleep=clock.sleep,
    )
    assert outcome.exit_code == Exit.REFUSED and not outcome.timed_out
    assert view.seen == ["pending/queued", "processing/preflight", "refused/preflight"]
    assert clock.slept == [2, 2]


def test_wait_times_out_without_oversleeping() -> None:
    clock = FakeClock()
    outcome = wait_for_task(scripted(task("processing", "waiting")), task(), Recorder(),
                            interval=4, timeout=10, clock=clock.time, sleep=clock.sleep)
    assert outcome.timed_out and outcome.exit_code == Exit.WAIT_TIMEOUT
    assert clock.slept == [4, 4, 2] and outcome.waited_seconds == 10


def test_a_terminal_first_answer_needs_no_poll() -> None:
    clock = FakeClock()
    outcome = wait_for_task(scripted(task()), task("canceled", "queued"), Recorder(),
                            clock=clock.time, sleep=clock.sleep)
    assert outcome.exit_code == Exit.CANCELED and clock.slept == []


def test_transient_errors_are_retried_then_given_up() -> None:
    clock, view = FakeClock(), Recorder()
    blip = ApiUnreachableError("http://x", "connection refused")
    outcome = wait_for_task(scripted(blip, ApiError(502, "Bad Gateway"), task("done", "finished")), task(), view,
                            clock=clock.time, sleep=clock.sleep)
    assert outcome.exit_code == Exit.DONE and len(view.errors) == 2
    with pytest.raises(ApiUnreachableError):
        wait_for_task(scripted(blip), task(), Recorder(), clock=clock.time, sleep=clock.sleep, max_errors=3)


def test_client_errors_end_the_wait_at_once() -> None:
    clock = FakeClock()
    with pytest.raises(ApiError) as raised:
        wait_for_task(scripted(ApiError(404, "gone")), task(), Recorder(), clock=clock.time, sleep=clock.sleep)
    assert raised.value.status == 404 and clock.slept == [1.5]


def test_exit_codes_are_the_documented_ones() -> None:
    assert [int(exit_for(task(s))) for s in ("done", "failed", "refused", "canceled")] == [0, 1, 6, 3]
    # 2 is click's usage error and nothing else: a refused task must not look like a mistyped command.
    assert (Exit.USAGE, Exit.WAIT_TIMEOUT, Exit.ERROR) == (2, 4, 5)


def test_board_shows_done_current_and_coming_stages() -> None:
    clock = FakeClock(now=1_735_689_600.0 + 2 + 42.5)  # 42.5 s into `creating`
    board = Board(task("processing", "creating", trail=DEPLOY_TRAIL[:3]), clock=clock.time)
    text = rendered(board)
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == "deploy t1 · m1 · processing · 44.5s"
    assert lines[1].startswith("✓  queued") and lines[1].endswith("1.0s")
    assert "creating" in lines[3] and lines[3].endswith("42.5s")
    assert lines[3][0] not in "✓·✗"  # the spinner
    assert [line[0] for line in lines[4:9]] == ["·"] * 5
    assert [line.split()[1] for line in lines[4:9]] == ["waiting", "verifying", "swapping", "baking", "finished"]


def test_board_shows_the_bake_after_the_swap_as_the_current_stage() -> None:
    baking = task("processing", "baking", trail=DEPLOY_TRAIL, detail="esd-m1-x is live; watching 3 alarms")
    lines = [line.rstrip() for line in rendered(Board(baking, clock=FakeClock().time)).splitlines()]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert list(rows) == ["queued", "preflight", "creating", "waiting", "verifying", "swapping", "baking", "finished"]
    assert rows["swapping"].startswith("✓") and rows["finished"].startswith("·")
    assert rows["baking"][0] not in "✓·✗" and rows["baking"].endswith("watching 3 alarms")  # the spinner


def test_board_never_shows_negative_time_on_a_slow_local_clock() -> None:
    board = Board(task("processing", "creating", trail=DEPLOY_TRAIL[:3]), clock=lambda: 0.0)
    assert "0.0s" in rendered(board).splitlines()[3]


def test_board_for_a_failed_delete_marks_the_stage_it_failed_in() -> None:
    failed = task("failed", "tearing_down", kind="delete",
                  trail=[("queued", "pending"), ("unaliasing", "processing"), ("tearing_down", "processing")],
                  detail="AccessDenied on DeleteEndpoint")
    lines = rendered(Board(failed)).splitlines()
    assert lines[0].startswith("delete t1 · m1 · failed · 3.0s")
    assert lines[3].startswith("✗  tearing_down  1.0s  AccessDenied on DeleteEndpoint")
    assert lines[4].startswith("·  finished")


def test_line_view_prints_each_event_once() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    view = LineView(console)
    view.update(task("processing", "preflight", trail=DEPLOY_TRAIL[:2]))
    view.update(task("processing", "preflight", trail=DEPLOY_TRAIL[:2]))
    view.update(task("processing", "creating", trail=DEPLOY_TRAIL[:3], detail="variant requested"))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines == [
        "+    0.0s  queued             pending",
        "+    1.0s  preflight          processing",
        "+    2.0s  creating           processing  variant requested",
    ]


@pytest.mark.parametrize(("seconds", "text"), [(4.25, "4.2s"), (61, "1m 01s"), (3725, "1h 02m")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_the_tool_ends_its_waits_and_orders_its_board_by_the_servers_statuses_and_stages() -> None:
    """Terminal statuses and stage order have one home (chalicelib/domain/models.py); every status that ends a
    task has an exit code, and the board lists a task's stages in the order the server moves it through them."""
    from chalicelib.domain.models import TERMINAL_STATUSES, Promotion, TaskKind, TaskStatus, stage_order
    from esdeploy import progress

    assert set(progress._BY_STATUS) == TERMINAL_STATUSES
    for status in TaskStatus:
        ended = task(status.value, "finished")
        assert progress.is_terminal(ended) is (status in TERMINAL_STATUSES)
        assert exit_for(ended) is (progress._BY_STATUS.get(status, Exit.DONE))
    manual = {**task("processing", "verifying"), "config": {"promotion": "manual"}}
    assert progress.stage_order(manual) == list(stage_order(TaskKind.DEPLOY, Promotion.MANUAL))
    assert progress.stage_order({**task("processing", "unaliasing"), "kind": "delete"}) == list(
        stage_order(TaskKind.DELETE)
    )
