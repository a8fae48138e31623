"""The README stays a five-minute read, and the README and docs/ stay readable: short lines, links that lead somewhere."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# docs/settings.md is generated from the settings' definitions (scripts/settings-table.py), so it is left out here.
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "settings.md")]
FENCED = re.compile(r"^ *```.*?^ *```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path):
    """The page without its code: a `[x](y)` or a `# comment` in a code block is neither a link nor a heading."""
    return CODE_SPAN.sub("", FENCED.sub("", path.read_text()))


def anchors(path):
    """GitHub's anchor for each heading: lower case, punctuation dropped, spaces made dashes."""
    headings = re.findall(r"^#+ (.*)$", FENCED.sub("", path.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def page_id(path):
    return str(path.relative_to(REPO))


def test_the_readme_has_at_most_200_lines():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= 200, f"README.md has {lines} lines: move the detail into docs/ and link to it"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_line_is_over_120_characters(page):
    long = [n for n, line in enumerate(page.read_text().splitlines(), 1) if len(line) > 120]
    assert not long, f"{page_id(page)}: lines over 120 characters: {long}"


# Links are checked on every page, the generated one and the roles' and plugins' READMEs too.
LINKED = [*PAGES, REPO / "docs" / "settings.md", *sorted(REPO.glob("roles/*/README.md")),
          REPO / "collections" / "ansible_collections" / "gpubox" / "box" / "README.md"]


@pytest.mark.parametrize("page", LINKED, ids=page_id)
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for link in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link} (no such heading in {path.name})")
    assert not broken, f"{page_id(page)}: broken links: {broken}"
