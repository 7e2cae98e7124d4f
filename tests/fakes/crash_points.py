"""Test fake: ports that record every call that changes something, and die right after one chosen call.

A Lambda can be killed between any two of its calls (timeout, out of memory, a redeploy). Only a
call that writes somewhere can leave a trace, so those are the crash points: a crash after a
read leaves the same world as a crash right after the write before it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.messages import Advance, TeardownVariant
from chalicelib.domain.models import Alias

# Port attribute on wiring.Adapters -> the methods of it that change something.
WRITES: dict[str, frozenset[str]] = {
    "store": frozenset({"create", "update", "note_rekick", "request_cancel"}),
    "locks": frozenset({"acquire", "release"}),
    "aliases": frozenset({"swap"}),
    "slots": frozenset({"reserve", "release"}),
    "mirror": frozenset({"publish", "remove"}),
    "deploy_queue": frozenset({"send"}),
    "teardown_queue": frozenset({"send"}),
    "requests_queue": frozenset({"send"}),
    "hosting": frozenset({"create_variant", "delete_variant"}),
    "alarms": frozenset({"put_variant_alarms", "delete_variant_alarms"}),
}


class Crash(BaseException):
    """The process died right after a call returned. A BaseException, so that no `except
    Exception` in the product (a batch processor, a retry loop) can carry on as if nothing happened."""


@dataclass(frozen=True)
class CrashPoint:
    """The `nth` write `port.method` of a run, made by `worker` handling `during` (a message's
    action, a route) about `subject`."""

    worker: str
    during: str
    port: str
    method: str
    nth: int
    subject: str

    @property
    def label(self) -> str:
        return f"{self.worker}[{self.during}]:{self.port}.{self.method}#{self.nth}({self.subject})"


@dataclass
class CrashPlan:
    """Records each write as a CrashPoint; with `target`, raises Crash right after that one."""

    target: CrashPoint | None = None
    worker: str = "test"  # who is calling now, and what it handles: set by the driver
    during: str = ""
    recorded: list[CrashPoint] = field(default_factory=list)
    crashed_at: CrashPoint | None = None
    _counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def after_write(self, port: str, method: str, args: tuple[Any, ...]) -> None:
        self._counts[(port, method)] += 1
        point = CrashPoint(self.worker, self.during, port, method, self._counts[(port, method)], subject_of(args))
        self.recorded.append(point)
        if self.crashed_at is None and self.target is not None and (port, method, point.nth) == (
            self.target.port, self.target.method, self.target.nth
        ):
            self.crashed_at = point
            raise Crash(f"crash after {point.label}")


class CrashingPort:
    """Wraps one port: every write goes through the plan after it returned."""

    def __init__(self, target: Any, port: str, plan: CrashPlan) -> None:
        self._target = target
        self._port = port
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name not in WRITES[self._port] or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            self._plan.after_write(self._port, name, args)
            return result

        return call


def subject_of(args: tuple[Any, ...]) -> str:
    """A short name for what a call was about, to check that a crash hit the recorded call."""
    if not args:
        return ""
    first = args[0]
    if isinstance(first, str):
        return first
    kind = type(first).__name__
    if isinstance(first, Advance):
        return f"{kind}:{first.task_id}@v{first.version}"
    if isinstance(first, TeardownVariant):
        return f"{kind}:{first.variant}"
    if isinstance(first, Alias):
        # Which way it points: a swap and the rollback that undoes it are two different writes.
        return f"{kind}:{first.embedding_model_id}->{first.live_variant or 'none'}"
    for attribute in ("task_id", "name", "embedding_model_id", "variant"):
        value = getattr(first, attribute, None)
        if isinstance(value, str):
            stage = getattr(first, "stage", None)
            status = getattr(first, "status", None)
            suffix = f":{stage.value}/{status.value}" if stage is not None and status is not None else ""
            return f"{kind}:{value}{suffix}"
    return kind
