"""Operator tool layer: how an `esdeploy` command ends, as one table (code, help, docs/cli.md read it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Exit(IntEnum):
    """The exit code of every command; EXIT_CODES says what each means."""

    DONE = 0
    FAILED = 1
    USAGE = 2  # click's code for a usage error, as every CLI has it
    CANCELED = 3
    WAIT_TIMEOUT = 4
    ERROR = 5
    REFUSED = 6  # not 2: a script must tell "the task was refused" from "I called it wrong"
    INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


@dataclass(frozen=True)
class ExitCode:
    code: Exit
    short: str  # a few words, for `esdeploy --help`
    meaning: str  # the docs/cli.md row (Markdown)


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(Exit.DONE, "done", "the request succeeded; with `--wait`, the task ended `done`"),
    ExitCode(
        Exit.FAILED,
        "failed",
        "with `--wait`: the task ended `failed` (its `detail` says why; the green variant was cleaned up). "
        "`doctor`: a check found a problem. `package`: packaging, the upload or the upload check failed. "
        "`local`: the stack could not start (e.g. the port is taken). `package` / `local`: the extra they "
        "need (`esdeploy[package]`, `esdeploy[local]`) is not installed; the message says what to install. "
        "`acceptance`: a step did not go as documented, or something of the run is left (both named)",
    ),
    ExitCode(
        Exit.USAGE,
        "usage error",
        "usage error, as in every click program: unknown command or option, missing argument, a value that "
        "is not valid (`--api` without `http://`, `--upload` not `s3://...`, `--output yaml`), a model id "
        "or task id with characters no id has (every command checks them before sending anything), or a "
        "bare `esdeploy`",
    ),
    ExitCode(
        Exit.CANCELED, "canceled", "with `--wait`: the task ended `canceled` (the expected end of `cancel --wait`)"
    ),
    ExitCode(
        Exit.WAIT_TIMEOUT,
        "wait timed out",
        "with `--wait`: `--wait-timeout` passed before the task ended; **the task goes on**",
    ),
    ExitCode(
        Exit.ERROR,
        "error",
        "the API answered with an error (an unknown task or model: 404; a model busy with another task, or "
        "a task that cannot be canceled or promoted any more: 409; a body it refused: 4xx; its own fault: "
        "5xx), the API unreachable, or `--iam` without credentials or region, or with an unknown "
        "`--profile` / `AWS_PROFILE`; `logs`: no log line matched, or the log file or CloudWatch Logs "
        "could not be read; `doctor`: no credentials, region or profile to ask AWS with",
    ),
    ExitCode(
        Exit.REFUSED, "refused", "with `--wait`: the task ended `refused` (e.g. nothing to delete, the live-model cap)"
    ),
    ExitCode(
        Exit.INTERRUPTED,
        "interrupted",
        "Ctrl-C while waiting; the task goes on (`esdeploy status ID --wait` picks it up again). "
        "`acceptance`: Ctrl-C, after it tore down what the run made",
    ),
)


def meaning(code: Exit) -> ExitCode:
    return next(row for row in EXIT_CODES if row.code == code)


def docs_table() -> str:
    """The table under "Exit codes" in docs/cli.md (tests/cli/test_exit_codes.py compares the two)."""
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {row.code.value} | {row.meaning} |" for row in EXIT_CODES]
    return "\n".join(rows)


def help_line() -> str:
    """The exit codes in one line, under `esdeploy --help`."""
    codes = ", ".join(f"{row.code.value} {row.short}" for row in EXIT_CODES)
    return f"Exit codes: {codes} (docs/cli.md says when)."
