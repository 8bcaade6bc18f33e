"""``plot_run(run_dir)``: every figure that applies to one run, written to run_dir/plots."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import first_line
from ..rundir import (
    DIAGNOSTICS,
    EVAL,
    KNN,
    METRICS,
    PLAN,
    PLAN_REPORT,
    PLOTS,
    PREDICTOR,
    SUMMARY,
    read_config_dict,
    read_diagnostics,
    read_json,
    read_knn,
    read_metrics,
    read_summary,
    run_format,
)
from ..rundir.parse import DAMAGED
from .embeddings import check_outputs, embedding_map, fig_scatter2d, fig_tsne
from .style import save_figure
from .training import fig_collapse_over_training, fig_knn, fig_loss_curves, fig_spectrum
from .worldmodel import fig_plan_success, fig_probe_table, fig_success_horizon


def run_title(run_dir: Path) -> str:
    """'name (preset, dataset)' from the run's config; just the folder name without one."""
    cfg = read_config_dict(run_dir)
    extra = [v for v in (cfg.get("preset"), (cfg.get("data") or {}).get("dataset")) if v]
    return f"{run_dir.name} ({', '.join(map(str, extra))})" if extra else run_dir.name


def plot_run(run_dir: Path | str, outputs: Mapping[str, np.ndarray] | None = None,
             class_names: Sequence[str] | None = None, out_dir: Path | str | None = None, window: int = 200,
             tsne_points: int = 10_000, seed: int = 0, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write the figures that apply to ``run_dir`` into ``out_dir`` (default run_dir/plots); see the
    :mod:`vicreg.plots` docstring for the list. ``outputs``: the test split's {"embedding": (N, E),
    "labels": (N,), ...}.
    Scatter plots are PNG only (thousands of points); ``formats`` applies to the line plots. Every figure is
    drawn before the first is written: a file of the run that cannot be read or drawn is one line naming it
    (ValueError), and no figure is left behind."""
    run_dir = Path(run_dir)
    run_format(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / PLOTS
    name = run_title(run_dir)
    drawn = [(stem, fig, formats) for stem, fig in _training_figures(run_dir, name, window)]
    drawn += [(stem, fig, formats) for stem, fig in _world_model_figures(run_dir, name)]
    if outputs is not None:
        z, y = check_outputs(outputs)
        xy, y, what = embedding_map(z, y, tsne_points, seed)
        if z.shape[1] == 2:
            drawn.append(("embedding2d", fig_scatter2d(xy, y, class_names, f"{name}: test split, {what}"), ("png",)))
        else:
            drawn.append(("tsne", fig_tsne(xy, y, class_names, f"{name}: test split, {what}"), ("png",)))
    written: list[Path] = []
    for stem, fig, fmts in drawn:
        written += save_figure(fig, out / stem, fmts)
    return written


def _drawn(path: Path, make: Callable[[], Figure]) -> Figure:
    """``make()``, the figure of the file at ``path``; what goes wrong drawing it (a hand-edited or damaged file:
    a missing key, a value of the wrong type) is a ValueError naming the file."""
    try:
        return make()
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        detail = first_line(e, 160) if isinstance(e, ValueError) else f"{type(e).__name__}: {first_line(e, 120)}"
        raise ValueError(f"{path} cannot be drawn ({detail}): {DAMAGED}") from None


def _training_figures(run_dir: Path, name: str, window: int) -> list[tuple[str, Figure]]:
    """Loss curves, k-NN over training, the last spectrum and collapse over training."""
    metrics, knn, entries = read_metrics(run_dir), read_knn(run_dir), read_diagnostics(run_dir)
    drawn = [("loss", _drawn(run_dir / METRICS, lambda: fig_loss_curves(metrics, window, title=name)))]
    if knn is not None:
        raw = _raw_pixels(run_dir)
        drawn.append(("knn", _drawn(run_dir / KNN, lambda: fig_knn(knn, raw, title=name))))
    if entries:
        drawn.append(("spectrum", _drawn(run_dir / DIAGNOSTICS, lambda: fig_spectrum(entries[-1], title=name))))
        drawn.append(("collapse", _drawn(run_dir / DIAGNOSTICS,
                                         lambda: fig_collapse_over_training(entries, title=name))))
    return drawn


def _raw_pixels(run_dir: Path) -> dict | None:
    """summary.json's k-NN accuracies of raw pixels ({k: %}), checked; None when there are none."""
    raw = read_summary(run_dir).get("knn_raw_pixels")
    numbers = isinstance(raw, dict) and all(type(v) in (int, float) for v in raw.values())
    if raw is not None and not numbers:
        raise ValueError(f"{run_dir / SUMMARY}: knn_raw_pixels={str(raw)[:60]} is not a mapping of k to accuracies "
                         f"({DAMAGED})")
    return raw


def _world_model_figures(run_dir: Path, name: str) -> list[tuple[str, Figure]]:
    """From a video run's predictor/eval.json and plan/plan.json, when they exist: what the embedding keeps
    and drops (the probes), planning success per method, and success against the planning horizon."""
    drawn: list[tuple[str, Figure]] = []
    evaluation, plan_path = run_dir / PREDICTOR / EVAL, run_dir / PLAN / PLAN_REPORT
    probes = read_json(evaluation).get("probes_r2")
    if probes:
        drawn.append(("probes", _drawn(evaluation, lambda: fig_probe_table({name: probes}))))
    plan = read_json(plan_path)
    if plan.get("results"):
        drawn.append(("plan_success", _drawn(plan_path, lambda: fig_plan_success(
            plan["results"], title=f"{name}\n{plan['plan']['planner']}, {plan['plan']['episodes']} episodes"))))
    if plan.get("success_by_horizon"):
        leaves = "leaves on" if plan.get("leaves") else "leaves off"
        drawn.append(("success_horizon", _drawn(plan_path, lambda: fig_success_horizon(
            {int(h): r["success_rate"] for h, r in plan["success_by_horizon"].items()},
            title=f"{name}\nworld model, {leaves}"))))
    return drawn
