"""Comparison figures: several runs side by side (``runs``: label -> run_dir, in legend order)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..rundir import read_diagnostics, read_knn, read_metrics, read_summary
from .embeddings import check_outputs, embedding_map
from .style import class_colors, class_legend_handles, class_scatter, figure, set_y_scale, shared_legend, step_axis
from .training import (
    LOSS_PANELS,
    draw_spectra,
    effective_window,
    knn_columns,
    knn_x,
    loss_axes,
    raw_pixel_value,
    spectrum_axes,
    std_label,
    steps_of,
    window_note,
    windowed_mean,
)


def fig_compare_loss(runs: Mapping[str, Path | str], window: int) -> Figure:
    """The 2x2 loss panels with one line per run and one legend for the runs. Each run is averaged over its
    ``effective_window(n_steps, window)``; when these differ, the legend gives each run's."""
    metrics = {label: m for label, d in runs.items() if len((m := read_metrics(d))["loss"])}
    if not metrics:
        raise ValueError("none of the runs has rows in metrics.csv: nothing to compare")
    used = {label: effective_window(len(m["loss"]), window) for label, m in metrics.items()}
    fig = figure(12, 8)
    axes = loss_axes(fig)
    lines = []
    for i, (label, m) in enumerate(metrics.items()):
        steps, _ = windowed_mean(steps_of(m), used[label])
        name = label if len(set(used.values())) == 1 else f"{label} ({used[label]}-batch windows)"
        for ax, (column, _) in zip(axes, LOSS_PANELS):
            (line,) = ax.plot(steps, windowed_mean(m[column], used[label])[1], color=f"C{i % 10}", label=name)
        lines.append(line)
    for ax in axes:
        set_y_scale(ax, np.concatenate([line.get_ydata() for line in ax.get_lines()]))
        step_axis(ax, "training step (batches)" if ax in axes[2:] else "")
    if len(set(used.values())) == 1:
        what = window_note(min(len(m["loss"]) for m in metrics.values()), window)
    else:
        what = f"mean over windows of batches ({window}, or fewer for short runs: see the legend)"
    fig.suptitle(f"Training loss of {len(lines)} runs; {what}")
    shared_legend(fig, lines, [line.get_label() for line in lines], title="run")
    return fig


def fig_compare_knn(runs: Mapping[str, Path | str]) -> Figure:
    """k-NN top-1 of the first k column over training, one line per run; raw-pixel baselines dashed (one grey
    line when all runs share the same k and baseline, else one per run in its colour)."""
    curves = []  # (label, colour, x, accuracy, k, raw-pixel accuracy or None)
    for i, (label, d) in enumerate(runs.items()):
        knn = read_knn(d)
        if knn is None or not knn_columns(knn):
            continue
        (k, column), (x, xlabel) = knn_columns(knn)[0], knn_x(knn)
        raw = raw_pixel_value(read_summary(d).get("knn_raw_pixels"), k)
        curves.append((label, f"C{i % 10}", x, knn[column], k, raw))
    if not curves:
        raise ValueError("none of the runs has a knn.csv with evaluations: nothing to compare")
    ks = sorted({c[4] for c in curves})
    fig = figure(9, 5.5)
    ax = fig.subplots()
    for label, color, x, acc, k, _ in curves:
        ax.plot(x, acc, marker="o", markersize=3, color=color, label=label if len(ks) == 1 else f"{label} (k = {k})")
    baselines = [(label, color, k, raw) for label, color, _, _, k, raw in curves if raw is not None]
    if len(ks) == 1 and len({round(raw, 2) for *_, raw in baselines}) == 1:
        _, _, k, raw = baselines[0]
        ax.axhline(raw, color="0.4", linestyle="--", linewidth=1.2, label=f"raw pixels (k = {k}): {raw:.1f}%")
    else:
        for label, color, k, raw in baselines:
            ax.axhline(raw, color=color, linestyle="--", linewidth=1, label=f"{label}: raw pixels {raw:.1f}%")
    step_axis(ax, xlabel)
    ax.set_ylabel("k-NN top-1 accuracy on the test split (%)")
    ax.set_title(f"k-NN accuracy during training (k = {', '.join(map(str, ks))})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def fig_compare_spectra(runs: Mapping[str, Path | str]) -> Figure:
    """The last diagnostics entry of each run: normalised singular values of the embedding (left) and its
    sorted per-dimension std with the hinge target (right), one line per run."""
    last = {label: entries[-1] for label, d in runs.items() if (entries := read_diagnostics(d))}
    if not last:
        raise ValueError("none of the runs has diagnostics.jsonl entries: nothing to compare")
    targets = {e.get("target") for e in last.values()} - {None}
    fig = figure(12, 5.5)
    left, right = spectrum_axes(fig, targets.pop() if len(targets) == 1 else None)
    lines = [(f"{label}: effective rank {e['embedding']['effective_rank']:.1f} / {e['embedding']['dim']}",
              f"{label}: {std_label(e['embedding'], e.get('target'))}", e["embedding"], f"C{i % 10}")
             for i, (label, e) in enumerate(last.items())]
    draw_spectra(left, right, lines, fontsize=8)
    fig.suptitle("Spread of the test-split embedding at the last diagnostics of each run")
    return fig


def fig_compare_embeddings(outputs: Mapping[str, Mapping[str, np.ndarray]], class_names: Sequence[str] | None,
                           tsne_points: int = 2000, seed: int = 0) -> Figure:
    """One panel per run (up to 4 columns): the 2-D embedding if E == 2, else the t-SNE of (a seeded subsample
    of ``tsne_points`` of) the embedding, coloured by class with one shared legend."""
    if not outputs:
        raise ValueError("no outputs to compare")
    checked = {label: check_outputs(o) for label, o in outputs.items()}
    classes = np.unique(np.concatenate([y for _, y in checked.values()]).astype(np.int64))
    colors = class_colors(len(classes))
    ncols = min(4, len(checked))
    nrows = math.ceil(len(checked) / ncols)
    fig = figure(3.6 * ncols + 0.5, 3.6 * nrows + 1.0)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (label, (z, y)) in zip(axes, checked.items()):
        xy, yy, what = embedding_map(z, y, tsne_points, seed)
        class_scatter(ax, xy, yy.astype(np.int64), classes, colors)
        ax.set_title(f"{label}\n({what})", fontsize=10)
        if z.shape[1] == 2:
            ax.set_xlabel("embedding dimension 1")
            ax.set_ylabel("embedding dimension 2")
        else:
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
            ax.set_xticks([])
            ax.set_yticks([])
    for ax in axes[len(checked):]:
        ax.set_axis_off()
    fig.suptitle("Test-split embeddings, coloured by class")
    if len(classes) <= 20:
        handles = class_legend_handles(classes, colors, class_names)
        shared_legend(fig, handles, [h.get_label() for h in handles], title="class")
    return fig
