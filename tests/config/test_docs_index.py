"""docs/index.md links every page under docs/, and every decision record has its three parts and is listed in
docs/decisions/README.md."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
DECISIONS = DOCS / "decisions"


def links(page: Path) -> set[Path]:
    return {(page.parent / target).resolve() for target in re.findall(r"\]\(([^)#]+)", page.read_text())}


def test_the_index_links_every_page_and_only_pages_that_exist() -> None:
    pages = {p.resolve() for p in DOCS.rglob("*.md")} - {(DOCS / "index.md").resolve()}
    linked = {p for p in links(DOCS / "index.md") if DOCS.resolve() in p.parents}
    assert pages - linked == set(), "pages missing from docs/index.md"
    assert {p for p in linked if not p.exists()} == set(), "docs/index.md links pages that do not exist"


def test_each_decision_record_has_context_decision_and_consequences_and_is_listed() -> None:
    records = sorted(DECISIONS.glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert records
    listed = links(DECISIONS / "README.md")
    for record in records:
        headings = re.findall(r"^## (.+)$", record.read_text(), re.MULTILINE)
        assert headings == ["Context", "Decision", "Consequences"], record.name
        assert record.resolve() in listed, record.name
