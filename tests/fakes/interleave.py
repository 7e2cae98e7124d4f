"""Test helper: a port proxy that runs a competing action at the exact moment a call is made.

Race tests built on it interleave deterministically: "the other writer" runs once, just before
(or just after) the first call of `method` whose arguments match `when`, and the call then goes
to the real port as it would in production. The caller waits while the competitor runs.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Interleave:
    """Wraps `target`; the first call of `method` that `when(*args, **kwargs)` accepts runs
    `competitor()` first (or, with `after=True`, right after the call returned)."""

    def __init__(
        self,
        target: Any,
        method: str,
        competitor: Callable[[], object],
        when: Callable[..., bool] = lambda *args, **kwargs: True,
        after: bool = False,
    ) -> None:
        self._target = target
        self._method = method
        self._competitor = competitor
        self._when = when
        self._after = after
        self._running = False
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name != self._method or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            # The competitor may use the same port (it usually does): it goes straight through.
            fire = not self.fired and not self._running and self._when(*args, **kwargs)
            if fire and not self._after:
                self._run_competitor()
            result = attribute(*args, **kwargs)
            if fire and self._after:
                self._run_competitor()
            return result

        return call

    def _run_competitor(self) -> None:
        """On a thread of its own, as another Lambda would be: its stack shows its own handler, not
        the one whose call it interleaves (tests/iam attributes each AWS call by the stack)."""
        self.fired = True
        self._running = True
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self._competitor()
            except BaseException as error:  # re-raised in the caller's thread below
                failure.append(error)

        try:
            other = threading.Thread(target=run, name="interleaved-competitor")
            other.start()
            other.join()
        finally:
            self._running = False
        if failure:
            raise failure[0]
