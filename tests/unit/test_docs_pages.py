"""The README is a newcomer's page: it fits in 350 lines, the recorded demo runs live in docs/demo.md,
and every file it and the docs link to is there."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_the_readme_fits_a_newcomers_page_and_links_the_recorded_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 350
    assert "](docs/demo.md)" in readme
    assert "==== esdeploy demo report ====" not in readme, "the recorded runs are in docs/demo.md"
    demo = (ROOT / "docs" / "demo.md").read_text()
    assert "==== esdeploy demo report ====" in demo and "==== esdeploy demo-rollback report ====" in demo


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_names_a_file_that_is_there(page: Path) -> None:
    missing = [
        target for target, _ in LINK.findall(page.read_text())
        if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists()
    ]
    assert missing == []
