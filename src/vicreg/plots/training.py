"""Figures of one run's training: the loss terms, the k-NN accuracy, the spectrum and the collapse
diagnostics over training (from metrics.csv, knn.csv and diagnostics.jsonl)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..diagnostics import std_figures
from .style import figure, set_y_scale, step_axis

LOSS_PANELS = [  # metrics.csv column, panel title
    ("loss", "total loss (weighted sum of the three terms)"),
    ("invariance", "invariance: MSE between the two views"),
    ("variance", "variance: hinge on per-dimension std (unweighted)"),
    ("covariance", "covariance: off-diagonal² / D (unweighted)"),
]
SPACES = ("embedding", "projection")  # the keys of a diagnostics entry that hold a space's diagnostics


def knn_columns(knn: Mapping[str, np.ndarray]) -> list[tuple[int, str]]:
    """[(k, column)] for the knn@K columns, in file order."""
    return [(int(c.split("@", 1)[1]), c) for c in knn if c.startswith("knn@")]


def raw_pixel_value(raw_pixels: Mapping | None, k: int) -> float | None:
    if not raw_pixels:
        return None
    v = raw_pixels.get(str(k), raw_pixels.get(k))
    return None if v is None else float(v)


def windowed_mean(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Means over consecutive non-overlapping windows of ``window`` values (one value per batch).

    A last partial window is kept if it holds at least half a window (or is the only one), else dropped.
    Returns (x, mean): x is each window's centre in 1-based step units (steps 1..window -> (window + 1) / 2).
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    values = np.asarray(values, dtype=float).ravel()
    n = len(values)
    starts = list(range(0, n, window))
    if len(starts) > 1 and 2 * (n - starts[-1]) < window:
        starts.pop()  # a short last window: too noisy to show next to full ones
    ends = [min(s + window, n) for s in starts]
    x = np.array([(s + 1 + e) / 2 for s, e in zip(starts, ends)])
    mean = np.array([values[s:e].mean() for s, e in zip(starts, ends)])
    return x, mean


def effective_window(n_steps: int, window: int) -> int:
    """The window actually used for a run of ``n_steps`` batches: ``window`` if that gives at least 5 windows,
    else max(1, n_steps // 20) (about 20 points on the curve)."""
    if window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    return window if n_steps >= 5 * window else max(1, n_steps // 20)


def window_note(n_steps: int, window: int) -> str:
    used = effective_window(n_steps, window)
    what = "per batch" if used == 1 else f"mean over {used}-batch windows"
    if used == window:
        return what
    return f"{what}\n(a run of {n_steps} batches is too short for {window}-batch windows)"


def loss_axes(fig: Figure) -> list:
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (_, title) in zip(axes, LOSS_PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("loss value")
        ax.grid(alpha=0.3)
    return list(axes)


def steps_of(metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    n = len(metrics["loss"])
    return metrics["step"] if "step" in metrics else np.arange(1, n + 1, dtype=float)


def fig_loss_curves(metrics: Mapping[str, np.ndarray], window: int, title: str = "") -> Figure:
    """2x2 panels (total, invariance, variance, covariance) vs. training step, each averaged over windows of
    ``effective_window(n_steps, window)`` batches. ``title`` (e.g. the run name) heads the figure."""
    n = len(metrics["loss"])
    if n == 0:
        raise ValueError("metrics.csv has no rows yet: nothing to plot")
    used = effective_window(n, window)
    fig = figure(11, 7)
    steps, _ = windowed_mean(steps_of(metrics), used)  # the mean step of each window: its centre
    for ax, (column, _) in zip(loss_axes(fig), LOSS_PANELS):
        _, y = windowed_mean(metrics[column], used)
        ax.plot(steps, y, color="C0", marker="o" if len(y) < 30 else None, markersize=3)
        set_y_scale(ax, y)
        step_axis(ax, "training step (batches)" if column in ("variance", "covariance") else "")
    epochs = f", {int(metrics['epoch'].max())} epochs" if "epoch" in metrics else ""
    head = f"{title}: training loss" if title else "Training loss"
    fig.suptitle(f"{head} ({n} batches{epochs}); {window_note(n, window)}")
    return fig


SPECTRUM_FLOOR = 1e-6  # normalised singular values below this are drawn at it (a log axis cannot show 0)


def normalised_spectrum(space: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """(index 1.., s / s.max() floored at SPECTRUM_FLOOR) of a space's singular values."""
    s = np.asarray(space["singular_values"], dtype=float)
    top = s.max() if len(s) and s.max() > 0 else 1.0
    return np.arange(1, len(s) + 1), np.maximum(s / top, SPECTRUM_FLOOR)


def note_floor(ax) -> None:
    if any(np.min(line.get_ydata(), initial=1.0) <= SPECTRUM_FLOOR for line in ax.get_lines()):
        ax.set_title(f"{ax.get_title()}\n(values below {SPECTRUM_FLOOR:g} of the largest drawn at {SPECTRUM_FLOOR:g})",
                     fontsize=10)


def sorted_std(space: Mapping) -> tuple[np.ndarray, np.ndarray]:
    std = np.sort(np.asarray(space["std"], dtype=float))[::-1]
    return np.arange(1, len(std) + 1), std


def spectrum_axes(fig: Figure, target: float | None) -> tuple:
    left, right = fig.subplots(1, 2)
    left.set_title("singular values of the centred matrix", fontsize=10)
    left.set_xlabel("index i (descending)")
    left.set_ylabel("s_i / s_1 (log scale)")
    left.set_yscale("log")
    right.set_title("per-dimension std over the test samples", fontsize=10)
    right.set_xlabel("dimension, sorted by std (descending)")
    right.set_ylabel("std")
    if target is not None:
        right.axhline(target, color="0.3", linestyle="--", linewidth=1, label=f"hinge target γ = {target:g}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return left, right


def draw_spectra(left, right, lines: Sequence[tuple[str, str, Mapping, str]], fontsize: int) -> None:
    """Each (spectrum label, std label, space, colour): its normalised spectrum on ``left``, its sorted stds on
    ``right``; then the legends."""
    for spectrum_label, std_text, space, color in lines:
        left.plot(*normalised_spectrum(space), color=color, label=spectrum_label)
        right.plot(*sorted_std(space), color=color, label=std_text)
    left.legend(fontsize=fontsize)
    note_floor(left)
    right.legend(fontsize=fontsize)
    right.set_ylim(bottom=0)


def fig_spectrum(entry: Mapping, title: str) -> Figure:
    """One diagnostics entry: normalised singular values (left, log-y) and sorted per-dimension std with the
    hinge target (right), for the embedding and the projection."""
    target = entry.get("target")
    fig = figure(12, 5)
    left, right = spectrum_axes(fig, target)
    lines = [(f"{key} ({entry[key]['dim']}-D), effective rank {entry[key]['effective_rank']:.1f}",
              f"{key}: {std_label(entry[key], target)}", entry[key], f"C{i}")
             for i, key in enumerate(k for k in SPACES if k in entry)]
    draw_spectra(left, right, lines, fontsize=9)
    where = f"step {entry['step']}, epoch {entry['epoch']}" if "step" in entry else ""
    fig.suptitle(f"{title}: spread of the test-split embedding ({where})" if where else title)
    return fig


def space_figures(space: Mapping, target: float | None) -> dict[str, float]:
    """median_std, dead_fraction and mean_hinge of one space of a diagnostics entry; computed from its stored
    per-dimension std for runs written before these were recorded (eps: the loss's default)."""
    if "dead_fraction" in space:
        return {k: space[k] for k in ("median_std", "dead_fraction", "mean_hinge")}
    return std_figures(np.asarray(space["std"], dtype=float), 1.0 if target is None else target)


def std_label(space: Mapping, target: float | None) -> str:
    f = space_figures(space, target)
    return f"median std {f['median_std']:.2f}, {100 * f['dead_fraction']:.0f}% dead, hinge {f['mean_hinge']:.2f}"


def fig_collapse_over_training(entries: Sequence[Mapping], title: str = "") -> Figure:
    """Effective rank (left), share of dead dimensions (middle) and the mean variance hinge (right) vs. training
    step, for the embedding and the projection; one point per diagnostics entry (see vicreg.diagnostics)."""
    if not entries:
        raise ValueError("no diagnostics entries to plot (diagnostics.jsonl is missing or empty)")
    fig = figure(15, 4.8)
    left, middle, right = fig.subplots(1, 3, sharex=True)
    steps = np.array([e["step"] for e in entries], dtype=float)
    for i, key in enumerate(k for k in SPACES if k in entries[0]):
        dim = entries[0][key]["dim"]
        figures = [space_figures(e[key], e.get("target")) for e in entries]
        style = dict(marker="o", markersize=3, color=f"C{i}", label=f"{key} ({dim}-D)")
        left.plot(steps, [e[key]["effective_rank"] for e in entries], **style)
        middle.plot(steps, [100 * f["dead_fraction"] for f in figures], **style)
        right.plot(steps, [f["mean_hinge"] for f in figures], **style)
    target = entries[-1].get("target")
    gamma = f"γ = {target:g}" if target is not None else "γ"
    left.set_title("effective rank (higher = more spread out)", fontsize=10)
    left.set_ylabel("effective rank")
    left.set_ylim(bottom=0)
    middle.set_title("dead dimensions: std < max(median / 10, 2√eps)", fontsize=10)
    middle.set_ylabel("% of dimensions")
    middle.set_ylim(-3, 103)
    right.set_title(f"mean variance hinge max(0, γ - std), {gamma}\n(projection: the variance term; 0 = all at γ)",
                    fontsize=10)
    right.set_ylabel("mean hinge")
    right.set_ylim(bottom=0)
    for ax in (left, middle, right):
        step_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(f"{title}: collapse diagnostics over training" if title else "Collapse diagnostics over training")
    return fig


def knn_x(knn: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
    if "epoch" in knn:
        return knn["epoch"], "epoch"
    return knn["step"], "training step (batches)"


def fig_knn(knn: Mapping[str, np.ndarray], raw_pixels: Mapping | None, title: str = "") -> Figure:
    """k-NN top-1 (%) of the embedding on the test split vs. epoch, one line per k; the raw-pixel k-NN of the
    same k as a dashed line of the same colour."""
    x, xlabel = knn_x(knn)
    fig = figure(8.5, 5)
    ax = fig.subplots()
    for i, (k, column) in enumerate(knn_columns(knn)):
        color = f"C{i}"
        ax.plot(x, knn[column], marker="o", markersize=4, color=color, label=f"embedding, k = {k}")
        raw = raw_pixel_value(raw_pixels, k)
        if raw is not None:
            ax.axhline(raw, color=color, linestyle="--", linewidth=1.2, label=f"raw pixels, k = {k}: {raw:.1f}%")
    step_axis(ax, xlabel)
    ax.set_ylabel("k-NN top-1 accuracy on the test split (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    head = f"{title}: k-NN accuracy" if title else "k-NN accuracy"
    ax.set_title(f"{head} during training")
    return fig
