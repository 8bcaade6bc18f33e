"""The report page: a Markdown table of every run, and one self-contained HTML file with the figures inside."""

import base64
import math
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from vicreg.report import format_value, write_report

COLUMNS = ["run", "epochs", "k-NN@20 (%)", "lr", "note"]


def _png(path, color):
    fig = Figure(figsize=(2, 1.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color=color)
    ax.set_title(path.stem)
    fig.savefig(path, dpi=50)
    return path


@pytest.fixture
def figures(tmp_path):
    (tmp_path / "figs").mkdir()
    return [("Loss <of> all runs", _png(tmp_path / "figs" / "loss.png", "C0")),
            ("k-NN & baseline", _png(tmp_path / "figs" / "knn.png", "C1"))]


def test_format_value():
    assert format_value(3) == "3" and format_value(np.int64(40)) == "40"
    assert format_value(97.6789) == "97.68" and format_value(np.float32(0.5)) == "0.50"
    assert format_value(0.0) == "0.00" and format_value(0.00042) == "0.00042"  # small values keep 2 digits
    assert format_value(None) == "—" and format_value(math.nan) == "—"
    assert format_value(True) == "yes" and format_value("seed") == "seed"


def test_markdown_lists_every_row(tmp_path, figures):
    rows = [{"run": "baseline", "epochs": 50, "k-NN@20 (%)": 91.234, "lr": 1e-3, "note": "ok"},
            {"run": "no | expander", "epochs": 50, "k-NN@20 (%)": None, "lr": 2e-3},
            {"run": "E=2", "epochs": np.int64(40), "k-NN@20 (%)": 71.0, "lr": 0.0005, "note": "collapsed"}]
    md_path, _ = write_report(tmp_path / "report", "Expander ablation", "What the expander buys.\n\nSecond.",
                              COLUMNS, rows, figures, notes=["seeds: 0", "CPU only"])
    md = md_path.read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == "| run | epochs | k-NN@20 (%) | lr | note |"
    assert table[1] == "|---|---:|---:|---:|---|"  # numeric columns right-aligned
    assert table[2:] == ["| baseline | 50 | 91.23 | 0.001 | ok |",
                         "| no \\| expander | 50 | — | 0.002 | — |",
                         "| E=2 | 40 | 71.00 | 0.0005 | collapsed |"]
    assert md.startswith("# Expander ablation\n\nWhat the expander buys.\n\nSecond.\n")
    assert "![Loss <of> all runs](../figs/loss.png)" in md and "![k-NN & baseline](../figs/knn.png)" in md
    assert md.rstrip().endswith("- seeds: 0\n- CPU only")


def test_html_is_self_contained_and_escaped(tmp_path, figures):
    rows = [{"run": "<script>alert(1)</script>", "epochs": 3, "k-NN@20 (%)": 50.0, "lr": 0.1}]
    _, html_path = write_report(tmp_path, "A & B <test>", "intro with <b>tags</b>", COLUMNS, rows, figures,
                                notes=["x < y"])
    page = html_path.read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(figures) == page.count("data:image/png;base64,")
    assert [base64.b64decode(u) for u in uris] == [p.read_bytes() for _, p in figures]
    assert len(re.findall(r'src="(?!data:)', page)) == 0  # nothing refers to a file
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>A &amp; B &lt;test&gt;</title>" in page and "intro with &lt;b&gt;tags&lt;/b&gt;" in page
    assert "<li>x &lt; y</li>" in page and "<figcaption>Loss &lt;of&gt; all runs</figcaption>" in page
    assert '<td class="num">50.00</td>' in page and "max-width: 1100px" in page


def test_missing_figure_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="figure .*nope.png does not exist"):
        write_report(tmp_path, "t", "i", ["run"], [{"run": "a"}], [("gone", tmp_path / "nope.png")])
