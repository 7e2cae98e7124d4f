"""Operator tool layer: what every API command shares (options, client, output, errors, exit codes)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import typer
from rich.console import Console, RenderableType
from rich.text import Text
from typer.core import TyperGroup

from chalicelib.domain.models import TERMINAL_STATUSES
from esdeploy import views
from esdeploy.api_client import ApiError, ApiUnreachableError, SigningError
from esdeploy.cli_help import in_words
from esdeploy.client import AwsSetupError, Client, TaskHandle
from esdeploy.embedder import EmbedderError
from esdeploy.exits import Exit
from esdeploy.progress import LineView, QuietView, View, WaitOutcome, live_view


@dataclass
class CliHooks:
    """What tests inject through `CliRunner.invoke(app, args, obj=CliHooks(...))`."""

    session: requests.Session | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    live: bool | None = None  # None: a live display exactly when stdout is a terminal


@dataclass
class Runtime:
    """The global options of one invocation, and the client and consoles built from them."""

    api: str
    iam: bool
    region: str | None
    json: bool
    timeout: float
    poll_interval: float
    profile: str | None = None
    hooks: CliHooks = field(default_factory=CliHooks)
    out: Console = field(default_factory=lambda: _stdout_console())
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    _client: Client | None = None

    def client(self) -> Client:
        """The Python client (esdeploy.Client) every command goes through; --iam reads credentials on first use."""
        if self._client is None:
            self._client = Client(
                self.api,
                iam=self.iam,
                profile=self.profile,
                region=self.region,
                timeout=self.timeout,
                poll_interval=self.poll_interval,
                http=self.hooks.session,
                clock=self.hooks.clock,
                sleep=self.hooks.sleep,
            )
        return self._client

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Every failure to talk to the API ends the command with one message and exit 5."""
        try:
            yield
        except ApiError as error:
            if self.json and error.body is not None:
                typer.echo(json.dumps(error.body, indent=2))
            self.err.print(views.api_error(error, iam=self.iam), soft_wrap=True)
            raise typer.Exit(Exit.ERROR) from None
        except ApiUnreachableError as error:
            self.err.print(views.unreachable(error), soft_wrap=True)
            raise typer.Exit(Exit.ERROR) from None
        except AwsSetupError as error:
            self.err.print(Text(f"error: {error.cli_message}", style="red"), soft_wrap=True)
            raise typer.Exit(Exit.ERROR) from None
        except (SigningError, EmbedderError) as error:
            self.err.print(Text(f"error: {error}", style="red"), soft_wrap=True)
            raise typer.Exit(Exit.ERROR) from None

    @property
    def plain(self) -> bool:
        """stdout is a pipe or a file: plain, stable lines (no table borders, no padding, no wrapping)."""
        return not self.out.is_terminal

    def show(self, answer: Any, human: RenderableType) -> None:
        """--json prints the API's answer and nothing else; otherwise the human rendering."""
        if self.json:
            typer.echo(json.dumps(answer, indent=2))
        else:
            self.out.print(human, soft_wrap=self.plain)

    def task_answer(self, handle: TaskHandle, *, wait: bool, wait_timeout: float, promoted: bool = False) -> None:
        """After POST /deploy, /delete, /cancel or /promote: show the task, or follow it to its end
        (a manual-promotion deploy: until its candidate awaits promotion; `promoted`: past that)."""
        task = handle.task
        if not wait:
            self.show(task, views.task_summary(task, plain=self.plain))
            if not self.json and task["status"] not in TERMINAL_STATUSES:
                follow = f"follow it: esdeploy status {task['task_id']} --wait"
                self.out.print(Text(follow, style="dim"), soft_wrap=True)
            return
        code = self.follow(handle, wait_timeout, stop_at_promotion=not promoted)
        if code != Exit.DONE:
            raise typer.Exit(code)

    def follow(self, handle: TaskHandle, wait_timeout: float, stop_at_promotion: bool = True) -> Exit:
        task = handle.task

        def run(view: View) -> WaitOutcome:
            return handle.follow(view, timeout=wait_timeout, stop_at_promotion=stop_at_promotion)

        live = self.hooks.live if self.hooks.live is not None else self.out.is_terminal
        try:
            if self.json:
                outcome = run(QuietView())
            elif live:
                with live_view(self.out, task, clock=self.hooks.clock) as view:
                    outcome = run(view)
            else:
                outcome = run(LineView(self.out))
        except KeyboardInterrupt:
            self.err.print(
                Text(f"stopped watching; the task goes on: esdeploy status {task['task_id']} --wait", style="yellow")
            )
            return Exit.INTERRUPTED
        if self.json:
            typer.echo(json.dumps(outcome.task, indent=2))
            if outcome.timed_out:
                self.err.print(views.wait_ending(outcome), soft_wrap=True)
        else:
            self.out.print(views.wait_ending(outcome), soft_wrap=True)
        return outcome.exit_code


