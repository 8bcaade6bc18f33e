"""``vicreg plan RUN_DIR``: plan toward goal frames with the run's world model, closed loop in the sprite
simulator, against a pixel-space world model, an oracle and random pushes, with the leaves on and off.

Writes ``runs/<run>/plan/``: config.yaml (the PlanConfig), plan.json (the table, the settings, the seconds),
pixel_predictor.pt (the pixel baseline's predictor, trained once and reused), trajectories.png (planned vs
executed paths over the start and goal frames) and success_horizon.png (success against the plan's horizon).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from ..config import PlanConfig, config_to_dict, plan_config, save_yaml
from ..loaded_run import LoadedRun
from ..plots.style import save_figure
from ..plots.worldmodel import fig_success_horizon, fig_trajectories
from ..rundir import CONFIG, PLAN, PLAN_REPORT, PREDICTOR, write_json
from .closed_loop import ModelController, OracleController, Outcome, RandomController, run_episodes
from .env import SpriteEnv
from .env_plan import ENV_METHODS, format_env_plan_table, plan_env_run
from .fit import FitResult
from .pixel_baseline import pixel_embedding, pixel_predictor
from .predictor_commands import load_run_with_predictor
from .sequences import check_video_run, embed_frames

__all__ = ["METHODS", "WorldModel", "load_world_model", "plan_pushes", "pixel_embedding",
           "plan_run", "format_plan_table"]

Log = Callable[[str], None]
METHODS = ("world model", "pixels", "oracle", "random")


@dataclass
class WorldModel:
    """A run's frame encoder and its action-conditioned predictor, ready to plan with."""

    run: LoadedRun
    predictor: FitResult

    @property
    def context(self) -> int:
        return self.predictor.cfg.context


def load_world_model(run_dir: Path | str, device: str = "auto") -> WorldModel:
    """The encoder of a run on pushed sprites and the predictor trained on it (with the encoder that joint
    training left, if any); raises a one-line ValueError for a run it cannot plan with."""
    run_dir = Path(run_dir)
    run_cfg = check_video_run(run_dir)
    if run_cfg.data.dataset != "sprites" or not run_cfg.data.video.controlled:
        controlled = str(run_cfg.data.video.controlled).lower()
        raise ValueError(f"{run_dir} was not trained on pushed sprites ({run_dir / CONFIG}: data.dataset="
                         f"{run_cfg.data.dataset}, data.video.controlled={controlled}): planning needs a run with "
                         f"actions (vicreg train --preset sprites-control, then vicreg train-predictor)")
    run, fit = load_run_with_predictor(run_dir, device)
    if fit.action_dim == 0:
        raise ValueError(f"the predictor in {run_dir / PREDICTOR} takes no pushes (predictor.use_actions false): "
                         f"retrain it with --predictor.use_actions true to plan with it")
    return WorldModel(run, fit)


def plan_pushes(world: WorldModel, frames: Tensor, pushes: Tensor, goal: Tensor,
                cfg: PlanConfig | None = None) -> Tensor:
    """The pushes (H, 2) whose predicted embeddings come nearest to the goal frame's, from the last k frames.

    frames: uint8 (k, C, H, W), the last ``world.context`` frames of an episode, oldest first; pushes: (k - 1, 2),
    the push applied between each of them and the next; goal: uint8 (C, H, W). A leading batch dimension on all
    three plans N episodes at once (one batched roll-out per planner iteration) and returns (N, H, 2).
    ``cfg``: the planner and its settings (default PlanConfig(): CEM over 4 pushes); it plans on the world
    model's device (``cfg.device`` is for ``vicreg plan``, which loads the world model)."""
    cfg = plan_config(config_to_dict(cfg or PlanConfig()))  # validated: settings built in Python skip the CLI
    given = f"{tuple(frames.shape)}, {tuple(pushes.shape)} and {tuple(goal.shape)}"
    single = frames.ndim == 4
    if single:
        frames, pushes, goal = frames[None], pushes[None], goal[None]
    k = world.context
    if frames.ndim != 5 or frames.shape[1] != k or pushes.shape != (frames.shape[0], k - 1, 2) \
            or goal.shape != (frames.shape[0], *frames.shape[2:]):
        raise ValueError(f"plan_pushes needs the last {k} frames (k, C, H, W), the {k - 1} pushes between them "
                         f"(k - 1, 2) and a goal frame (C, H, W) (or all with a batch dimension), got {given}")
    fit = world.predictor
    controller = ModelController(partial(embed_frames, world.run), fit.model, fit.norm, cfg,
                                 float(world.run.cfg.data.video.push), world.run.device)
    controller.start(None, goal)
    for i in range(k):
        controller.observe(frames[:, i], pushes[:, i - 1].float() if i > 0 else None)
    actions = controller.plan()
    return actions[0] if single else actions


