"""Every relative link in README.md and docs/*.md points at a file of the repository, and a
``#fragment`` pointing into a Markdown file names one of its headings.

Links and images are found with markdown-it-py (inline links, images, reference definitions; raw
HTML ``href``/``src`` attributes too). Absolute URLs (``https:``, ``mailto:``) are not fetched.
Heading anchors are GitHub's: the heading's text lower-cased, every character that is not a
letter, digit, space, ``-`` or ``_`` removed, spaces turned into ``-``, and ``-1``, ``-2`` ...
appended to repeats (https://github.com/gjtorikian/html-pipeline, ``TableOfContentsFilter``).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from helpers.doc_commands import REPO
from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark").enable("table")
_HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")


def _documents() -> list[Path]:
    """README.md and docs/*.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _targets(path: Path) -> list[tuple[str, int]]:
    """(link target, 1-based line) of every link, image and reference definition of ``path``."""
    text = path.read_text(encoding="utf-8")
    env: dict = {}
    tokens = _MD.parse(text, env)
    found = [(ref["href"], 0) for ref in env.get("references", {}).values()]
    for token in tokens:
        line = token.map[0] + 1 if token.map else 0
        if token.type in ("html_block",):
            found += [(href, line) for href in _HTML_LINK.findall(token.content)]
        for child in token.children or []:
            if child.type == "link_open":
                found.append((child.attrGet("href"), line))
            elif child.type == "image":
                found.append((child.attrGet("src"), line))
            elif child.type == "html_inline":
                found += [(href, line) for href in _HTML_LINK.findall(child.content)]
    return found


def github_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of the Markdown file ``path``."""
    tokens = _MD.parse(path.read_text(encoding="utf-8"))
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        text = "".join(c.content for c in tokens[i + 1].children or [] if c.type in ("text", "code_inline"))
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _broken(path: Path) -> list[str]:
    """The relative links of ``path`` that lead nowhere, as ``file:line: target (why)``."""
    problems = []
    for target, line in _targets(path):
        parts = urlsplit(target)
        if parts.scheme or target.startswith("//"):
            continue  # absolute URL
        where = f"{path.relative_to(REPO)}:{line}: {target}"
        dest = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not dest.exists():
            problems.append(f"{where} (no such file)")
            continue
        if not dest.is_relative_to(REPO):
            problems.append(f"{where} (outside the repository)")
            continue
        if parts.fragment and dest.suffix == ".md" and parts.fragment not in github_anchors(dest):
            problems.append(f"{where} (no heading #{parts.fragment} in {dest.relative_to(REPO)})")
    return problems


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc):
    assert not _broken(doc), _broken(doc)


def test_readme_links_every_docs_page():
    """Each page in docs/ is reachable from the README, directly or through a page it links."""
    linked: set[Path] = set()
    todo = [REPO / "README.md"]
    while todo:
        page = todo.pop()
        for target, _ in _targets(page):
            parts = urlsplit(target)
            if parts.scheme or not parts.path:
                continue
            dest = (page.parent / unquote(parts.path)).resolve()
            if dest.suffix == ".md" and dest.is_file() and dest not in linked:
                linked.add(dest)
                todo.append(dest)
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")}
    assert pages <= linked, sorted(str(p.relative_to(REPO)) for p in pages - linked)


def test_the_checker_finds_broken_links_and_anchors(tmp_path, monkeypatch):
    """A missing file, a missing heading and a path outside the repository are reported; a good
    file link, a good anchor (GitHub's slug of a heading with code and punctuation) and an
    absolute URL are not."""
    import test_docs_links as module

    monkeypatch.setattr(module, "REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B\n\n## A run here: `make x`\n\n## A run here: `make x`\n")
    doc = tmp_path / "README.md"
    doc.write_text(
        "# A\n\n[ok](docs/b.md) [anchor](docs/b.md#a-run-here-make-x)\n"
        "[again](docs/b.md#a-run-here-make-x-1)\n"
        "[web](https://example.com/x) [self](#a)\n\n"
        "[gone](docs/c.md) [nohead](docs/b.md#nothing) [out](../elsewhere.md) ![img](docs/pic.png)\n",
        encoding="utf-8",
    )
    (tmp_path.parent / "elsewhere.md").write_text("# E\n")
    problems = module._broken(doc)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/c.md (no such file)",
        "docs/b.md#nothing (no heading #nothing in docs/b.md)",
        "../elsewhere.md (outside the repository)",
        "docs/pic.png (no such file)",
    ], problems
