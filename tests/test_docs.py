"""The design notes in ``docs/`` are what the code cites: every cited note and section exists, and nothing
cites a file outside the project (``DESIGN.md`` / ``STYLE.md`` of ``../shared``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CODE_DIRS = ("afwpipe", "stages", "benchmarks")

# ``docs/x.md``, optionally followed by ``#slug`` or by ``, "Heading"`` (the quote may start on the next
# comment line, after ``#`` / ``#:``).
CITATION = re.compile(r'docs/(?P<file>[\w./-]+?\.md)(?:#(?P<slug>[\w-]+)|,\s*(?:#:?\s*)?"(?P<heading>[^"\n]+)")?')
# Files outside the project that code once cited, and the shared folder itself.
FORBIDDEN = re.compile(r"\b(?:DESIGN|STYLE)\b|(?:\.\./|/work/)shared\b")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def citations(text: str) -> list[tuple[str, str | None, str | None]]:
    """``(file, slug, heading)`` of every ``docs/…md`` citation in ``text`` (slug / heading None when absent)."""
    return [(m["file"], m["slug"], m["heading"]) for m in CITATION.finditer(text)]


def headings(md: str) -> list[str]:
    """Heading texts of a Markdown document, skipping fenced code blocks."""
    out, fenced = [], False
    for line in md.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            out.append(m[2])
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO / d).rglob("*.py"))


def problems(source: str, text: str) -> list[str]:
    """What is wrong with the doc citations of ``text`` (read from ``source``); empty when all resolve."""
    out = []
    for file, anchor, heading in citations(text):
        doc = DOCS / file
        if not doc.is_file():
            out.append(f"{source}: cites docs/{file}, which does not exist")
            continue
        heads = headings(doc.read_text(encoding="utf-8"))
        if heading is not None and heading not in heads:
            out.append(f"{source}: cites section {heading!r} of docs/{file}; its sections are {heads}")
        if anchor is not None and anchor not in {slug(h) for h in heads}:
            out.append(f"{source}: cites docs/{file}#{anchor}; its anchors are {[slug(h) for h in heads]}")
    return out


def test_citation_parser_on_hand_written_text():
    text = ('Layout (docs/affwild2.md, "Annotation folders"): ...\n'
            "see docs/stores.md#codecs and docs/encoders.md alone;\n"
            '#: Gaussian σ ... (ABAW seeds;\n#: docs/postprocess.md,\n#: "Smoothing").\n')
    assert citations(text) == [("affwild2.md", None, "Annotation folders"), ("stores.md", "codecs", None),
                               ("encoders.md", None, None), ("postprocess.md", None, "Smoothing")]
    assert headings("# A\n```\n# not a heading\n```\n## B c ##\n") == ["A", "B c"]
    assert slug("Chunking and shards") == "chunking-and-shards"
    assert slug("Prediction, post-processing") == "prediction-post-processing"


def test_problems_reports_a_missing_file_and_a_missing_section():
    found = problems("x.py", 'docs/nope.md and docs/stores.md, "No such section" and docs/stores.md#nope')
    assert len(found) == 3
    assert "docs/nope.md, which does not exist" in found[0]
    assert "'No such section'" in found[1] and "docs/stores.md#nope" in found[2]
    assert problems("x.py", 'docs/stores.md, "Codecs" and docs/stores.md#chunking-and-shards') == []


def test_code_cites_docs_and_every_citation_resolves():
    found, cited = [], 0
    for path in code_files():
        text = path.read_text(encoding="utf-8")
        cited += len(citations(text))
        found += problems(str(path.relative_to(REPO)), text)
    assert cited > 0, "no docs/ citation found in the code: is the scan looking in the right folders?"
    assert found == []


@pytest.mark.parametrize("path", code_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_code_cites_nothing_outside_the_project(path):
    hits = [f"line {n}: {line.strip()}" for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if FORBIDDEN.search(line)]
    assert hits == [], f"{path.relative_to(REPO)} cites a file outside the project: {hits}"


def doc_pages() -> list[Path]:
    """Every Markdown page of ``docs/``, the guide's pages in ``docs/guide/`` included."""
    return sorted(DOCS.rglob("*.md"))


def test_docs_cross_references_resolve_and_the_index_lists_every_note():
    notes = doc_pages()
    names = {p.relative_to(DOCS).as_posix() for p in notes}
    assert names >= {"README.md", "affwild2.md", "stores.md", "encoders.md", "heads.md", "postprocess.md",
                     "guide/install.md", "guide/train.md", "guide/benchmarks.md"}
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    found = []
    for note in notes:
        name = note.relative_to(DOCS).as_posix()
        text = note.read_text(encoding="utf-8")
        found += problems(f"docs/{name}", text)
        found += [f"docs/{name}: cites a file outside the project: {m[0]}" for m in FORBIDDEN.finditer(text)]
        found += [f"docs/{name}: links {link}, which does not exist"
                  for link in re.findall(r"\]\(([\w./-]+\.md)(?:#[\w-]+)?\)", text)
                  if not (note.parent / link).is_file()]
        if name != "README.md" and f"]({name})" not in index:
            found.append(f"docs/README.md does not list {name}")
    assert found == []


def test_readme_links_resolve():
    """The landing page's links into ``docs/`` (pages and images) name files that exist."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([\w./-]+)(?:#[\w-]+)?\)", readme)
    assert any(link.startswith("docs/guide/") for link in links)
    assert [link for link in links if not (REPO / link).exists()] == []


def test_mkdocs_builds_the_site_strictly(tmp_path):
    """``mkdocs build --strict`` (MkDocs' own link, anchor and nav validation, warnings made errors) succeeds:
    every page is in the nav, and no link or anchor between pages is broken."""
    import subprocess
    import sys

    # no -q: MkDocs counts the warnings it logs, and -q hides them, so --strict would pass a broken link
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "guide" / "train" / "index.html").is_file()
