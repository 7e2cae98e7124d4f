"""The demos' report: time in each stage, the stage a task ended in included when it lasted (a bake)."""
from __future__ import annotations

from esdeploy.demo import stage_table
from esdeploy.timeline import control_plane_seconds


def event(stage: str, second: int) -> dict[str, str]:
    return {"stage": stage, "at": f"2026-12-02T03:00:{second:02d}.000000Z"}


def test_each_stage_runs_from_its_first_event_to_the_next_stages() -> None:
    events = [event("queued", 0), event("waiting", 1), event("waiting", 3), event("swapping", 4),
              event("finished", 5)]
    assert stage_table({"events": events}) == [
        "    queued           1.00 s", "    waiting          3.00 s", "    swapping         1.00 s"]


def test_a_bake_that_ended_the_task_is_shown_to_its_last_event() -> None:
    events = [event("swapping", 0), event("baking", 1), event("baking", 6), event("baking", 8)]
    assert stage_table({"events": events}) == ["    swapping         1.00 s", "    baking           7.00 s"]


def test_the_control_plane_is_every_stage_but_the_waits_less_the_gates_inference() -> None:
    events = [event("queued", 0), event("preflight", 1), event("creating", 1), event("waiting", 2),
              event("verifying", 30), event("swapping", 32), event("baking", 33), event("baking", 50)]
    # queued 1, preflight 0, creating 1, verifying 2, swapping 1; waiting and baking are waits.
    assert control_plane_seconds(events, inference_seconds=1.5) == 5 - 1.5
