"""Figures of the world model (``vicreg eval-predictor``): roll-out error per horizon, and predicted frames
shown as the training frames nearest to the predicted embeddings."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from ..plots.style import figure

__all__ = ["fig_rollout_errors", "fig_predicted_frames"]

ROLLOUT_STYLES = {"predictor": ("predictor", "C0", "o-"), "last": ("next = last", "C3", "s--"),
                  "linear": ("linear extrapolation", "C2", "^:")}


def fig_rollout_errors(errors: Mapping[str, Mapping[int, float]], title: str = "") -> Figure:
    """Mean squared error of the predicted embedding against the roll-out horizon, one line per method."""
    fig = figure(6.4, 4.2)
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
    fig = figure(1.0 * total + 1.6, 2.1 * s + 0.6)
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
