"""Operator tool layer: how API answers look to a person (rich renderables; no I/O here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from esdeploy.api_client import Alias, ApiError, ApiUnreachableError, Task
from esdeploy.progress import STATUS_STYLE, WaitOutcome, awaits_promotion, format_seconds
from esdeploy.wording import flag_of, for_the_cli

if TYPE_CHECKING:
    from esdeploy.packaging import PackageResult

PREVIEW_VALUES = 4
PREVIEW_TEXT_CHARS = 40


def key_values(rows: Sequence[tuple[str, Any]], *, plain: bool = False) -> RenderableType:
    """`key  value` rows (empty values left out): a grid on a terminal, plain lines elsewhere."""
    shown = [(key, str(value)) for key, value in rows if value is not None and value != ""]
    if plain:
        return columns(shown)
    table = Table.grid(padding=(0, 2))
    for key, value in shown:
        # Text, not markup: ids and server details may hold '[' and must print as they are.
        table.add_row(Text(key, style="dim"), Text(value))
    return table


def columns(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> Text:
    """Rows as plain lines for a pipe or a file: columns as wide as their widest cell, two spaces
    apart, never wrapped, no trailing blanks; a header row, if any, in capitals with `_` for spaces
    (so that `awk '{print $2}'` finds the same column on every line)."""
    lines = [[cell.upper().replace(" ", "_") for cell in header]] if header else []
    lines += [list(row) for row in rows]
    if not lines:
        return Text("")
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(max(map(len, lines)))]
    return Text("\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    ))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, plain: bool, **options: Any) -> RenderableType:
    """A table fitted to the terminal, or `columns` elsewhere."""
    if plain:
        return columns(rows, header)
    shown = Table(**options)
    for name in header:
        shown.add_column(name, overflow="fold")  # ids and hashes fold on a narrow terminal, never cut
    for row in rows:
        shown.add_row(*(Text(cell) for cell in row))
    return shown


def task_headline(task: Task) -> Text:
    return Text.assemble(
        f"{task.get('kind', 'task')} task ",
        (task["task_id"], "bold"),
        f" for {task['embedding_model_id']}: ",
        (task["status"], STATUS_STYLE.get(task["status"], "")),
        f" ({task['stage']})",
    )


def task_summary(task: Task, *, plain: bool = False) -> RenderableType:
    return Group(
        task_headline(task),
        key_values(
            [
                ("detail", for_the_cli(task.get("detail") or "")),
                ("reason", task.get("reason")),
                ("endpoint", task.get("endpoint_name")),
                ("created", task["created_at"]),
                ("went live", task.get("live_at")),
                ("updated", task["updated_at"]),
            ],
            plain=plain,
        ),
    )


def task_details(task: Task, *, plain: bool = False) -> RenderableType:
    """`status`: the summary, the config it runs with, and every event."""
    rows = [(e["at"], e["stage"], e["status"], for_the_cli(e.get("detail", ""))) for e in task.get("events", [])]
    events = table(("at", "stage", "status", "detail"), rows, plain=plain, box=None, header_style="dim")
    config = sorted(task.get("config", {}).items())
    parts: list[RenderableType] = [task_summary(task, plain=plain)]
    if config:
        parts += [Text("config", style="dim"), key_values([(f"  {k}", v) for k, v in config], plain=plain)]
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
        line.append(f": {for_the_cli(task['detail'])}")
    return line


def alias_view(alias: Alias, *, plain: bool = False) -> RenderableType:
    rows = [
        ("model", alias["embedding_model_id"]),
        ("live endpoint", alias.get("endpoint_name")),
        ("live artifact", alias.get("content_hash")),
        ("previous endpoint", alias.get("previous_endpoint_name")),
        ("previous artifact", alias.get("previous_content_hash")),
        ("previous task", alias.get("previous_task_id")),
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
    return key_values([(key, "-" if value is None else value) for key, value in rows], plain=plain)


def rollback_view(alias: Alias, *, plain: bool = False) -> RenderableType:
    headline = Text.assemble(
        "rolled back: ", (alias["embedding_model_id"], "bold"), f" is served by {alias.get('endpoint_name')} again"
    )
    return Group(headline, alias_view(alias, plain=plain))


def models_table(aliases: Sequence[Alias], *, plain: bool = False) -> RenderableType:
    if not aliases:
        return Text("no models are deployed", style="dim")
    keys = ["embedding_model_id", "endpoint_name", "previous_endpoint_name", "swapped_at", "task_id"]
    header = ["model", "live endpoint", "previous endpoint", "swapped at", "task"]
    if any(alias.get("candidate_endpoint_name") for alias in aliases):  # a deploy awaits promotion
        keys += ["candidate_endpoint_name", "candidate_task_id"]
        header += ["candidate", "candidate task"]
    rows = [[str(alias.get(key) or "-") for key in keys] for alias in aliases]
    return table(header, rows, plain=plain, header_style="bold")


def replaced_words(earlier: str | None, now: str) -> str | None:
    """What a build said about the archive it wrote over (`earlier`: packaging.earlier_build's)."""
    if earlier is None:
        return None
    if earlier == now:
        return f"an earlier build of the same content ({now[:12]}): nothing changed"
    was = f"content {earlier[:12]}" if earlier else "content unknown (no readable manifest.json beside it)"
    return f"an earlier build, {was}, now {now[:12]}; it is gone (--output PATH keeps builds apart)"


def package_summary(result: PackageResult, *, plain: bool = False, replaced: str | None = None) -> RenderableType:
    """What `package` built and checked (on stderr: stdout carries only the archive's path), and what
    it wrote over (`replaced`: the earlier build's content hash, "" if unknown, None if none)."""
    manifest = result.manifest
    rows = [
        ("archive", f"{result.archive} ({result.archive_bytes / 1e6:.1f} MB)"),
        ("replaced", replaced_words(replaced, manifest.content_sha256)),
        ("manifest", str(result.manifest_path)),
        (
            "model",
            f"{manifest.model_id}: dim {manifest.dimension}, {manifest.pooling} pooling, "
            f"normalize={manifest.normalize}, max {manifest.max_seq_length} tokens",
        ),
        ("content sha256", manifest.content_sha256),
        ("serving", manifest.serving),
        ("image", manifest.image_uri),
        (
            "check",
            f"loaded in a fresh process in {result.check.get('load_seconds')} s, "
            f"min cosine {result.check.get('min_cosine')} over {len(manifest.probe_texts)} probe texts",
        ),
        ("parity", None if result.st_min_cosine is None else f"min cosine {result.st_min_cosine:.6f} with "
         "sentence-transformers"),
    ]
    if plain:
        return key_values(rows, plain=True)
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a narrow terminal: hashes and image URIs fold, never cut
    for key, value in rows:
        if value is not None:
            table.add_row(key, Text(value))
    return table


def invoke_view(model_id: str, inputs: Sequence[str], answer: dict[str, Any], *, plain: bool = False) -> RenderableType:
    vectors = answer.get("embeddings") or []
    dimension = answer.get("dimension") or (len(vectors[0]) if vectors else 0)
    head = Text.assemble(
        (model_id, "bold"),
        f" · dimension {dimension} · endpoint {answer.get('endpoint_name', '?')}",
        f" · {len(vectors)} vector{'s' if len(vectors) != 1 else ''}",
    )
    cells = [
        (_shorten(text), _preview(vector), f"‖v‖={_norm(vector):.3f}")
        for text, vector in zip(inputs, vectors, strict=False)
    ]
    if plain:
        return Group(head, columns(cells))
    rows = Table.grid(padding=(0, 2))
    for text, preview, norm in cells:
        rows.add_row(Text(text), Text(preview), Text(norm, style="dim"))
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
    text = Text.assemble(("error", "bold red"), (f" (HTTP {error.status}): {for_the_cli(error.detail)}", "red"))
    if error.field:
        flag = flag_of(error.field)
        text.append(f"\n  option: {flag}" if flag else f"\n  field: {error.field}", style="red")
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
