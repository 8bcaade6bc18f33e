"""What every figure shares: a pyplot-free constrained figure, axis helpers, class colours and legends,
and saving to PNG/SVG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

DPI = 130


def figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def set_y_scale(ax, y: np.ndarray) -> None:
    """log-y for a positive series spanning more than a decade; linear otherwise (zeros, flat series)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    y = y[np.isfinite(y)]
    if len(y) and y.min() > 0 and y.max() / y.min() > 10:
        ax.set_yscale("log")
        if y.max() / y.min() < 10**2.5:  # few decades: label 1, 2, 5 of each, else only the decades
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.05, not 5 x 10^-2
        ax.yaxis.set_minor_formatter(NullFormatter())


def step_axis(ax, xlabel: str = "training step (batches)") -> None:
    """Whole numbers on the x axis (steps, epochs), starting at 0 so that a single point is not centred alone.
    Call after plotting: fixing the left limit stops x autoscaling."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlim(left=0)


def marker_size(n: int) -> float:
    return float(np.clip(3000 / max(n, 1), 2.0, 25.0))


def class_colors(n_classes: int) -> np.ndarray:
    """(n_classes, 4) RGBA: tab10 up to 10 classes, tab20 up to 20, evenly spaced turbo beyond."""
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"](np.arange(n_classes))
    if n_classes <= 20:
        return colormaps["tab20"](np.arange(n_classes))
    return colormaps["turbo"](np.linspace(0, 1, n_classes))


def class_name(c: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else f"class {c}"


def class_scatter(ax, xy: np.ndarray, labels: np.ndarray, classes: np.ndarray, colors: np.ndarray) -> None:
    """Points coloured by class, drawn in a fixed random order so that no class hides the others."""
    order = np.random.default_rng(0).permutation(len(xy))
    idx = np.searchsorted(classes, labels[order])
    ax.scatter(xy[order, 0], xy[order, 1], c=colors[idx], s=marker_size(len(xy)), alpha=0.6, linewidths=0,
               rasterized=True)
    ax.set_aspect("equal", adjustable="datalim")  # distances mean the same along both axes


def class_legend_handles(classes: np.ndarray, colors: np.ndarray, class_names) -> list[Line2D]:
    return [Line2D([], [], marker="o", linestyle="", markersize=7, color=colors[i],
                   label=class_name(int(c), class_names)) for i, c in enumerate(classes)]


def shared_legend(fig: Figure, handles, labels, title: str | None = None) -> None:
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), title=title, frameon=False)


def save_figure(fig: Figure, path_without_suffix: Path | str, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Save ``fig`` as path.<fmt> for each format (png at 130 dpi); returns the written paths."""
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = base.with_name(f"{base.name}.{fmt}")  # not with_suffix: run names may contain dots
        fig.savefig(path, dpi=DPI, format=fmt)
        paths.append(path)
    return paths
