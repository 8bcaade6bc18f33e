"""A report page comparing runs: ``report.md`` next to its figures, and ``report.html``, one self-contained file.

``write_report`` takes what to say (title, intro, a table, figures, notes) and writes both. The HTML embeds
every figure as a base64 ``data:`` URI and carries its own CSS, so the single file can be mailed or archived
without the figures beside it. All text is HTML-escaped; nothing in the inputs is interpreted as markup.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path

__all__ = ["format_value", "write_report"]

MISSING = "—"
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; line-height: 1.5;
       color: #222; max-width: 1100px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .95em; }
th, td { border: 1px solid #ccc; padding: .35em .8em; }
th { background: #f0f3f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .95em; margin-top: .4em; }
ul.notes { color: #444; }
"""


def format_value(value) -> str:
    """A table cell: ints as ints, floats with 2 decimals (2 significant digits below 0.01, e.g. a learning
    rate), None / NaN as an em dash, anything else as str()."""
    if value is None or (isinstance(value, Real) and not isinstance(value, Integral) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        value = float(value)
        return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 or math.isinf(value) else f"{value:.2g}"
    return str(value)


def _is_numeric(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _numeric_columns(columns: Sequence[str], rows: Sequence[dict]) -> set[str]:
    """Columns whose present values are all numbers (right-aligned)."""
    return {c for c in columns
            if any(r.get(c) is not None for r in rows) and all(_is_numeric(r[c]) for r in rows if r.get(c) is not None)}


def _markdown_table(columns: Sequence[str], rows: Sequence[dict]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    numeric = _numeric_columns(columns, rows)
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell(format_value(r.get(c))) for c in columns) + " |" for r in rows]
    return lines


def _html_table(columns: Sequence[str], rows: Sequence[dict]) -> str:
    numeric = _numeric_columns(columns, rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)

    def cell(row: dict, c: str) -> str:
        attr = ' class="num"' if c in numeric else ""
        return f"<td{attr}>{html.escape(format_value(row.get(c)))}</td>"

    body = "\n".join("<tr>" + "".join(cell(r, c) for c in columns) + "</tr>" for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _data_uri(path: Path) -> str:
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed figure {path}: use .png, .svg or .jpg")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def write_report(out_dir: Path | str, title: str, intro: str, columns: list[str], rows: list[dict],
                 figures: list[tuple[str, Path]], notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` (figures linked by relative path) and ``out_dir/report.html`` (figures embedded,
    inline CSS: one self-contained file). ``rows`` map column -> value; ``figures`` are (caption, image path).
    Returns (markdown path, html path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [(caption, Path(path)) for caption, path in figures]
    for _, path in figures:
        if not path.is_file():
            raise FileNotFoundError(f"figure {path} does not exist")

    md = [f"# {title}", "", *(line for p in _paragraphs(intro) for line in (p, "")), *_markdown_table(columns, rows)]
    for caption, path in figures:
        rel = Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()
        alt = caption.replace("[", "\\[").replace("]", "\\]")
        md += ["", f"![{alt}]({rel})", "", f"*{alt}*"]
    if notes:
        md += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    esc = html.escape
    parts = [f"<h1>{esc(title)}</h1>", *(f"<p>{esc(p)}</p>" for p in _paragraphs(intro)), _html_table(columns, rows)]
    parts += [f'<figure><img src="{_data_uri(path)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption>'
              f"</figure>" for caption, path in figures]
    if notes:
        parts += ["<h2>Notes</h2>", '<ul class="notes">', *(f"<li>{esc(n)}</li>" for n in notes), "</ul>"]
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return md_path, html_path
