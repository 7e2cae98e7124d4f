"""Operator tool layer: `--help` in words, as the AWS CLI and `gh` write it, for every command.

typer shows an option's Python type (`--timeout <float range>`), a required argument in braces
(`{model_id}`) and a range as `[x>=0]`. Every parameter of every command is turned into its
word-speaking kind here once, when the command group is built, so a new command gets it too:
`--timeout SECONDS`, `MODEL_ID`, `[at least 0]`. An option names its value with its `metavar`, or
else with the last word of its name (`--instance-type TYPE`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from typer.core import TyperArgument, TyperOption

HELP_OPTION_NAMES = ["-h", "--help"]


def in_words(params: Iterable[Any]) -> None:
    """Give each typer option and argument its word-speaking kind (in place; twice is harmless)."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = WordOption
        elif type(param) is TyperArgument:
            param.__class__ = WordArgument


def value_word(option: Any) -> str:
    """What an option's value is called in help: its metavar, its choices, or its name's last word."""
    if option.metavar:
        return str(option.metavar)
    descriptor = option.type_descriptor
    if descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in descriptor.choices)
    longest = max(option.opts, key=len)
    return longest.lstrip("-").rsplit("-", 1)[-1].upper()


def range_in_words(low: float | None, high: float | None) -> str | None:
    if low is None and high is None:
        return None
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"{low} to {high}"


class WordOption(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        word = value_word(self)
        return f"{word}..." if self.nargs != 1 else word

    def _get_number_range_help_str(self) -> str | None:
        return range_in_words(self.min, self.max)


class WordArgument(TyperArgument):
    @property
    def display_name_raw(self) -> str:
        return str(self.metavar) if self.metavar else str(self.name).upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name says what it is; `<str>` says nothing more

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return f"{name}..." if self.nargs != 1 else name
