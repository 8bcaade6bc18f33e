"""Pictures of an embedding: t-SNE (openTSNE), and scatter plots of 2-D points coloured by class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .style import class_colors, class_legend_handles, class_scatter, figure


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


def _check_xy(xy: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy, labels = np.asarray(xy, dtype=float), np.asarray(labels).astype(np.int64).ravel()
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(labels):
        raise ValueError(f"expected (N, 2) points and (N,) labels, got {xy.shape} and {labels.shape}")
    return xy, labels


def _scatter_figure(xy, labels, class_names, title: str, axis_labels: tuple[str, str], hide_ticks: bool) -> Figure:
    xy, labels = _check_xy(xy, labels)
    classes = np.unique(labels)
    colors = class_colors(len(classes))
    fig = figure(8.5, 7)
    ax = fig.subplots()
    class_scatter(ax, xy, labels, classes, colors)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if hide_ticks:  # t-SNE coordinates have no meaning; only the neighbourhoods do
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        ax.legend(handles=class_legend_handles(classes, colors, class_names), title="class", loc="upper left",
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


def check_outputs(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(embedding (N, E), labels (N,)) from an outputs dict, checked."""
    if "embedding" not in outputs or "labels" not in outputs:
        raise ValueError(f"outputs needs 'embedding' and 'labels' arrays, got keys {sorted(outputs)}")
    z, y = np.asarray(outputs["embedding"]), np.asarray(outputs["labels"]).ravel()
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"outputs: embedding must be (N, E) with one label per row, got {z.shape} and {y.shape}")
    return z, y


def subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of min(n, limit) rows, chosen at random under ``seed``."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def embedding_map(z: np.ndarray, y: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(xy, labels, what): the 2-D embedding itself, or the t-SNE of a random subsample of ``limit`` points."""
    if z.shape[1] == 2:
        return z.astype(float), y, "2-D embedding"
    idx = subsample(len(z), limit, seed)
    what = f"t-SNE of {z.shape[1]}-D embedding"
    if len(idx) < len(z):
        what += f", {len(idx)} of {len(z)} points"
    return tsne_2d(z[idx], seed=seed), y[idx], what
