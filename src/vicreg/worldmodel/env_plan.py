"""``vicreg plan`` on a run trained on collected episodes (``data.dataset episodes``): closed-loop planning in the
environment itself (Push-T), toward goal frames taken from held-out episodes.

A task is a held-out (test split) episode and a time in it: the environment is reset to the recorded state
``context - 1`` kept frames before the start and the recorded actions are replayed up to the start, so that the
planner's first frames are ones the environment produced; the goal is the frame of the recorded state
``plan.goal_steps`` environment steps after the start (rendered by the environment from that state). Every method
then gets as many environment steps as the episode took to get there. Success, as the environment's spec states it
(:mod:`vicreg.envs.specs`; Push-T: DINO-WM's, the block within 20 px and 20 degrees of its goal pose); the agent's
distance to its goal position is reported too. Methods, all on the same tasks:

- ``world model``: CEM, MPPI or gradient descent over the predictor's roll-outs of the encoder's embeddings,
  re-planning from the frames the environment returns;
- ``pixels``: the same predictor trained on pooled pixels (what the encoder adds);
- ``states``: the same predictor trained on the true poses (:mod:`.state_baseline`: a perfect encoder);
- ``oracle``: the same planner with the environment itself as the model, from the true state (:mod:`.env_oracle`:
  the ceiling);
- ``random``: actions drawn uniformly from the planners' box (the floor);
- ``replay``: the episode's own actions replayed open loop (reaches the goal up to the simulator's determinism and
  the contact state a reset cannot restore: a check of the protocol).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..config import PlanConfig, save_yaml
from ..data.episodes import load_episode_sequences
from ..data.video import Sequences
from ..envs import EpisodeFolder
from ..envs.action_units import action_units
from ..envs.simulate import Simulator
from ..envs.specs import spec_of
from ..loaded_run import LoadedRun
from ..rundir import CONFIG, PLAN, PLAN_REPORT, write_json
from .closed_loop import ModelController, RandomController
from .env_figures import env_plan_figures
from .env_oracle import EnvOracle
from .env_tasks import EnvEpisodes, plan_tasks, score_states
from .fit import FitResult
from .pixel_baseline import pixel_embedding, pixel_predictor
from .predictor_commands import load_run_with_predictor
from .sequences import embed_frames
from .state_baseline import state_features, state_predictor

__all__ = ["ENV_METHODS", "SHOWN", "EnvOutcome", "format_env_plan_table", "plan_env_run"]

ENV_METHODS = ("world model", "pixels", "states", "oracle", "random", "replay")
SHOWN = 4  # tasks whose frames and paths are kept for the pictures


@dataclass
class EnvOutcome:
    """One method on the tasks: its summary (plan.json) and, for the first SHOWN tasks, the true states after
    every kept step from the start on (SHOWN, goal_k + 1, S), the last frames, uint8 (SHOWN, H, W, 3), and for a
    predictor's method its first plan (SHOWN, horizon, A) with what the predictor expected of it (standardised
    embeddings, (SHOWN, horizon, E))."""

    summary: dict
    path: np.ndarray
    final_frames: np.ndarray
    first_plan: torch.Tensor | None = None
    imagined: torch.Tensor | None = None


@dataclass
class _Tasks:
    """What every method is run on: the environments, the held-out sequences and the tasks in them, the goals."""

    envs: EnvEpisodes
    test: Sequences
    tasks: np.ndarray
    goal_k: int
    context: int
    goal_frames: torch.Tensor
    goal_states: np.ndarray


def _controller(method: str, t: _Tasks, cfg: PlanConfig, run: LoadedRun, fit: FitResult, baselines: dict,
                sim: Simulator | None):
    """(controller, what it observes after every step (a function of nothing), its goal) for ``method``."""
    envs, dev = t.envs, run.device
    if method in ("world model", "pixels"):
        encode = partial(embed_frames, run) if method == "world model" else (lambda f: pixel_embedding(f).to(dev))
        model = fit if method == "world model" else baselines["pixels"]
        return ModelController(encode, model.model, model.norm, cfg, 1.0, dev), envs.observe, t.goal_frames
    if method == "states":
        features = partial(state_features, spec=envs.spec)
        controller = ModelController(lambda x: x.to(dev), baselines["states"].model, baselines["states"].norm, cfg,
                                     1.0, dev)
        return controller, lambda: features(envs.true_states()), features(t.goal_states)
    if method == "oracle":
        return EnvOracle(cfg, sim, fit.action_dim), None, t.goal_states
    if method == "random":
        return RandomController(cfg, 1.0, fit.action_dim), None, None
    return None, None, None  # replay


def _run_method(method: str, t: _Tasks, cfg: PlanConfig, controller, view, goal) -> EnvOutcome:
    envs, test, context = t.envs, t.test, t.context
    rows, starts = t.tasks[:, 0], t.tasks[:, 1]
    envs.reset(test.states[rows, starts - context + 1].numpy())

    def observe(action) -> None:
        if controller is not None:
            controller.observe(view() if view is not None else None, action)

    if controller is not None:
        controller.start(envs, goal)
    observe(None)
    for i in range(context - 1):  # the recorded actions up to the start: the context, as the environment makes it
        a = test.actions[rows, starts - context + 1 + i]
        envs.step(a)
        observe(a)
    path = [envs.true_states()[:SHOWN]]
    seconds, actions, first, imagined = [], None, None, None
    for step in range(t.goal_k):
        if method == "replay":
            a = test.actions[rows, starts + step]
        else:
            if step % cfg.replan_every == 0:
                t0 = time.perf_counter()
                actions = controller.plan()
                seconds.append(time.perf_counter() - t0)
                if step == 0 and isinstance(controller, ModelController):
                    first = actions[:SHOWN]
                    imagined = controller.imagine(first).cpu()
            a = actions[:, step % cfg.replan_every]
        envs.step(a)
        observe(a)
        path.append(envs.true_states()[:SHOWN])
    scores = score_states(envs.true_states(), t.goal_states, envs.spec)
    summary = {"episodes": len(t.tasks), "success_rate": float(scores["success"].mean())}
    for key, values in scores.items():
        if key != "success":
            summary[f"mean_{key}"] = float(values.mean())
    calls = seconds[1:] if len(seconds) > 1 else seconds
    summary["plan_seconds"] = float(np.mean(calls)) if calls else 0.0
    return EnvOutcome(summary, np.stack(path, 1), np.stack(envs.frames[:SHOWN]), first, imagined)


def _baselines(methods, run: LoadedRun, fit: FitResult, spec, out: Path, log) -> dict:
    found = {}
    if "pixels" in methods:
        found["pixels"] = pixel_predictor(run, fit, out, log)
    if "states" in methods:
        found["states"] = state_predictor(run, fit, spec, out, log)
    return found


def plan_env_run(run_dir: Path | str, cfg: PlanConfig, methods=ENV_METHODS, log=print) -> dict:
    """Plan in the environment of a run on collected episodes with each of ``methods`` on ``cfg.episodes`` tasks
    (module docstring); writes run_dir/plan/ (plan.json, config.yaml, the pictures of
    :mod:`.env_figures`) and returns plan.json's content."""
    run_dir = Path(run_dir)
    unknown = [m for m in methods if m not in ENV_METHODS]
    if unknown:
        raise ValueError(f"method {unknown[0]!r} is not available in an environment: expected some of "
                         f"{', '.join(ENV_METHODS)}")
    start = time.perf_counter()
    run, fit = load_run_with_predictor(run_dir, cfg.device)
    if fit.action_dim == 0:
        raise ValueError(f"the predictor of {run_dir} takes no actions: retrain it with --predictor.use_actions true")
    data = run.cfg.data
    skip = data.frame_skip
    if cfg.goal_steps % skip:
        raise ValueError(f"plan.goal_steps={cfg.goal_steps} is not a multiple of the run's data.frame_skip={skip}")
    test = load_episode_sequences(data, "test")
    if test.states is None:
        raise ValueError(f"the episodes in {data.data_dir} hold no states: goals and success need them")
    meta = EpisodeFolder(data.data_dir).meta
    spec = spec_of(meta["env_id"])
    out = run_dir / PLAN
    out.mkdir(exist_ok=True)
    baselines = _baselines(methods, run, fit, spec, out, log)
    goal_k, context = cfg.goal_steps // skip, fit.cfg.context
    tasks = plan_tasks(len(test), test.frames.shape[1], context, goal_k, cfg.episodes, cfg.seed)
    units = action_units(meta, spec, data.relative_actions)
    envs = EnvEpisodes(meta["env_id"], cfg.episodes, test.frames.shape[-1], skip, units)
    sim = Simulator(meta["env_id"], cfg.workers) if "oracle" in methods else None
    try:
        goal_states = test.states[tasks[:, 0], tasks[:, 1] + goal_k].numpy()
        goal_frames = envs.render(goal_states)
        t = _Tasks(envs, test, tasks, goal_k, context, goal_frames, goal_states)
        shown_goal = np.stack(envs.frames[:SHOWN])
        envs.reset(test.states[tasks[:SHOWN, 0], tasks[:SHOWN, 1]].numpy())
        shown_start = np.stack(envs.frames[:SHOWN])
        results, outcomes = {}, {}
        for method in methods:
            t0 = time.perf_counter()
            outcomes[method] = outcome = _run_method(method, t, cfg, *_controller(method, t, cfg, run, fit, baselines,
                                                                                   sim))
            results[method] = outcome.summary
            log(f"{method}: success {100 * outcome.summary['success_rate']:5.1f} % of {cfg.episodes} tasks, "
                f"object {outcome.summary['mean_object_distance']:.1f} px from its goal on average "
                f"({time.perf_counter() - t0:.1f} s)")
        title = f"{meta['env_id']}, goal {cfg.goal_steps} steps ahead"
        figures = env_plan_figures(outcomes, shown_start, shown_goal, goal_states, spec, envs, run, fit, out, title)
    finally:
        envs.close()
        if sim is not None:
            sim.close()
    save_yaml(cfg, out / CONFIG)
    report = {"run_dir": str(run_dir), "env_id": meta["env_id"], "plan": asdict(cfg), "context": context,
              "goal_steps": cfg.goal_steps, "frame_skip": skip, "relative_actions": data.relative_actions,
              "success": {"object_distance": spec.success_distance, "object_angle_rad": spec.success_angle},
              "results": results, "figures": [str(p) for p in figures], "device": str(run.device),
              "seconds": round(time.perf_counter() - start, 2)}
    write_json(out / PLAN_REPORT, report)
    return report


def format_env_plan_table(report: dict) -> str:
    s = report["success"]
    lines = [f"planning in {report['env_id']}: {report['plan']['episodes']} tasks, goal {report['goal_steps']} "
             f"steps ahead; success = object within {s['object_distance']:g} px and "
             f"{np.degrees(s['object_angle_rad']):.0f} degrees of its goal pose",
             f"{'':<14}{'success':>9}{'object px':>11}{'angle deg':>11}{'agent px':>10}{'s per plan':>12}"]
    for method, r in report["results"].items():
        lines.append(f"{method:<14}{100 * r['success_rate']:>8.1f}%{r['mean_object_distance']:>11.1f}"
                     f"{np.degrees(r.get('mean_object_angle', float('nan'))):>11.1f}"
                     f"{r.get('mean_agent_distance', float('nan')):>10.1f}{r['plan_seconds']:>12.3f}")
    return "\n".join(lines)
