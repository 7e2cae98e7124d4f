"""Operator tool layer: the acceptance run's report — a JSON file to send back to us, and the same as a table."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from esdeploy import __version__
from esdeploy.acceptance.facts import Findings, Outcome
from esdeploy.acceptance.lifecycle import Step

FORMAT = "esdeploy-acceptance/1"


@dataclass
class Report:
    run_id: str
    started_at: str
    target: dict[str, Any]
    plan: dict[str, Any]
    findings: Findings
    probe: Findings | None = None
    steps: list[Step] = field(default_factory=list)
    outcome: str = "not started"
    error: str | None = None
    leftovers: list[str] = field(default_factory=list)
    ended_at: str | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "passed" and not self.leftovers

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "esdeploy_version": __version__,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "error": self.error,
            "target": self.target,
            "plan": self.plan,
            "steps": [step.as_dict() for step in self.steps],
            "facts": self.findings.as_dict(),
            "probe": None if self.probe is None else self.probe.as_dict(),
            "leftovers": self.leftovers,
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")

    def table(self) -> Table:
        table = Table(title=f"esdeploy acceptance {self.run_id}: {self.outcome}", show_lines=True)
        table.add_column("fact", no_wrap=True)
        table.add_column("outcome", no_wrap=True)
        table.add_column("value", overflow="fold")
        for findings in (self.findings, self.probe):
            if findings is None:
                continue
            for key, finding in findings.found.items():
                value = finding.note if finding.outcome != Outcome.MEASURED else _compact(finding.value)
                if finding.outcome == Outcome.MEASURED and finding.note:
                    value += f" ({finding.note})"
                table.add_row(key, str(finding.outcome), value)
        for step in self.steps:
            state = "not reached" if step.ok is None else "as expected" if step.ok else "NOT as expected"
            table.add_row(f"step: {step.name}", state, f"{step.status or ''} {step.detail}".strip())
        table.add_row(
            "teardown", "nothing left" if not self.leftovers else "LEFT BEHIND", "; ".join(self.leftovers) or "-"
        )
        return table


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))
