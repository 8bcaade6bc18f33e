"""Figures from a VICReg run directory, and comparison figures for several runs.

``plot_run(run_dir)`` writes what applies to ``run_dir/plots``::

    loss.png/.svg        total loss and its three terms, averaged over windows of batches
    knn.png/.svg         k-NN top-1 on the test split during training, raw-pixel baseline dashed   (knn.csv)
    spectrum.png/.svg    singular values and per-dimension std of the last diagnostics entry     (diagnostics.jsonl)
    collapse.png/.svg    effective rank, dead dimensions and the mean variance hinge over training (diagnostics.jsonl)
    embedding2d.png      the test split's 2-D embedding coloured by class              (outputs given, E == 2)
    tsne.png             t-SNE of the test split's embedding coloured by class         (outputs given, E > 2)

The ``fig_*`` functions are pure: data in, ``matplotlib.figure.Figure`` out. They build figures without pyplot,
so there is no global figure registry to leak into and nothing to close: a figure is freed when unreferenced.
Saving goes through matplotlib's Agg (PNG) and SVG canvases; no display is needed.

Modules: ``style`` (figures, axes, colours, saving), ``training`` (one run's curves and diagnostics),
``embeddings`` (t-SNE and scatter plots), ``compare`` (several runs side by side), ``run_figures`` (``plot_run``).
The world model's figures (roll-outs, probes, planning) are in :mod:`vicreg.plots.worldmodel`.
"""

from .compare import fig_compare_embeddings, fig_compare_knn, fig_compare_loss, fig_compare_spectra
from .embeddings import fig_scatter2d, fig_tsne, tsne_2d
from .run_figures import plot_run
from .style import save_figure
from .training import (
    effective_window,
    fig_collapse_over_training,
    fig_knn,
    fig_loss_curves,
    fig_spectrum,
    windowed_mean,
)

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
    "save_figure",
    "tsne_2d",
    "windowed_mean",
]
