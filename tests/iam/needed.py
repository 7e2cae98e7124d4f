"""Test support: the list `esdeploy doctor` reads (esdeploy/iam/code_calls.json), derived from what tests/iam evaluated.

Each test that runs a function's calls derives that function's part of the list and compares it
with the committed file; `ESDEPLOY_WRITE_IAM_CALLS=1` (`make iam-calls`) writes that part instead.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

from esdeploy.iam import aws_checks
from esdeploy.iam.code_calls import LIST_FILE, REGENERATE, Needed, StageNames, canonical, dump, load, parse
from esdeploy.iam.evaluation import Decision
from tests.iam.calls import Authorization

WRITE = "ESDEPLOY_WRITE_IAM_CALLS"


def entries(function: str, decisions: Iterable[tuple[Authorization, Decision]], names: StageNames) -> set[Needed]:
    found = set()
    for authorization, decision in decisions:
        check = aws_checks.by_name(authorization.aws_check) if authorization.aws_check else None
        found.add(canonical(
            function, authorization.principal, decision.request.action, decision.request.resource,
            decision.request.context, names, authorization.aws_check,
            (check.unless_role_exists or "") if check else "",
        ))
    return found


def stale(functions: Iterable[str], derived: set[Needed]) -> list[str]:
    """What differs between the committed list and `derived` for `functions` ([] when equal); with
    ESDEPLOY_WRITE_IAM_CALLS set, that part of the file is written instead."""
    wanted = set(functions)
    committed = {entry for entry in load() if entry.function in wanted}
    if os.environ.get(WRITE):
        kept = [entry for entry in parse(LIST_FILE.read_text()) if entry.function not in wanted]
        LIST_FILE.write_text(dump([*kept, *derived]))
        load.cache_clear()
        return []
    problems = [f"missing from {LIST_FILE.name}: {e}" for e in sorted(derived - committed)]
    problems += [f"in {LIST_FILE.name} but no call needs it now: {e}" for e in sorted(committed - derived)]
    if problems:
        problems.append(f"the code's calls changed: `{REGENERATE}` writes esdeploy/iam/code_calls.json again")
    return problems
