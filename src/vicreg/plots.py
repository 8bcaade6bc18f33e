"""Figures from a VICReg run directory, and comparison figures for several runs.

``plot_run(run_dir)`` writes what applies to ``run_dir/plots``::

    loss.png/.svg        total loss and its three terms, averaged over windows of batches
    knn.png/.svg         k-NN top-1 on the test split during training, raw-pixel baseline dashed   (knn.csv)
    spectrum.png/.svg    singular values and per-dimension std of the last diagnostics entry     (diagnostics.jsonl)
    collapse.png/.svg    effective rank and dims below the hinge target over training            (diagnostics.jsonl)
    embedding2d.png      the test split's 2-D embedding coloured by class              (outputs given, E == 2)
    tsne.png             t-SNE of the test split's embedding coloured by class         (outputs given, E > 2)

The ``fig_*`` functions are pure: data in, ``matplotlib.figure.Figure`` out. They build figures without pyplot,
so there is no global figure registry to leak into and nothing to close: a figure is freed when unreferenced.
Saving goes through matplotlib's Agg (PNG) and SVG canvases; no display is needed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "effective_window",
    "fig_collapse_over_training",
    "fig_compare_embeddings",
    "fig_compare_knn",
    "fig_compare_loss",
    "fig_compare_spectra",
    "fig_knn",
    "fig_loss_curves",
    "fig_scatter2d",
    "fig_spectrum",
    "fig_tsne",
    "plot_run",
    "read_diagnostics",
    "read_knn",
    "read_metrics",
    "save_figure",
    "tsne_2d",
    "windowed_mean",
]

DPI = 130
LOSS_PANELS = [  # metrics.csv column, panel title
    ("loss", "total loss (weighted sum of the three terms)"),
    ("invariance", "invariance: MSE between the two views"),
    ("variance", "variance: hinge on per-dimension std (unweighted)"),
    ("covariance", "covariance: off-diagonal² / D (unweighted)"),
]
SPACES = ("embedding", "projection")  # the keys of a diagnostics entry that hold a space's diagnostics


# --------------------------------------------------------------------------------------------
# Reading a run directory
# --------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a numeric CSV with a header row, as float arrays (empty arrays when there are no rows)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty (no header row)")
        rows = [r for r in reader if r]
    values = np.array(rows, dtype=float).reshape(len(rows), len(header))
    return {name: values[:, i] for i, name in enumerate(header)}


def read_metrics(run_dir: Path | str) -> dict[str, np.ndarray]:
    """metrics.csv as {column: (n_steps,) float array}: step, epoch, lr, loss, invariance, variance, ..."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no metrics.csv in it)")
    return _read_csv(path)


def read_knn(run_dir: Path | str) -> dict[str, np.ndarray] | None:
    """knn.csv as {column: (n_evals,) array} (step, epoch, knn@K for each K); None without evaluations."""
    path = Path(run_dir) / "knn.csv"
    if not path.exists():
        return None
    knn = _read_csv(path)
    return knn if len(knn["step"]) else None


def read_diagnostics(run_dir: Path | str) -> list[dict]:
    """The entries of diagnostics.jsonl in order; [] when the file is missing. A truncated last line (the run
    was killed while writing it) is skipped; a malformed line elsewhere raises."""
    path = Path(run_dir) / "diagnostics.jsonl"
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    entries = []
    for i, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}, line {i + 1} is not valid JSON: {e}") from None
    return entries


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _read_config(run_dir: Path) -> dict:
    import yaml

    path = run_dir / "config.yaml"
    if not path.exists():
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _run_title(run_dir: Path) -> str:
    """'name (preset, dataset)' from the run's config; just the folder name without one."""
    cfg = _read_config(run_dir)
    extra = [v for v in (cfg.get("preset"), (cfg.get("data") or {}).get("dataset")) if v]
    return f"{run_dir.name} ({', '.join(map(str, extra))})" if extra else run_dir.name


def _knn_columns(knn: Mapping[str, np.ndarray]) -> list[tuple[int, str]]:
    """[(k, column)] for the knn@K columns, in file order."""
    return [(int(c.split("@", 1)[1]), c) for c in knn if c.startswith("knn@")]