def _controller(method: str, cfg: PlanConfig, run: LoadedRun, fit: FitResult, pixel: FitResult, bound: float):
    if method == "world model":
        return ModelController(partial(embed_frames, run), fit.model, fit.norm, cfg, bound, run.device)
    if method == "pixels":
        return ModelController(lambda f: pixel_embedding(f).to(run.device), pixel.model, pixel.norm, cfg, bound,
                               run.device)
    if method == "oracle":
        return OracleController(cfg, bound, 2, torch.device("cpu"))
    return RandomController(cfg, bound)


def _leaves(count: int) -> str:
    return f"leaves {'on' if count else 'off'}"


def _episodes(run: LoadedRun, cfg: PlanConfig, leaves: int) -> SpriteEnv:
    return SpriteEnv(run.cfg.data.video, cfg.episodes, cfg.seed, leaves, run.cfg.data.data_dir)


def plan_run(run_dir: Path | str, cfg: PlanConfig | None = None, methods: Sequence[str] | None = None,
             horizons: Sequence[int] = (), log: Log = print) -> dict:
    """Plan toward goal frames on ``cfg.episodes`` seeded episodes with each of ``methods`` (world model,
    pixels, oracle, random; default all), leaves on (the run's) and off; then the world model with the leaves on
    at each of ``horizons``. Writes run_dir/plan/ (module docstring) and returns plan.json's content. A run on
    collected episodes plans in its environment instead (:mod:`vicreg.worldmodel.env_plan`)."""
    from tqdm.auto import tqdm

    cfg = plan_config(config_to_dict(cfg or PlanConfig()))
    run_dir = Path(run_dir)
    if check_video_run(run_dir).data.dataset == "episodes":
        if horizons:
            raise ValueError("--horizons is for the sprite world; in an environment set --plan.horizon")
        return plan_env_run(run_dir, cfg, methods or ENV_METHODS, log)
    methods = methods or METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"method {unknown[0]!r} is not valid: expected some of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    world = load_world_model(run_dir, cfg.device)
    run, fit = world.run, world.predictor
    out = run_dir / PLAN
    out.mkdir(exist_ok=True)
    save_yaml(cfg, out / CONFIG)
    pixel = pixel_predictor(run, fit, out, log) if "pixels" in methods else None
    k, leaves = fit.cfg.context, run.cfg.data.video.distractors
    bound = float(run.cfg.data.video.push)
    # (method, leaves, horizon): every method with the leaves on and off, then the world model at each horizon
    settings = [(m, on, None) for on in ((leaves, 0) if leaves else (0,)) for m in methods]
    settings += [("world model", leaves, h) for h in horizons if "world model" in methods]
    bar = tqdm(total=len(settings) * cfg.steps, desc="planning", unit="step", disable=None, dynamic_ncols=True)
    results: dict[str, dict[str, dict]] = {}
    sweep: dict[str, dict] = {}
    outcomes: dict[str, Outcome] = {}
    for method, on, horizon in settings:
        c = cfg if horizon is None else replace(cfg, horizon=horizon, replan_every=min(cfg.replan_every, horizon))
        what = f"{method}, {_leaves(on)}" + ("" if horizon is None else f", horizon {horizon}")
        bar.set_description(what)
        outcome = run_episodes(_episodes(run, c, on), _controller(method, c, run, fit, pixel, bound), c, k,
                               progress=bar.update)
        summary = outcome.summary()
        if horizon is None:
            results.setdefault(_leaves(on), {})[method] = summary
            outcomes[f"{method}, {_leaves(on)}"] = outcome
        else:
            sweep[str(horizon)] = summary
        bar.write(f"{what}: success {100 * summary['success_rate']:5.1f} %, mean final distance "
                  f"{summary['mean_final_distance']:5.2f} px, {summary['plan_seconds']:.3f} s per plan")
    bar.close()
    paths = _figures(run_dir, run, outcomes, sweep, cfg, _leaves(leaves), out)
    report = {"run_dir": str(run_dir), "plan": asdict(cfg), "context": k, "leaves": leaves,
              "success_distance_px": cfg.success_distance, "results": results,
              "success_by_horizon": sweep, "figures": [str(p) for p in paths], "device": str(run.device),
              "seconds": round(time.perf_counter() - t0, 2)}
    write_json(out / PLAN_REPORT, report)
    return report


