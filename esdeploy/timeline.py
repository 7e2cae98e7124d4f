"""Operator tool layer: when a task was where, read from its events (the demo's report and `esdeploy acceptance`)."""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.domain.models import parse_iso


def timestamp(text: str) -> float:
    return parse_iso(text).timestamp()


def stage_durations(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """Seconds spent in each stage, from its first event to the next stage's (the last stage: to the
    task's last event, e.g. a bake that ended in a rollback; a stage with nothing after its first
    event is left out)."""
    runs = [list(run) for _, run in itertools.groupby(events, key=lambda event: event["stage"])]
    durations: list[tuple[str, float]] = []
    for index, run in enumerate(runs):
        end = runs[index + 1][0] if index + 1 < len(runs) else run[-1]
        if end is run[0]:
            continue
        durations.append((str(run[0]["stage"]), timestamp(end["at"]) - timestamp(run[0]["at"])))
    return durations


def first_at(events: Sequence[Mapping[str, Any]], stage: str) -> float | None:
    """When the task first reached `stage` (epoch seconds), or None if it never did."""
    return next((timestamp(event["at"]) for event in events if event["stage"] == stage), None)


# Stages that wait on purpose, not on the control plane: the endpoint coming up, a person's promote, the bake.
WAITS = frozenset({"waiting", "awaiting_promotion", "baking"})


def control_plane_seconds(events: Sequence[Mapping[str, Any]], inference_seconds: float) -> float:
    """The control plane's own time in a deploy: every stage but those that wait on purpose (`WAITS`),
    less the gate's own inference (`inference_seconds`, the endpoint answering the probe texts)."""
    return sum(took for stage, took in stage_durations(events) if stage not in WAITS) - inference_seconds
