"""The README stays short and every link in it and in docs/ leads somewhere."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold examples, not links
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


def test_every_relative_link_resolves():
    broken = [f"{page.relative_to(REPO)} → {target}" for page in PAGES for target in _relative_links(page)
              if not (page.parent / target.split("#")[0]).exists()]
    assert broken == []


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    linked = {(REPO / target.split("#")[0]).resolve() for target in _relative_links(REPO / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if p.name != "README.md" and p.resolve() not in linked]
    assert unlinked == []


def test_the_checker_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("see [the gate](gate.md) and [a site](https://example.org)\n```\n[not a link](x.md)\n```\n")
    assert _relative_links(page) == ["gate.md"] and not (tmp_path / "gate.md").exists()
