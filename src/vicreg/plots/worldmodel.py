"""Figures of the world model: roll-out error per horizon, predicted frames shown as the training frames nearest
to the predicted embeddings (``vicreg eval-predictor``), what the embedding keeps and drops (probe table), and
planning (``vicreg plan``): planned vs executed paths, success against the planning horizon."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from .style import figure

__all__ = ["fig_rollout_errors", "fig_predicted_frames", "fig_probe_table", "fig_trajectories", "fig_success_horizon",
           "fig_plan_success"]

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
    note = "; the small white squares are distractors, redrawn at random every frame" if distractors else ""
    caption = (f"top rows: {context} context frame{'s' if context > 1 else ''}, then the real next frames (green); "
               f"bottom rows: the training frame nearest to each predicted embedding (blue){note}")
    chars = int(15 * (1.0 * total + 1.6))  # characters of 8 pt text across the figure
    lines = textwrap.wrap(title, chars) + textwrap.wrap(caption, chars)
    height = 2.1 * s + 0.5 + 0.17 * len(lines)
    fig = figure(1.0 * total + 1.6, height)
    fig.set_layout_engine("none")  # a fixed grid: constrained layout over ~100 small axes takes seconds
    grid = fig.add_gridspec(2 * s, total, hspace=0.15, wspace=0.05, left=0.08, right=0.98, bottom=0.02,
                            top=1 - (0.45 + 0.17 * len(lines)) / height)

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
    fig.suptitle("\n".join(lines), fontsize=8)
    return fig


PROBE_NOTES = {"position": "keep", "velocity": "keep", "distractors": "drop"}


def fig_probe_table(setups: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]], seeds: int = 1) -> Figure:
    """What each training set-up's embedding keeps and drops: linear-probe R^2 per target (position and
    velocity should be kept, the leaves dropped), the embedding beside raw pixels, mean +- std over seeds.

    setups: {set-up: {target: {"embedding" | "raw pixels": {"mean", "std"}}}} (a plain float is a mean)."""
    names = list(setups)
    targets = list(next(iter(setups.values())))
    fig = figure(2.2 + 2.6 * len(targets), 3.8)
    width = 0.8 / (len(names) + 1)

    def stat(v) -> tuple[float, float]:
        return (float(v["mean"]), float(v.get("std", 0.0))) if isinstance(v, Mapping) else (float(v), 0.0)

    for i, target in enumerate(targets):
        ax = fig.add_subplot(1, len(targets), i + 1)
        bars = [(name, *stat(setups[name][target]["embedding"])) for name in names]
        bars.append(("raw pixels", *stat(setups[names[0]][target]["raw pixels"])))
        for j, (label, mean, std) in enumerate(bars):
            color = "0.6" if label == "raw pixels" else f"C{j}"
            ax.bar(j * width, mean, width * 0.9, yerr=std if seeds > 1 else None, color=color, capsize=3,
                   label=label if i == 0 else None)
            ax.text(j * width, max(mean, 0) + (std if seeds > 1 else 0) + 0.02, f"{mean:.2f}", ha="center", fontsize=7)
        ax.set_xticks([])
        ax.set_ylim(min(0.0, min(b[1] for b in bars) - 0.05), 1.08)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"{target} ({PROBE_NOTES.get(target, '')})", fontsize=9)
        if i == 0:
            ax.set_ylabel("linear-probe R^2 (test frames)")
    fig.legend(loc="outside lower center", ncol=len(names) + 1, fontsize=8, frameon=False)
    spread = f", mean +- std over {seeds} seeds" if seeds > 1 else ""
    drops = " and drops (the leaves)" if "distractors" in targets else ""  # scenes without leaves: nothing to drop
    fig.suptitle(f"what the embedding keeps (position, velocity){drops}{spread}", fontsize=9)
    return fig


PATH_COLORS = {"world model": "C0", "pixels": "C1", "oracle": "C2", "random": "C7"}


def fig_trajectories(start: np.ndarray, goal: np.ndarray, outcomes: Mapping, shown, sprite_size: int,
                     success_distance: float, title: str = "") -> Figure:
    """One panel per episode: its first frame and its goal frame blended, the path every method's pushes
    took the sprite's centre along (closed loop, solid), the path the world model's first plan would have
    taken executed blind (dashed), and the success circle around the goal.

    start, goal: uint8 (S, C, H, W); outcomes: {method: Outcome}; shown: the S episode indices."""
    start, goal = np.asarray(start), np.asarray(goal)
    shown = [int(i) for i in shown]
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig = figure(3.3 * cols, 3.3 * rows + 0.7)
    half = sprite_size / 2 - 0.5
    for j, i in enumerate(shown):
        ax = fig.add_subplot(rows, cols, j + 1)
        ax.imshow(np.maximum(0.45 * start[j, 0], 0.8 * goal[j, 0]), cmap="gray", vmin=0, vmax=255)
        for method, o in outcomes.items():
            path = np.asarray(o.path[i]) + half
            color = PATH_COLORS.get(method, None)
            ax.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.4, marker=".", ms=3, label=method)
            if method == "world model":
                planned = np.asarray(o.planned[i]) + half
                ax.plot(planned[:, 0], planned[:, 1], "--", color=color, lw=1.0, label="world model's first plan")
        any_outcome = next(iter(outcomes.values()))
        g = np.asarray(any_outcome.goal[i]) + half
        ax.plot(*g, "*", color="gold", ms=12, mec="k", label="goal")
        ax.add_patch(Circle(tuple(g), success_distance, fill=False, color="gold", lw=1))
        p0 = np.asarray(any_outcome.path[i, 0]) + half
        ax.plot(*p0, "o", color="w", ms=5, mec="k", label="start")
        ax.set_xticks([]), ax.set_yticks([])
        reached = [m for m, o in outcomes.items() if bool(o.success[i])]
        ax.set_title(f"episode {i}; reached: {', '.join(reached) or 'none'}", fontsize=7)
        if j == 0:
            handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle((title + "\n" if title else "") + "the sprite's centre: closed-loop paths (solid), the world "
                 "model's first plan executed blind (dashed); background: the frame of the first plan (dim) and "
                 "the goal frame", fontsize=8)
    return fig


def fig_success_horizon(success: Mapping[int, float], title: str = "") -> Figure:
    """Success rate (%) of the closed-loop planner against its planning horizon."""
    fig = figure(5.4, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    hs = sorted(success)
    ax.plot(hs, [100 * success[h] for h in hs], "o-", color="C0")
    for h in hs:
        ax.annotate(f"{100 * success[h]:.1f}%", (h, 100 * success[h]), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=8)
    ax.set_xticks(hs, [str(h) for h in hs])
    ax.set_ylim(0, 112)
    ax.set_xlabel("planning horizon (pushes predicted ahead)")
    ax.set_ylabel("episodes reaching the goal (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "success against the planning horizon", fontsize=9)
    return fig


def fig_plan_success(results: Mapping[str, Mapping[str, Mapping[str, float]]], title: str = "") -> Figure:
    """Success rate (%) of every method, leaves on and off side by side. results: plan.json's "results"
    ({"leaves on" | "leaves off": {method: {"success_rate", "mean_final_distance", ...}}})."""
    fig = figure(6.4, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    settings = list(results)
    methods = list(dict.fromkeys(m for table in results.values() for m in table))
    width = 0.8 / max(len(settings), 1)
    for j, setting in enumerate(settings):
        xs = [i + j * width for i, m in enumerate(methods) if m in results[setting]]
        ys = [100 * results[setting][m]["success_rate"] for m in methods if m in results[setting]]
        ax.bar(xs, ys, width * 0.9, label=setting, color=f"C{j}", alpha=0.85)
        for x, y in zip(xs, ys, strict=True):
            ax.text(x, y + 1.5, f"{y:.1f}", ha="center", fontsize=7)  # 99.5 is not 100
    ax.set_xticks([i + width * (len(settings) - 1) / 2 for i in range(len(methods))], methods)
    ax.set_ylim(0, 110)
    ax.set_ylabel("episodes reaching the goal (%)")
    ax.legend(fontsize=8)
    ax.set_title(title or "planning toward a goal frame", fontsize=9)
    return fig
