"""What only an account shows is one list: docs/infra.md's tables are what `esdeploy acceptance` measures."""
from __future__ import annotations

import re
from pathlib import Path

from esdeploy.acceptance.facts import LIFECYCLE_FACTS, PROBE_FACTS, Findings, Outcome

INFRA = Path(__file__).resolve().parents[2] / "docs" / "infra.md"
SECTION = "## What only an account shows: `esdeploy acceptance`"


def documented_tables() -> list[list[str]]:
    """The fact keys of each table in the section, in order (the first column's `key`)."""
    text = INFRA.read_text(encoding="utf-8")
    assert SECTION in text, f"docs/infra.md lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    tables: list[list[str]] = []
    in_table = False
    for line in section.splitlines():
        if line.startswith("|") and not in_table:
            tables.append([])
        in_table = line.startswith("|")
        row = re.match(r"^\| `([a-z_]+)` \|", line)
        if row:
            tables[-1].append(row.group(1))
    return tables


def test_docs_list_exactly_the_facts_the_command_measures() -> None:
    lifecycle, probe = documented_tables()
    assert lifecycle == [fact.key for fact in LIFECYCLE_FACTS]
    assert probe == [fact.key for fact in PROBE_FACTS]


def test_the_docs_say_plainly_that_no_run_on_aws_has_been_made() -> None:
    section = INFRA.read_text(encoding="utf-8").split(SECTION, 1)[1].split("\n## ", 1)[0]
    assert "No run of esdeploy on AWS has been made by us yet." in section
    assert "### What to send us" in section


def test_every_fact_is_in_the_report_until_measured_and_local_limits_are_said() -> None:
    """A report always carries every key; on the local stack a fact with a local limit is never a
    value that could pass for AWS's answer."""
    local = Findings(LIFECYCLE_FACTS, local=True)
    local.local_limits()
    assert set(local.as_dict()) == {fact.key for fact in LIFECYCLE_FACTS}
    local.measured("event_tags", {"events": 0})
    local.measured("stage_seconds", {"deploy 1": [["waiting", 3.0]]})
    assert local.found["event_tags"].outcome == Outcome.NOT_MEASURABLE
    assert local.found["event_tags"].value is None
    assert "not measurable locally" in local.found["event_tags"].note
    assert "{'events': 0}" in local.found["event_tags"].note
    assert local.found["stage_seconds"].outcome == Outcome.MEASURED  # no local limit: a real local value
    assert local.found["emf_metrics"].outcome == Outcome.NOT_MEASURABLE  # said up front, even if never reached

    on_aws = Findings(LIFECYCLE_FACTS, local=False)
    on_aws.local_limits()
    assert {f.outcome for f in on_aws.found.values()} == {Outcome.NOT_REACHED}
    on_aws.measured("event_tags", {"events": 4})
    assert on_aws.as_dict()["event_tags"] == {
        "title": on_aws.found["event_tags"].fact.title, "outcome": "measured", "value": {"events": 4}, "note": "",
    }
