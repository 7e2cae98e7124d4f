"""`--help` in words, as the AWS CLI and `gh` write it: `-h` works, every option that takes a value
names it with a word, arguments are NAMES, ranges are "at least 1", for every command there is."""
from __future__ import annotations

import re

import pytest
import typer

from esdeploy.cli import app
from tests.cli.conftest import Cli

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
PYTHON_LOOKING = [
    re.compile(r"<(str|int|float|bool|path|text|list\[[^]]*\])>"),  # a type where a word belongs
    re.compile(r"<[a-z]+ range>"),
    re.compile(r"\{[a-z_]+\}"),  # a required argument in braces
    re.compile(r"\bx\s*[<>]=|<=\s*x\b"),  # a range as an inequality
]


def option_lines(help_text: str) -> list[str]:
    section = help_text.split("Options:", 1)[1]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("-")]


@pytest.mark.parametrize("command", [[], *[[name] for name in COMMANDS]], ids=lambda c: " ".join(c) or "esdeploy")
def test_help_reads_as_words_and_h_is_help(cli: Cli, command: list[str]) -> None:
    long = cli(*command, "--help")
    short = cli(*command, "-h")
    assert long.exit_code == short.exit_code == 0, short.output
    assert short.stdout == long.stdout
    for pattern in PYTHON_LOOKING:
        assert not pattern.search(long.stdout), (pattern.pattern, long.stdout)
    for line in option_lines(long.stdout):
        names, _, _ = line.partition("  ")
        # `--flag`, `--flag / --no-flag`, or `--option VALUE` where VALUE is a word or a|b|c.
        assert re.fullmatch(r"(-\w, )?--[\w-]+( / --[\w-]+)?( [A-Z][A-Z0-9_:]*(\.\.\.)?| [a-z0-9|]+)?", names), line


def test_arguments_are_named_in_capitals_in_usage_and_list(cli: Cli) -> None:
    shown = cli("invoke", "--help").stdout
    assert "Usage: esdeploy invoke [OPTIONS] MODEL_ID TEXT..." in shown
    assert re.search(r"^\s+MODEL_ID\s+Embedding model id\.", shown, re.MULTILINE)
    status = cli("status", "-h").stdout
    assert "Usage: esdeploy status [OPTIONS] [TASK_ID]" in status


def test_ranges_and_values_in_words(cli: Cli) -> None:
    shown = " ".join(cli("deploy", "-h").stdout.split())
    assert "--instance-count N" in shown and "[at least 1]" in shown
    assert "--wait-timeout SECONDS" in shown and "--artifact S3_URL" in shown
    local = " ".join(cli("local", "-h").stdout.split())
    assert "--port PORT" in local and "1 to 65535" in local
    top = " ".join(cli("-h").stdout.split())
    assert "--api URL" in top and "--output json|table" in top and "--timeout SECONDS" in top
