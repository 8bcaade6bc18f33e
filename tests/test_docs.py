"""The README and docs/*.md: every relative link and picture lands on a file, every #anchor on a heading.

Checked for README.md and every markdown page under docs/: markdown links ``[text](path)`` and
``[text](path#anchor)``, reference definitions ``[label]: path``, pictures ``![alt](path)`` and HTML
``<img src=...>`` resolve to an existing file relative to the page; an anchor into a markdown file (the
same page included, ``(#anchor)``) matches one of its headings under GitHub's slug rules. External links
(http, https, mailto, any ``scheme:``) are skipped, and so is anything inside a fenced code block or an
inline code span. Every broken link is reported at once. The README also stays a front door: at most
README_MAX_LINES lines.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_IMG = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*([\"'])(.*?)\1", re.IGNORECASE)
_HTML_ID = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*([\"'])(.*?)\1", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def pages() -> list[Path]:
    """README.md and every markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    out, fence = [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip(" `~"):
                fence = None
        else:
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text (code spans, links, emphasis reduced to their words),
    lower-cased, anything but letters, digits, '_', '-' and spaces dropped, each space made a hyphen."""
    parts = []
    for i, piece in enumerate(_CODE_SPAN.split(heading)):
        if i % 3 == 2:  # a code span's content: kept as it is
            parts.append(piece)
        elif i % 3 == 0:  # prose: links and pictures reduced to their text, tags and emphasis markers dropped
            piece = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", piece)
            piece = re.sub(r"<[^>]+>", "", piece)
            parts.append(re.sub(r"\*+|(?<![^\W_])_+|_+(?![^\W_])", "", piece))
    text = "".join(parts).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file: its headings' slugs (repeats get -1, -2, ... as on GitHub) and
    explicit HTML ids/names."""
    seen: Counter[str] = Counter()
    found: set[str] = set()
    lines = prose_lines(path.read_text(encoding="utf-8"))
    for i, (n, line) in enumerate(lines):
        found.update(m.group(2) for m in _HTML_ID.finditer(line))
        m = _HEADING.match(line)
        text = m.group(2) if m else None
        if text is None and i + 1 < len(lines) and lines[i + 1][0] == n + 1 and line.strip():
            if _SETEXT.match(lines[i + 1][1]) and not _HEADING.match(line) and not line.lstrip().startswith("|"):
                text = line.strip()
        if text is None:
            continue
        base = slug(text)
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and picture of a page, outside code."""
    out = []
    for n, line in prose_lines(path.read_text(encoding="utf-8")):
        code_free = _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        out += [(n, m.group(1)) for m in _LINK.finditer(code_free)]
        out += [(n, m.group(2)) for m in _IMG.finditer(code_free)]
        m = _REF_DEF.match(code_free)
        if m:
            out.append((n, m.group(1)))
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """One line per link of ``page`` that does not land: a missing file, or an anchor with no heading."""
    problems, cache = [], {}
    for n, target in links(page):
        if not target or _SCHEME.match(target) or target.startswith("//"):
            continue
        where = f"{page.relative_to(root)}:{n}: ({target})"
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        if file_part:
            dest = (root / file_part.lstrip("/")) if file_part.startswith("/") else (page.parent / file_part)
        else:
            dest = page
        dest = dest.resolve()
        if not dest.exists():
            problems.append(f"{where} no such file {dest.relative_to(root) if dest.is_relative_to(root) else dest}")
            continue
        if anchor and dest.suffix.lower() == ".md" and dest.is_file():
            if dest not in cache:
                cache[dest] = anchors(dest)
            if unquote(anchor).lower() not in cache[dest]:
                problems.append(f"{where} no heading with anchor #{anchor} in {dest.relative_to(root)}")
    return problems


def test_every_relative_link_and_picture_lands_on_a_file_and_a_heading():
    problems = [p for page in pages() for p in broken_links(page)]
    assert not problems, f"{len(problems)} broken link(s):\n" + "\n".join(problems)


def test_the_readme_is_a_front_door():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES}: move detail to docs/"


def test_slugs_follow_githubs_rules():
    assert slug("Planning toward a goal frame: `vicreg plan`") == "planning-toward-a-goal-frame-vicreg-plan"
    assert slug("Recipe search: how the ResNet presets got their optimiser settings") == (
        "recipe-search-how-the-resnet-presets-got-their-optimiser-settings")
    assert slug("The write-up's experiments on the digits") == "the-write-ups-experiments-on-the-digits"
    assert slug("What the embedding keeps and drops, over five seeds") == (
        "what-the-embedding-keeps-and-drops-over-five-seeds")
    assert slug("**Speed** and [links](x.md)") == "speed-and-links"
    assert slug("`train_seconds` and _emphasis_") == "train_seconds-and-emphasis"


def test_the_checker_finds_every_kind_of_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pic.png").write_bytes(b"")
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A `code` heading: yes\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok](other.md#a-code-heading-yes) [ok](other.md#twice-1) [ok](#page) "
        "![ok](pic.png) <img src=\"pic.png\"> [web](https://example.com/nothing.md)\n"
        "`[in code](missing-in-span.md)`\n"
        "```\n[in a fence](missing-in-fence.md)\n```\n"
        "[gone](missing.md) ![gone](missing.png) <img src='gone.png'> [bad](other.md#nope) [bad](#nope)\n"
        "[bad](other.md#twice-2)\n"
    )
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 6, "\n".join(problems)
    assert all(":8:" in p or ":9:" in p for p in problems), "\n".join(problems)
    for name in ("missing.md", "missing.png", "gone.png", "#nope", "#twice-2"):
        assert any(name in p for p in problems), (name, problems)


def _architecture_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("architecture", ROOT / "tools" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_page_is_what_the_tree_gives():
    tool = _architecture_tool()
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert page == tool.render(), "docs/architecture.md is stale: run python tools/architecture.py"
    for path in sorted((ROOT / "src" / "vicreg").rglob("*.py")):  # every module is on the page, by name
        assert f"| `{tool.module_name(path, ROOT / 'src' / 'vicreg')}` |" in page


def test_the_architecture_page_says_what_each_module_holds(tmp_path):
    tool = _architecture_tool()
    pkg = tmp_path / "vicreg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The package."""\n')
    (pkg / "a.py").write_text('"""Holds the ``a`` things: see :func:`f`. More detail here."""\n')
    (pkg / "sub" / "__init__.py").write_text('"""A sub-package."""\nfrom .b import g\n')
    (pkg / "sub" / "b.py").write_text('"""The b module | with a bar.\n\nDetails."""\nfrom ..a import f\n')
    page = tool.render(pkg)
    assert "| 0 | `vicreg.a` | 1 | - | Holds the `a` things: see `f`. |" in page
    assert "| 1 | `vicreg.sub.b` | 4 | `a` | The b module \\| with a bar. |" in page
    assert "| 2 | `vicreg.sub` | 2 | `sub.b` | A sub-package. |" in page
    assert "## `vicreg.sub` (package)" in page
    (pkg / "c.py").write_text("x = 1\n")
    with pytest.raises(SystemExit, match="c.py has no docstring"):
        tool.render(pkg)
