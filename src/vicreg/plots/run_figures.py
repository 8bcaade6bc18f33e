"""``plot_run(run_dir)``: every figure that applies to one run, written to run_dir/plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..rundir import (
    EVAL,
    PLAN,
    PLAN_REPORT,
    PLOTS,
    PREDICTOR,
    read_config_dict,
    read_diagnostics,
    read_json,
    read_knn,
    read_metrics,
    read_summary,
    run_format,
)
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
    Scatter plots are PNG only (thousands of points); ``formats`` applies to the line plots."""
    run_dir = Path(run_dir)
    run_format(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / PLOTS
    name = run_title(run_dir)
    written = save_figure(fig_loss_curves(read_metrics(run_dir), window, title=name), out / "loss", formats)
    knn = read_knn(run_dir)
    if knn is not None:
        raw = read_summary(run_dir).get("knn_raw_pixels")
        written += save_figure(fig_knn(knn, raw, title=name), out / "knn", formats)
    entries = read_diagnostics(run_dir)
    if entries:
        written += save_figure(fig_spectrum(entries[-1], title=name), out / "spectrum", formats)
        written += save_figure(fig_collapse_over_training(entries, title=name), out / "collapse", formats)
    written += _world_model_figures(run_dir, out, name, formats)
    if outputs is not None:
        z, y = check_outputs(outputs)
        xy, y, what = embedding_map(z, y, tsne_points, seed)
        if z.shape[1] == 2:
            fig, stem = fig_scatter2d(xy, y, class_names, f"{name}: test split, {what}"), "embedding2d"
        else:
            fig, stem = fig_tsne(xy, y, class_names, f"{name}: test split, {what}"), "tsne"
        written += save_figure(fig, out / stem, ("png",))
    return written


def _world_model_figures(run_dir: Path, out: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """From a video run's predictor/eval.json and plan/plan.json, when they exist: what the embedding keeps
    and drops (the probes), planning success per method, and success against the planning horizon."""
    written: list[Path] = []
    probes = read_json(run_dir / PREDICTOR / EVAL).get("probes_r2")
    if probes:
        written += save_figure(fig_probe_table({name: probes}), out / "probes", formats)
    plan = read_json(run_dir / PLAN / PLAN_REPORT)
    if plan.get("results"):
        what = f"{name}\n{plan['plan']['planner']}, {plan['plan']['episodes']} episodes"
        written += save_figure(fig_plan_success(plan["results"], title=what), out / "plan_success", formats)
    if plan.get("success_by_horizon"):
        sweep = {int(h): r["success_rate"] for h, r in plan["success_by_horizon"].items()}
        leaves = "leaves on" if plan.get("leaves") else "leaves off"
        written += save_figure(fig_success_horizon(sweep, title=f"{name}\nworld model, {leaves}"),
                               out / "success_horizon", formats)
    return written