def _raw_pixel_value(raw_pixels: Mapping | None, k: int) -> float | None:
    if not raw_pixels:
        return None
    v = raw_pixels.get(str(k), raw_pixels.get(k))
    return None if v is None else float(v)


# --------------------------------------------------------------------------------------------
# Small numerical pieces
# --------------------------------------------------------------------------------------------


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


def _window_note(n_steps: int, window: int) -> str:
    used = effective_window(n_steps, window)
    what = "per batch" if used == 1 else f"mean over {used}-batch windows"
    if used == window:
        return what
    return f"{what}\n(a run of {n_steps} batches is too short for {window}-batch windows)"


def tsne_2d(x: np.ndarray, seed: int = 0, perplexity: float = 30.0, n_jobs: int | None = None) -> np.ndarray:
    """(N, D) -> (N, 2) t-SNE with openTSNE (FFT-accelerated: 10 000 points of 50-D in 20-35 s on 2 CPU cores).

    Deterministic under ``seed`` (PCA initialisation; the optimisation is seeded too). Inputs wider than 50
    dimensions are first reduced to 50 with PCA (as usual for t-SNE: it keeps the dominant geometry and makes
    the neighbour search fast). The input is not standardised per dimension on purpose: that would blow up
    collapsed dimensions (std ~ 0) to the same scale as the informative ones. ``perplexity`` is lowered for
    small N (it must stay below N / 3). ``n_jobs``: threads; default 1 below 4000 points (Barnes-Hut, under
    a second for hundreds of points, where threads cost more than they save), all cores above.
    """
    from openTSNE import TSNE

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(f"tsne_2d needs an (N, D) array with N >= 4, got shape {x.shape}")
    x = x - x.mean(axis=0)
    scale = x.std()
    if not np.isfinite(scale):
        raise ValueError("tsne_2d got non-finite values (NaN or inf) in its input")
    if scale < 1e-12:  # complete collapse: every point is the same; t-SNE has nothing to lay out
        return np.zeros((len(x), 2))
    x = x / scale
    if x.shape[1] > 50:
        from sklearn.decomposition import PCA

        x = PCA(n_components=min(50, len(x)), random_state=seed).fit_transform(x)
    perplexity = min(perplexity, (len(x) - 1) / 3)
    # Barnes-Hut is several times faster than the FFT method below a few thousand points, slower above
    small = len(x) < 4000
    method = "bh" if small else "fft"
    n_jobs = n_jobs if n_jobs is not None else (1 if small else -1)
    init = "pca" if x.shape[1] >= 2 else "random"  # PCA to 2-D needs 2 input dimensions
    tsne = TSNE(n_components=2, perplexity=perplexity, initialization=init, random_state=seed,
                negative_gradient_method=method, n_jobs=n_jobs, verbose=False)
    return np.asarray(tsne.fit(x), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Single-run figures
# --------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _set_y_scale(ax, y: np.ndarray) -> None:
    """log-y for a positive series spanning more than a decade; linear otherwise (zeros, flat series)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    y = y[np.isfinite(y)]
    if len(y) and y.min() > 0 and y.max() / y.min() > 10:
        ax.set_yscale("log")
        if y.max() / y.min() < 10**2.5:  # few decades: label 1, 2, 5 of each, else only the decades
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.05, not 5 x 10^-2
        ax.yaxis.set_minor_formatter(NullFormatter())


def _step_axis(ax, xlabel: str = "training step (batches)") -> None:
    """Whole numbers on the x axis (steps, epochs), starting at 0 so that a single point is not centred alone.
    Call after plotting: fixing the left limit stops x autoscaling."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlim(left=0)


def _loss_axes(fig: Figure) -> list:
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (_, title) in zip(axes, LOSS_PANELS):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("loss value")
        ax.grid(alpha=0.3)
    return list(axes)


def _steps(metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    n = len(metrics["loss"])
    return metrics["step"] if "step" in metrics else np.arange(1, n + 1, dtype=float)


def fig_loss_curves(metrics: Mapping[str, np.ndarray], window: int, title: str = "") -> Figure:
    """2x2 panels (total, invariance, variance, covariance) vs. training step, each averaged over windows of
    ``effective_window(n_steps, window)`` batches. ``title`` (e.g. the run name) heads the figure."""
    n = len(metrics["loss"])
    if n == 0:
        raise ValueError("metrics.csv has no rows yet: nothing to plot")
    used = effective_window(n, window)
    fig = _figure(11, 7)
    steps, _ = windowed_mean(_steps(metrics), used)  # the mean step of each window: its centre
    for ax, (column, _) in zip(_loss_axes(fig), LOSS_PANELS):
        _, y = windowed_mean(metrics[column], used)
        ax.plot(steps, y, color="C0", marker="o" if len(y) < 30 else None, markersize=3)
        _set_y_scale(ax, y)
        _step_axis(ax, "training step (batches)" if column in ("variance", "covariance") else "")
    epochs = f", {int(metrics['epoch'].max())} epochs" if "epoch" in metrics else ""
    head = f"{title}: training loss" if title else "Training loss"
    fig.suptitle(f"{head} ({n} batches{epochs}); {_window_note(n, window)}")
    return fig


def _marker_size(n: int) -> float:
    return float(np.clip(3000 / max(n, 1), 2.0, 25.0))


def _class_colors(n_classes: int) -> np.ndarray:
    """(n_classes, 4) RGBA: tab10 up to 10 classes, tab20 up to 20, evenly spaced turbo beyond."""
    from matplotlib import colormaps

    if n_classes <= 10:
        return colormaps["tab10"](np.arange(n_classes))
    if n_classes <= 20:
        return colormaps["tab20"](np.arange(n_classes))
    return colormaps["turbo"](np.linspace(0, 1, n_classes))


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else f"class {c}"


def _class_scatter(ax, xy: np.ndarray, labels: np.ndarray, classes: np.ndarray, colors: np.ndarray) -> None:
    """Points coloured by class, drawn in a fixed random order so that no class hides the others."""
    order = np.random.default_rng(0).permutation(len(xy))
    idx = np.searchsorted(classes, labels[order])
    ax.scatter(xy[order, 0], xy[order, 1], c=colors[idx], s=_marker_size(len(xy)), alpha=0.6, linewidths=0,
               rasterized=True)
    ax.set_aspect("equal", adjustable="datalim")  # distances mean the same along both axes


def _class_legend_handles(classes: np.ndarray, colors: np.ndarray, class_names) -> list[Line2D]:
    return [Line2D([], [], marker="o", linestyle="", markersize=7, color=colors[i],
                   label=_class_name(int(c), class_names)) for i, c in enumerate(classes)]


def _check_xy(xy: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy, labels = np.asarray(xy, dtype=float), np.asarray(labels).astype(np.int64).ravel()
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(labels):
        raise ValueError(f"expected (N, 2) points and (N,) labels, got {xy.shape} and {labels.shape}")
    return xy, labels


def _scatter_figure(xy, labels, class_names, title: str, axis_labels: tuple[str, str], hide_ticks: bool) -> Figure:
    xy, labels = _check_xy(xy, labels)
    classes = np.unique(labels)
    colors = _class_colors(len(classes))
    fig = _figure(8.5, 7)
    ax = fig.subplots()
    _class_scatter(ax, xy, labels, classes, colors)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if hide_ticks:  # t-SNE coordinates have no meaning; only the neighbourhoods do
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        ax.legend(handles=_class_legend_handles(classes, colors, class_names), title="class", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        title = f"{title}\n(colour = class; {len(classes)} classes, too many for a legend)"
    ax.set_title(title)
    return fig


def fig_scatter2d(embedding: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None,
                  title: str) -> Figure:
    """A 2-D embedding (N, 2) as points coloured by class (labels (N,)), with a class legend."""
    return _scatter_figure(embedding, labels, class_names, title, ("embedding dimension 1", "embedding dimension 2"),
                           hide_ticks=False)


def fig_tsne(xy: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None, title: str) -> Figure:
    """A t-SNE map (N, 2) as points coloured by class (labels (N,)), with a class legend."""
    return _scatter_figure(xy, labels, class_names, title, ("t-SNE 1", "t-SNE 2"), hide_ticks=True)


SPECTRUM_FLOOR = 1e-6  # normalised singular values below this are drawn at it (a log axis cannot show 0)


def _normalised_spectrum(space: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """(index 1.., s / s.max() floored at SPECTRUM_FLOOR) of a space's singular values."""
    s = np.asarray(space["singular_values"], dtype=float)
    top = s.max() if len(s) and s.max() > 0 else 1.0
    return np.arange(1, len(s) + 1), np.maximum(s / top, SPECTRUM_FLOOR)


def _note_floor(ax) -> None:
    if any(np.min(line.get_ydata(), initial=1.0) <= SPECTRUM_FLOOR for line in ax.get_lines()):
        ax.set_title(f"{ax.get_title()}\n(values below {SPECTRUM_FLOOR:g} of the largest drawn at {SPECTRUM_FLOOR:g})",
                     fontsize=10)


def _sorted_std(space: Mapping) -> tuple[np.ndarray, np.ndarray]:
    std = np.sort(np.asarray(space["std"], dtype=float))[::-1]
    return np.arange(1, len(std) + 1), std


def _spectrum_axes(fig: Figure, target: float | None) -> tuple:
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


def fig_spectrum(entry: Mapping, title: str) -> Figure:
    """One diagnostics entry: normalised singular values (left, log-y) and sorted per-dimension std with the
    hinge target (right), for the embedding and the projection."""
    target = entry.get("target")
    fig = _figure(12, 5)
    left, right = _spectrum_axes(fig, target)
    for i, key in enumerate(k for k in SPACES if k in entry):
        space, color = entry[key], f"C{i}"
        left.plot(*_normalised_spectrum(space), color=color,
                  label=f"{key} ({space['dim']}-D), effective rank {space['effective_rank']:.1f}")
        right.plot(*_sorted_std(space), color=color,
                   label=f"{key}: {100 * space['frac_below_target']:.0f}% of dims below target")
    left.legend(fontsize=9)
    _note_floor(left)
    right.legend(fontsize=9)
    right.set_ylim(bottom=0)
    where = f"step {entry['step']}, epoch {entry['epoch']}" if "step" in entry else ""
    fig.suptitle(f"{title}: spread of the test-split embedding ({where})" if where else title)
    return fig


def fig_collapse_over_training(entries: Sequence[Mapping], title: str = "") -> Figure:
    """Effective rank (left) and % of dimensions with std below the hinge target (right) vs. training step,
    for the embedding and the projection; one point per diagnostics entry."""
    if not entries:
        raise ValueError("no diagnostics entries to plot (diagnostics.jsonl is missing or empty)")
    fig = _figure(12, 4.8)
    left, right = fig.subplots(1, 2, sharex=True)
    steps = np.array([e["step"] for e in entries], dtype=float)
    for i, key in enumerate(k for k in SPACES if k in entries[0]):
        dim = entries[0][key]["dim"]
        rank = [e[key]["effective_rank"] for e in entries]
        below = [100 * e[key]["frac_below_target"] for e in entries]
        left.plot(steps, rank, marker="o", markersize=3, color=f"C{i}", label=f"{key} ({dim}-D)")
        right.plot(steps, below, marker="o", markersize=3, color=f"C{i}", label=f"{key} ({dim}-D)")
    target = entries[-1].get("target")
    left.set_title("effective rank (higher = more spread out)", fontsize=10)
    left.set_ylabel("effective rank")
    left.set_ylim(bottom=0)
    gamma = f"γ = {target:g}" if target is not None else "γ"
    right.set_title(f"dimensions with std below the hinge target {gamma}", fontsize=10)
    right.set_ylabel("% of dimensions")
    right.set_ylim(-3, 103)
    for ax in (left, right):
        _step_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(f"{title}: collapse diagnostics over training" if title else "Collapse diagnostics over training")
    return fig


def _knn_x(knn: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
    if "epoch" in knn:
        return knn["epoch"], "epoch"
    return knn["step"], "training step (batches)"


def fig_knn(knn: Mapping[str, np.ndarray], raw_pixels: Mapping | None, title: str = "") -> Figure:
    """k-NN top-1 (%) of the embedding on the test split vs. epoch, one line per k; the raw-pixel k-NN of the
    same k as a dashed line of the same colour."""
    x, xlabel = _knn_x(knn)
    fig = _figure(8.5, 5)
    ax = fig.subplots()
    for i, (k, column) in enumerate(_knn_columns(knn)):
        color = f"C{i}"
        ax.plot(x, knn[column], marker="o", markersize=4, color=color, label=f"embedding, k = {k}")
        raw = _raw_pixel_value(raw_pixels, k)
        if raw is not None:
            ax.axhline(raw, color=color, linestyle="--", linewidth=1.2, label=f"raw pixels, k = {k}: {raw:.1f}%")
    _step_axis(ax, xlabel)
    ax.set_ylabel("k-NN top-1 accuracy on the test split (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    head = f"{title}: k-NN accuracy" if title else "k-NN accuracy"
    ax.set_title(f"{head} during training")
    return fig


# --------------------------------------------------------------------------------------------
# Saving and the per-run driver
# --------------------------------------------------------------------------------------------


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


def _check_outputs(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(embedding (N, E), labels (N,)) from an outputs dict, checked."""
    if "embedding" not in outputs or "labels" not in outputs:
        raise ValueError(f"outputs needs 'embedding' and 'labels' arrays, got keys {sorted(outputs)}")
    z, y = np.asarray(outputs["embedding"]), np.asarray(outputs["labels"]).ravel()
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"outputs: embedding must be (N, E) with one label per row, got {z.shape} and {y.shape}")
    return z, y


def _subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of min(n, limit) rows, chosen at random under ``seed``."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _embedding_map(z: np.ndarray, y: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(xy, labels, what): the 2-D embedding itself, or the t-SNE of a random subsample of ``limit`` points."""
    if z.shape[1] == 2:
        return z.astype(float), y, "2-D embedding"
    idx = _subsample(len(z), limit, seed)
    what = f"t-SNE of {z.shape[1]}-D embedding"
    if len(idx) < len(z):
        what += f", {len(idx)} of {len(z)} points"
    return tsne_2d(z[idx], seed=seed), y[idx], what


def plot_run(run_dir: Path | str, outputs: Mapping[str, np.ndarray] | None = None,
             class_names: Sequence[str] | None = None, out_dir: Path | str | None = None, window: int = 200,
             tsne_points: int = 10_000, seed: int = 0, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write the figures that apply to ``run_dir`` into ``out_dir`` (default run_dir/plots); see the module
    docstring for the list. ``outputs``: the test split's {"embedding": (N, E), "labels": (N,), ...}.
    Scatter plots are PNG only (thousands of points); ``formats`` applies to the line plots."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    name = _run_title(run_dir)
    written = save_figure(fig_loss_curves(read_metrics(run_dir), window, title=name), out / "loss", formats)
    knn = read_knn(run_dir)
    if knn is not None:
        raw = _read_json(run_dir / "summary.json").get("knn_raw_pixels")
        written += save_figure(fig_knn(knn, raw, title=name), out / "knn", formats)
    entries = read_diagnostics(run_dir)
    if entries:
        written += save_figure(fig_spectrum(entries[-1], title=name), out / "spectrum", formats)
        written += save_figure(fig_collapse_over_training(entries, title=name), out / "collapse", formats)
    if outputs is not None:
        z, y = _check_outputs(outputs)
        xy, y, what = _embedding_map(z, y, tsne_points, seed)
        if z.shape[1] == 2:
            fig, stem = fig_scatter2d(xy, y, class_names, f"{name}: test split, {what}"), "embedding2d"
        else:
            fig, stem = fig_tsne(xy, y, class_names, f"{name}: test split, {what}"), "tsne"
        written += save_figure(fig, out / stem, ("png",))
    return written


# --------------------------------------------------------------------------------------------
# Comparison figures: several runs side by side (``runs``: label -> run_dir, in legend order)
# --------------------------------------------------------------------------------------------


def _shared_legend(fig: Figure, handles, labels, title: str | None = None) -> None:
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), title=title, frameon=False)


def fig_compare_loss(runs: Mapping[str, Path | str], window: int) -> Figure:
    """The 2x2 loss panels with one line per run and one legend for the runs. Each run is averaged over its
    ``effective_window(n_steps, window)``; when these differ, the legend gives each run's."""
    metrics = {label: m for label, d in runs.items() if len((m := read_metrics(d))["loss"])}
    if not metrics:
        raise ValueError("none of the runs has rows in metrics.csv: nothing to compare")
    used = {label: effective_window(len(m["loss"]), window) for label, m in metrics.items()}
    fig = _figure(12, 8)
    axes = _loss_axes(fig)
    lines = []
    for i, (label, m) in enumerate(metrics.items()):
        steps, _ = windowed_mean(_steps(m), used[label])
        name = label if len(set(used.values())) == 1 else f"{label} ({used[label]}-batch windows)"
        for ax, (column, _) in zip(axes, LOSS_PANELS):
            (line,) = ax.plot(steps, windowed_mean(m[column], used[label])[1], color=f"C{i % 10}", label=name)
        lines.append(line)
    for ax in axes:
        _set_y_scale(ax, np.concatenate([line.get_ydata() for line in ax.get_lines()]))
        _step_axis(ax, "training step (batches)" if ax in axes[2:] else "")
    if len(set(used.values())) == 1:
        what = _window_note(min(len(m["loss"]) for m in metrics.values()), window)
    else:
        what = f"mean over windows of batches ({window}, or fewer for short runs: see the legend)"
    fig.suptitle(f"Training loss of {len(lines)} runs; {what}")
    _shared_legend(fig, lines, [line.get_label() for line in lines], title="run")
    return fig


def fig_compare_knn(runs: Mapping[str, Path | str]) -> Figure:
    """k-NN top-1 of the first k column over training, one line per run; raw-pixel baselines dashed (one grey
    line when all runs share the same k and baseline, else one per run in its colour)."""
    curves = []  # (label, colour, x, accuracy, k, raw-pixel accuracy or None)
    for i, (label, d) in enumerate(runs.items()):
        knn = read_knn(d)
        if knn is None or not _knn_columns(knn):
            continue
        (k, column), (x, xlabel) = _knn_columns(knn)[0], _knn_x(knn)
        raw = _raw_pixel_value(_read_json(Path(d) / "summary.json").get("knn_raw_pixels"), k)
        curves.append((label, f"C{i % 10}", x, knn[column], k, raw))
    if not curves:
        raise ValueError("none of the runs has a knn.csv with evaluations: nothing to compare")
    ks = sorted({c[4] for c in curves})
    fig = _figure(9, 5.5)
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
    _step_axis(ax, xlabel)
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
    fig = _figure(12, 5.5)
    left, right = _spectrum_axes(fig, targets.pop() if len(targets) == 1 else None)
    for i, (label, e) in enumerate(last.items()):
        space, color = e["embedding"], f"C{i % 10}"
        left.plot(*_normalised_spectrum(space), color=color,
                  label=f"{label}: effective rank {space['effective_rank']:.1f} / {space['dim']}")
        right.plot(*_sorted_std(space), color=color,
                   label=f"{label}: {100 * space['frac_below_target']:.0f}% of dims below target")
    left.legend(fontsize=8)
    _note_floor(left)
    right.legend(fontsize=8)
    right.set_ylim(bottom=0)
    fig.suptitle("Spread of the test-split embedding at the last diagnostics of each run")
    return fig


def fig_compare_embeddings(outputs: Mapping[str, Mapping[str, np.ndarray]], class_names: Sequence[str] | None,
                           tsne_points: int = 2000, seed: int = 0) -> Figure:
    """One panel per run (up to 4 columns): the 2-D embedding if E == 2, else the t-SNE of (a seeded subsample
    of ``tsne_points`` of) the embedding, coloured by class with one shared legend."""
    if not outputs:
        raise ValueError("no outputs to compare")
    checked = {label: _check_outputs(o) for label, o in outputs.items()}
    classes = np.unique(np.concatenate([y for _, y in checked.values()]).astype(np.int64))
    colors = _class_colors(len(classes))
    ncols = min(4, len(checked))
    nrows = math.ceil(len(checked) / ncols)
    fig = _figure(3.6 * ncols + 0.5, 3.6 * nrows + 1.0)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (label, (z, y)) in zip(axes, checked.items()):
        xy, yy, what = _embedding_map(z, y, tsne_points, seed)
        _class_scatter(ax, xy, yy.astype(np.int64), classes, colors)
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
        handles = _class_legend_handles(classes, colors, class_names)
        _shared_legend(fig, handles, [h.get_label() for h in handles], title="class")
    return fig


# --------------------------------------------------------------------------------------------
# World model (vicreg eval-predictor)
# --------------------------------------------------------------------------------------------

ROLLOUT_STYLES = {"predictor": ("predictor", "C0", "o-"), "last": ("next = last", "C3", "s--"),
                  "linear": ("linear extrapolation", "C2", "^:")}


def fig_rollout_errors(errors: Mapping[str, Mapping[int, float]], title: str = "") -> Figure:
    """Mean squared error of the predicted embedding against the roll-out horizon, one line per method."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for method, errs in errors.items():
        label, color, style = ROLLOUT_STYLES.get(method, (method, None, "o-"))
        hs = sorted(int(h) for h in errs)
        ax.plot(hs, [errs[h] if h in errs else errs[str(h)] for h in hs], style, color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(hs, [str(h) for h in hs])
    ax.set_yscale("log")
    ax.set_xlabel("frames ahead (autoregressive roll-out)")
    ax.set_ylabel("MSE of the embedding (standardised units)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or "roll-out error", fontsize=10)
    return fig


def fig_predicted_frames(frames: np.ndarray, nearest: np.ndarray, context: int, title: str = "",
                         distractors: bool = False) -> Figure:
    """For each test sequence, two rows: its frames (the ``context`` seen, then the real next ones), and under
    each real next frame the training frame whose embedding is nearest to the predicted embedding.

    frames: uint8 (S, context + H, C, h, w); nearest: uint8 (S, H, C, h, w).
    """
    frames, nearest = np.asarray(frames), np.asarray(nearest)
    s, total = frames.shape[:2]
    horizon = total - context
    if nearest.shape[:2] != (s, horizon):
        raise ValueError(f"nearest frames {nearest.shape[:2]} do not match {s} sequences x {horizon} predicted frames")
    fig = _figure(1.0 * total + 1.6, 2.1 * s + 0.6)
    grid = fig.add_gridspec(2 * s, total, hspace=0.15, wspace=0.05)

    def show(ax, img: np.ndarray, edge: str | None = None) -> None:
        img = img.transpose(1, 2, 0)
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(edge is not None)
            if edge:
                spine.set_color(edge), spine.set_linewidth(2)

    for i in range(s):
        for j in range(total):
            ax = fig.add_subplot(grid[2 * i, j])
            show(ax, frames[i, j], None if j < context else "C2")
            if i == 0:
                d = j - context + 1  # the last context frame is t
                ax.set_title("t" if d == 0 else f"t{d:+d}", fontsize=8)
            if j == 0:
                ax.set_ylabel("real", fontsize=8)
            if j >= context:
                ax = fig.add_subplot(grid[2 * i + 1, j])
                show(ax, nearest[i, j - context], "C0")
                if j == context:
                    ax.set_ylabel("predicted\n(nearest\ntraining\nframe)", fontsize=7)
    note = "; the small white squares are distractors, redrawn at random every frame" if distractors else ""
    fig.suptitle((title + "\n" if title else "") + f"top rows: {context} context frames, then the real next frames "
                 f"(green); bottom rows: the training frame nearest to each predicted embedding (blue){note}",
                 fontsize=8)
    return fig