def runtime(ctx: typer.Context) -> Runtime:
    rt = ctx.find_object(Runtime)
    assert rt is not None, "the esdeploy callback builds the Runtime before any command runs"
    return rt


def _stdout_console() -> Console:
    # Into a pipe or a file the views print plain lines that never wrap (Runtime.plain): the width
    # rich guesses there (80) matters to nothing.
    return Console(highlight=False)


# typer 0.29 carries its own copy of click, so the installed click's UsageError never matches;
# the class is found through typer's public BadParameter (a UsageError in every typer version).
_UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def usage_error(message: str) -> Exception:
    """A usage error the command found itself (shown like click's own, exit 2)."""
    return _UsageError(message)


def api_url(value: str) -> str:
    """--api / ESDEPLOY_API must be a whole http(s) URL; `127.0.0.1:8000` is a usage error, not a traceback."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname:
        return value
    hint = f"; did you mean http://{value}?" if "://" not in value else ""
    raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL{hint}")


class EsdeployGroup(TyperGroup):
    """Global options work after the command too (`esdeploy models --json`), as in the AWS CLI; help
    speaks in words (esdeploy/cli_help.py) for the group and every command it is built with."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        in_words(self.params)
        for command in self.commands.values():
            in_words(command.params)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self, ctx, args))


def hoist_global_options(group: Any, ctx: Any, args: list[str]) -> list[str]:
    """Move the group's own options found after the command name to before it.

    An option the command defines itself (`package --region`) stays the command's, and so does
    the value of any command option (`--reason --json` is a reason) and everything after `--`.
    """
    own = _options_by_name(group.params)
    at = 0
    while at < len(args) and args[at] != "--":
        name, has_value = _split_option(args[at])
        if name not in own:
            break
        at += 1 if has_value or not _takes_value(own[name]) else 2
    if at >= len(args) or group.get_command(ctx, args[at]) is None:
        return args
    theirs = _options_by_name(group.get_command(ctx, args[at]).params)
    moved: list[str] = []
    kept: list[str] = []
    rest = args[at + 1 :]
    i = 0
    while i < len(rest):
        if rest[i] == "--":
            kept.extend(rest[i:])
            break
        name, has_value = _split_option(rest[i])
        option = theirs.get(name) or own.get(name)
        width = 1 if option is None or has_value or not _takes_value(option) else 2
        (kept if option is None or name in theirs else moved).extend(rest[i : i + width])
        i += width
    return [*args[:at], *moved, args[at], *kept]


def _options_by_name(params: list[Any]) -> dict[str, Any]:
    return {
        name: param
        for param in params
        if getattr(param, "param_type_name", "") == "option"
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    }


def _split_option(arg: str) -> tuple[str, bool]:
    name, equals, _ = arg.partition("=")
    return (name, bool(equals)) if arg.startswith("--") else ("", False)


def _takes_value(option: Any) -> bool:
    return not (option.is_flag or option.count)
