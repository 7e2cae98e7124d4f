"""Exit codes: one table in code (esdeploy/exits.py), the same table in docs/cli.md, and one test per
row that makes a command end with that code the way a user would."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esdeploy import exits
from esdeploy.exits import EXIT_CODES, Exit
from tests.cli.conftest import Cli, task

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def docs_exit_table() -> str:
    """The first table under "## Exit codes" in docs/cli.md."""
    section = DOCS.read_text().split("## Exit codes", 1)[1].splitlines()
    start = next(i for i, line in enumerate(section) if line.startswith("|"))
    end = next((i for i in range(start, len(section)) if not section[i].startswith("|")), len(section))
    return "\n".join(section[start:end])


def test_the_docs_table_is_the_one_in_code() -> None:
    assert docs_exit_table() == exits.docs_table(), (
        "docs/cli.md's exit-code table differs from esdeploy/exits.py: paste exits.docs_table() into it"
    )


def test_help_lists_every_code(cli: Cli) -> None:
    shown = " ".join(cli("--help").stdout.split())
    for row in EXIT_CODES:
        assert f"{row.code.value} {row.short}" in shown


# One scenario per row: each returns the result of one CLI run that must exit with that code.


def _done(cli: Cli) -> Any:
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on("GET", "/deploy/t1", (200, task("processing", "creating")), (200, task("done", "finished")))
    return cli("deploy", "m1", "--wait")


def _failed(cli: Cli) -> Any:
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on("GET", "/deploy/t1", (200, task("failed", "waiting", detail="endpoint failed")))
    return cli("deploy", "m1", "--wait")


def _usage(cli: Cli) -> Any:
    return cli("deploy", "not a model id")


def _canceled(cli: Cli) -> Any:
    cli.api.on("POST", "/deploy/t1/cancel", (200, task("processing", "waiting")))
    cli.api.on("GET", "/deploy/t1", (200, task("canceled", "waiting", detail="canceled")))
    return cli("cancel", "t1", "--wait")


def _wait_timeout(cli: Cli) -> Any:
    cli.api.on("POST", "/deploy", (200, task()))
    cli.api.on("GET", "/deploy/t1", (200, task("processing", "waiting")))
    return cli("deploy", "m1", "--wait", "--wait-timeout", "10")


def _error(cli: Cli) -> Any:
    cli.api.on("GET", "/models/m9", (404, {"detail": "Model `m9` is not deployed"}))
    return cli("model", "m9")


def _refused(cli: Cli) -> Any:
    cli.api.on("POST", "/delete", (200, task(kind="delete")))
    cli.api.on("GET", "/delete/t1", (200, task("refused", "queued", kind="delete", detail="nothing to delete")))
    return cli("delete", "m1", "--wait")


def _interrupted(cli: Cli) -> Any:
    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    cli.api.on("POST", "/deploy", (200, task()))
    cli.clock.sleep = interrupt  # type: ignore[method-assign]
    return cli("deploy", "m1", "--wait")


SCENARIOS: dict[Exit, Callable[[Cli], Any]] = {
    Exit.DONE: _done,
    Exit.FAILED: _failed,
    Exit.USAGE: _usage,
    Exit.CANCELED: _canceled,
    Exit.WAIT_TIMEOUT: _wait_timeout,
    Exit.ERROR: _error,
    Exit.REFUSED: _refused,
    Exit.INTERRUPTED: _interrupted,
}


@pytest.mark.parametrize("row", EXIT_CODES, ids=lambda row: f"{row.code.value}-{row.short}")
def test_each_documented_code_is_what_a_command_ends_with(cli: Cli, row: exits.ExitCode) -> None:
    result = SCENARIOS[row.code](cli)  # a row without a scenario is a KeyError: every row is tested
    assert result.exit_code == row.code.value, result.output
    assert "Traceback" not in result.output


COMMANDS_WITH_A_MODEL_ID = [
    ["deploy", "{id}"],
    ["delete", "{id}"],
    ["rollback", "{id}"],
    ["model", "{id}"],
    ["invoke", "{id}", "text"],
    ["status", "--model", "{id}"],
    ["logs", "--model", "{id}"],
]
COMMANDS_WITH_A_TASK_ID = [["status", "{id}"], ["cancel", "{id}"], ["promote", "{id}"], ["logs", "{id}"]]


@pytest.mark.parametrize(
    "command", COMMANDS_WITH_A_MODEL_ID + COMMANDS_WITH_A_TASK_ID, ids=lambda c: " ".join(c).replace("{id}", "ID")
)
def test_an_id_that_cannot_be_one_is_a_usage_error_on_every_command(cli: Cli, command: list[str]) -> None:
    """It was exit 5 on deploy (the API's 422) and 2 on logs: now 2 everywhere, and nothing is sent."""
    result = cli(*[part.replace("{id}", "no/such id") for part in command])
    assert result.exit_code == Exit.USAGE, result.output
    assert re.search(r"is not a (model|task) id", result.stderr), result.stderr
    assert cli.api.sent == []
