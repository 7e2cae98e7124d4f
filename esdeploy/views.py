"""Operator tool layer: how API answers look to a person (rich renderables; no I/O here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from esdeploy.api_client import Alias, ApiError, ApiUnreachableError, Task
from esdeploy.progress import STATUS_STYLE, WaitOutcome, awaits_promotion, format_seconds

PREVIEW_VALUES = 4
PREVIEW_TEXT_CHARS = 40


def _kv(rows: Sequence[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    for key, value in rows:
        if value is not None and value != "":
            # Text, not markup: ids and server details may hold '[' and must print as they are.
            table.add_row(Text(key, style="dim"), Text(str(value)))
    return table


def task_headline(task: Task) -> Text:
    return Text.assemble(
        f"{task.get('kind', 'task')} task ",
        (task["task_id"], "bold"),
        f" for {task['embedding_model_id']}: ",
        (task["status"], STATUS_STYLE.get(task["status"], "")),
        f" ({task['stage']})",
    )


def task_summary(task: Task) -> RenderableType:
    return Group(
        task_headline(task),
        _kv(
            [
                ("detail", task.get("detail")),
                ("reason", task.get("reason")),
                ("endpoint", task.get("endpoint_name")),
                ("created", task["created_at"]),
                ("went live", task.get("live_at")),
                ("updated", task["updated_at"]),
            ]
        ),
    )


def task_details(task: Task) -> RenderableType:
    """`status`: the summary, the config it runs with, and every event."""
    events = Table("at", "stage", "status", "detail", box=None, header_style="dim")
    for event in task.get("events", []):
        events.add_row(Text(event["at"]), Text(event["stage"]), Text(event["status"]), Text(event.get("detail", "")))
    config = sorted(task.get("config", {}).items())
    parts: list[RenderableType] = [task_summary(task)]
    if config:
        parts += [Text("config", style="dim"), _kv([(f"  {k}", v) for k, v in config])]
    parts.append(events)
    return Group(*parts)


def wait_ending(outcome: WaitOutcome) -> Text:
    """The line under a wait: how it ended, or how to keep watching."""
    task = outcome.task
    if outcome.timed_out:
        return Text(
            f"still {task['status']} ({task['stage']}) after {format_seconds(outcome.waited_seconds)}; "
            f"the task goes on. Keep watching: esdeploy status {task['task_id']} --wait",
            style="yellow",
        )
    line = task_headline(task)
    if awaits_promotion(task) and not outcome.timed_out:
        line.append(
            f"; candidate {task.get('endpoint_name')} awaits promotion until {task.get('promote_by')}: "
            f"esdeploy promote {task['task_id']} (or esdeploy cancel {task['task_id']})"
        )
    elif task["status"] == "done" and task.get("endpoint_name") and task.get("kind") == "deploy":
        line.append(f"; live endpoint {task['endpoint_name']}")
    elif task.get("detail") and task["status"] != "done":
        line.append(f": {task['detail']}")
    return line


def alias_view(alias: Alias) -> RenderableType:
    rows = [
        ("model", alias["embedding_model_id"]),
        ("live endpoint", alias.get("endpoint_name")),
        ("live artifact", alias.get("content_hash")),
        ("previous endpoint", alias.get("previous_endpoint_name")),
        ("previous artifact", alias.get("previous_content_hash")),
        *(
            [
                ("candidate endpoint", alias.get("candidate_endpoint_name")),
                ("candidate artifact", alias.get("candidate_content_hash")),
                ("candidate task", alias.get("candidate_task_id")),
                ("promote by", alias.get("candidate_promote_by")),
            ]
            if alias.get("candidate_endpoint_name")
            else []
        ),
        ("swapped at", alias.get("swapped_at")),
        ("task", alias.get("task_id")),
        ("version", alias.get("version")),
    ]
    # "-" rather than a missing row: "no previous endpoint" is itself worth seeing (nothing to roll back to).
    return _kv([(key, "-" if value is None else value) for key, value in rows])


def rollback_view(alias: Alias) -> RenderableType:
    headline = Text.assemble(
        "rolled back: ", (alias["embedding_model_id"], "bold"), f" is served by {alias.get('endpoint_name')} again"
    )
    return Group(headline, alias_view(alias))


def models_table(aliases: Sequence[Alias]) -> RenderableType:
    if not aliases:
        return Text("no models are deployed", style="dim")
    table = Table("model", "live endpoint", "previous endpoint", "swapped_at", "task", header_style="bold")
    for alias in aliases:
        table.add_row(
            *(
                Text(str(alias.get(key) or "-"))
                for key in ("embedding_model_id", "endpoint_name", "previous_endpoint_name", "swapped_at", "task_id")
            )
        )
    return table


def invoke_view(model_id: str, inputs: Sequence[str], answer: dict[str, Any]) -> RenderableType:
    vectors = answer.get("embeddings") or []
    dimension = answer.get("dimension") or (len(vectors[0]) if vectors else 0)
    head = Text.assemble(
        (model_id, "bold"),
        f" · dimension {dimension} · endpoint {answer.get('endpoint_name', '?')}",
        f" · {len(vectors)} vector{'s' if len(vectors) != 1 else ''}",
    )
    rows = Table.grid(padding=(0, 2))
    for text, vector in zip(inputs, vectors, strict=False):
        rows.add_row(Text(_shorten(text)), Text(_preview(vector)), Text(f"‖v‖={_norm(vector):.3f}", style="dim"))
    return Group(head, rows)


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= PREVIEW_TEXT_CHARS else flat[: PREVIEW_TEXT_CHARS - 1] + "…")


def _preview(vector: Sequence[float]) -> str:
    shown = ", ".join(f"{value: .4f}" for value in vector[:PREVIEW_VALUES])
    return f"[{shown}{', …' if len(vector) > PREVIEW_VALUES else ''}]"


def _norm(vector: Sequence[float]) -> float:
    return math.sqrt(sum(value * value for value in vector))


def api_error(error: ApiError, *, iam: bool) -> Text:
    """The server's own words first, then what helps act on them."""
    text = Text.assemble(("error", "bold red"), (f" (HTTP {error.status}): {error.detail}", "red"))
    if error.field:
        text.append(f"\n  field: {error.field}", style="red")
    if error.active_task_id:
        kind = f" ({error.active_task_kind})" if error.active_task_kind else ""
        text.append(f"\n  active task: {error.active_task_id}{kind}", style="red")
        text.append(f"\n  watch it: esdeploy status {error.active_task_id} --wait", style="dim")
    if error.status == 403 and not iam:
        text.append(
            "\n  deployed stages, dev and prod, need signed requests: add --iam (or ESDEPLOY_API_IAM=1)", style="dim"
        )
    return text


def unreachable(error: ApiUnreachableError) -> Text:
    return Text.assemble(
        ("error", "bold red"),
        (f": cannot reach the esdeploy API at {error.url} ({error.reason})", "red"),
        ("\n  is the local stack running? point elsewhere with --api URL or ESDEPLOY_API", "dim"),
    )
