"""The README is a short front door and docs/ the manual: every link resolves inside the repository, none leaves it,
and no page names an issue number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
LOCAL_ADDRESS = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]")


def test_the_readme_is_a_front_door_not_the_manual() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_of_a_page_resolves_inside_the_repository(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        assert not target.startswith(("http://", "https://")), f"{page.name} links outside the repository: {target}"
        path = target.split("#", 1)[0]
        if path:
            assert (page.parent / path).resolve().exists(), f"{page.name} links to a missing {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_a_page_names_no_issue_and_no_outside_address(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"\bissues? #?\d+|(?<![\w&])#\d+\b", text, re.IGNORECASE), page.name
    outside = [url for url in re.findall(r"https?://[^\s)`'\"]+", text) if not LOCAL_ADDRESS.match(url)]
    assert outside == [], f"{page.name} names addresses outside the repository: {outside}"
