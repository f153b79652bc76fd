"""The documentation as a newcomer meets it: a short README whose links, like every page's,
resolve inside the repository (anchors included), and no path of one machine anywhere."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_readme_is_a_short_front_door():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not in code blocks
    for target, anchor in re.findall(r"\]\(([^)\s#]*)(#[^)\s]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: link to {target} which does not exist"
        assert ROOT in path.parents or path == ROOT, f"{page.name}: link {target} leaves the repository"
        if anchor and path.suffix == ".md":
            assert anchor[1:] in anchors(path), f"{page.name}: {target}{anchor}: no such heading"


def test_no_machine_paths_in_tracked_files():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = []
    for name in files:
        if name.startswith(("tests/", ".ci/")) or not name.endswith((".md", ".py", ".yaml", ".sh", ".toml", ".txt", ".cfg")):
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"(?<![\w.])/(?:work|tmp)/[a-z][^\s`'\")]*|load average", text):
            bad.append(f"{name}: {m.group(0)}")
    assert not bad, "machine paths or run history in tracked files:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_tables_have_rows_and_no_placeholders(page):
    """A measured table that lost its rows, or a section left to be filled in, reads as a
    result that is not there."""
    lines = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S).splitlines()
    for i, line in enumerate(lines[:-1]):
        if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
            assert lines[i + 1].lstrip().startswith("|"), f"{page.name}:{i + 1}: a table with a header and no rows"
    text = "\n".join(lines)
    for marker in ("TODO", "TBD", "filled in below", "<!-- fill"):
        assert marker not in text, f"{page.name}: placeholder {marker!r}"