def _figures(run_dir: Path, run: LoadedRun, outcomes: dict[str, Outcome], sweep: dict, cfg: PlanConfig,
             leaves: str, out: Path) -> list[Path]:
    shown_outcomes = {m.split(",")[0]: o for m, o in outcomes.items() if m.endswith(leaves)}
    paths: list[Path] = []
    if "world model" in shown_outcomes:
        shown = torch.arange(min(6, cfg.episodes))
        first = shown_outcomes["world model"]
        paths += save_figure(fig_trajectories(first.first_frames[shown], first.goal_frames[shown], shown_outcomes,
                                              shown, run.cfg.data.video.sprite_size, cfg.success_distance,
                                              title=f"{run_dir.name}: {cfg.planner}, horizon {cfg.horizon}, {leaves}"),
                             out / "trajectories", formats=("png",))
    if sweep:
        paths += save_figure(fig_success_horizon({int(h): s["success_rate"] for h, s in sweep.items()},
                                                 title=f"{run_dir.name}: world model ({cfg.planner}), {leaves}, "
                                                       f"{cfg.episodes} episodes"),
                             out / "success_horizon", formats=("png",))
    return paths


def format_plan_table(report: dict) -> str:
    """Success rate, mean final distance and planning time of every method, leaves on and off (in an
    environment: success, the object's and the agent's distances to their goal)."""
    if "env_id" in report:
        return format_env_plan_table(report)
    lines = [f"planning toward a goal frame: {report['plan']['episodes']} episodes of {report['plan']['steps']} "
             f"pushes, {report['plan']['planner']} over {report['plan']['horizon']} steps, success = within "
             f"{report['success_distance_px']:g} px of the goal",
             f"{'':<24}{'success':>9}{'final distance':>16}{'s per plan':>12}{'ms per episode':>16}"]
    for leaves, table in report["results"].items():
        for method, r in table.items():
            lines.append(f"{method + ', ' + leaves:<24}{100 * r['success_rate']:>8.1f}%"
                         f"{r['mean_final_distance']:>13.2f} px{r['plan_seconds']:>12.3f}"
                         f"{r['plan_ms_per_episode']:>16.2f}")
    if report["success_by_horizon"]:
        lines += ["", f"world model, {_leaves(report['leaves'])}: success by planning horizon"]
        lines += [f"  horizon {h:>3}: {100 * r['success_rate']:5.1f} %"
                  for h, r in report["success_by_horizon"].items()]
    return "\n".join(lines)
