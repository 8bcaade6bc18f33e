"""Figures of planning in an environment (``vicreg plan`` on collected episodes, ``benchmarks/pusht.py``): the
start, the goal and where every method ended with the object's path drawn on it; success against how far ahead
the goal is."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .style import figure

__all__ = ["fig_env_tasks", "fig_success_by_goal"]

METHOD_COLORS = {"world model": "C0", "pixels": "C1", "states": "C4", "oracle": "C2", "random": "C7", "replay": "C3"}


def _show(ax, frame: np.ndarray, title: str = "") -> None:
    ax.imshow(frame)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def fig_env_tasks(start: np.ndarray, goal: np.ndarray, finals: Mapping[str, np.ndarray],
                  paths: Mapping[str, np.ndarray], goal_xy: np.ndarray, scale: float | None,
                  success: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """One row per task: its start frame, its goal frame, then each method's last frame with the object's path
    (white to the method's colour, in frame pixels) and the goal position (a cross).

    start, goal: uint8 (n, H, W, 3); finals: method -> uint8 (n, H, W, 3); paths: method -> object (x, y) in the
    environment's units (n, T, 2); goal_xy: its goal position (n, 2); scale: frame pixels per unit (None: no paths);
    success: method -> bool (n,).
    """
    n, methods = len(start), list(finals)
    cols = 2 + len(methods)
    fig = figure(1.5 * cols + 0.4, 1.6 * n + 0.7)
    for i in range(n):
        _show(fig.add_subplot(n, cols, i * cols + 1), start[i], "start" if i == 0 else "")
        _show(fig.add_subplot(n, cols, i * cols + 2), goal[i], "goal" if i == 0 else "")
        for j, method in enumerate(methods):
            ax = fig.add_subplot(n, cols, i * cols + 3 + j)
            ok = bool(success[method][i])
            _show(ax, finals[method][i], method if i == 0 else "")
            for spine in ax.spines.values():
                spine.set_color("C2" if ok else "C3"), spine.set_linewidth(2)
            if scale is not None:
                xy = paths[method][i] * scale
                ax.plot(xy[:, 0], xy[:, 1], "-", color=METHOD_COLORS.get(method, "C0"), lw=1.2)
                ax.plot(xy[:1, 0], xy[:1, 1], "o", color="white", ms=3, mec="k", mew=0.5)
                ax.plot(goal_xy[i, 0] * scale, goal_xy[i, 1] * scale, "x", color="k", ms=5, mew=1.2)
    fig.suptitle((title + "\n" if title else "") + "each method's last frame with the block's path (dot: start, "
                 "x: goal position); green frame: success, red: not", fontsize=8)
    return fig


def fig_success_by_goal(by_goal: Mapping[int, Mapping[str, float]], title: str = "") -> Figure:
    """Success (%) of every method against the goal's distance in environment steps. by_goal: k -> method -> rate."""
    fig = figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ks = sorted(by_goal)
    methods = list(dict.fromkeys(m for k in ks for m in by_goal[k]))
    for method in methods:
        xs = [k for k in ks if method in by_goal[k]]
        ax.plot(xs, [100 * by_goal[k][method] for k in xs], "o-", color=METHOD_COLORS.get(method), label=method)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 105)
    ax.set_xlabel("goal distance (environment steps ahead in a held-out episode)")
    ax.set_ylabel("tasks reaching the goal pose (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "success against the goal distance", fontsize=9)
    return fig
