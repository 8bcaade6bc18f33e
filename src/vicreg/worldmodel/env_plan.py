"""``vicreg plan`` on a run trained on collected episodes (``data.dataset episodes``): closed-loop planning in the
environment itself (Push-T), toward goal frames taken from held-out episodes.

A task is a held-out (test split) episode and a time in it: the environment is reset to the recorded state
``context - 1`` kept frames before the start and the recorded actions are replayed up to the start, so that the
planner's first frames are ones the environment produced; the goal is the frame of the recorded state
``plan.goal_steps`` environment steps after the start (rendered by the environment from that state). Every method
then gets as many environment steps as the episode took to get there. Success, as the environment's spec states it
(:mod:`vicreg.envs.specs`; Push-T: DINO-WM's, the block within 20 px and 20 degrees of its goal pose); the agent's
distance to its goal position is reported too. Methods: the world model (CEM, MPPI or gradient descent over the
predictor's roll-outs, re-planning from the frames the environment returns), the same predictor trained on pooled
pixels (what the encoder adds), random actions (the floor), and the
episode's own actions replayed open loop (reaches the goal up to the simulator's determinism and the velocities a
reset to a state cannot restore: a check of the protocol).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import PlanConfig, save_yaml
from ..data.episodes import load_episode_sequences
from ..envs import EpisodeFolder, open_env
from ..envs.episodes import unscale_actions
from ..envs.specs import EnvSpec, spec_of
from ..image_ops import resize_uint8
from ..rundir import CONFIG, PLAN, PLAN_REPORT, write_json
from .closed_loop import ModelController, RandomController
from .pixel_baseline import pixel_embedding, pixel_predictor
from .predictor_commands import load_run_with_predictor
from .sequences import embed_frames

__all__ = ["ENV_METHODS", "EnvEpisodes", "format_env_plan_table", "plan_env_run", "score_states"]

ENV_METHODS = ("world model", "pixels", "random", "replay")


class EnvEpisodes:
    """N environments stepped side by side; actions come as the predictor sees them ((N, k A) in [-1, 1]: the k
    skipped steps' actions scaled from the action box) and are executed as k environment steps each."""

    def __init__(self, env_id: str, n: int, size: int, skip: int, low: np.ndarray, high: np.ndarray):
        self.envs = [open_env(env_id) for _ in range(n)]
        self.size, self.skip, self.low, self.high = size, skip, low, high
        self.frames: list[np.ndarray] = []
        self.states: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, states: np.ndarray) -> None:
        got = [env.reset(state=s) for env, s in zip(self.envs, states)]
        self.frames, self.states = [g[0] for g in got], [g[1] for g in got]

    def render(self, states: np.ndarray) -> Tensor:
        """The frames of ``states`` (as observations), leaving the environments in those states."""
        self.reset(states)
        return self.observe()

    def observe(self) -> Tensor:
        frames = torch.from_numpy(np.stack(self.frames)).permute(0, 3, 1, 2)
        return resize_uint8(frames, self.size)

    def step(self, actions: Tensor) -> None:
        a = unscale_actions(actions.detach().cpu().numpy().reshape(len(self), self.skip, -1).clip(-1, 1),
                            self.low, self.high)
        for i, env in enumerate(self.envs):
            for j in range(self.skip):
                self.frames[i], self.states[i], _ = env.step(a[i, j])

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _angle(a: np.ndarray) -> np.ndarray:
    return np.abs((a + np.pi) % (2 * np.pi) - np.pi)


def score_states(states: np.ndarray, goals: np.ndarray, spec: EnvSpec) -> dict[str, np.ndarray]:
    """Per episode: the object's distance and angle to its goal pose, the agent's distance, and success."""
    obj = list(spec.object_xy)
    out = {"object_distance": np.linalg.norm(states[:, obj] - goals[:, obj], axis=1)}
    ok = out["object_distance"] < spec.success_distance
    if spec.object_angle is not None:
        out["object_angle"] = _angle(states[:, spec.object_angle] - goals[:, spec.object_angle])
        ok &= out["object_angle"] < spec.success_angle
    if spec.agent_xy is not None:
        out["agent_distance"] = np.linalg.norm(states[:, list(spec.agent_xy)] - goals[:, list(spec.agent_xy)], axis=1)
    out["success"] = ok
    return out


def _tasks(n_seq: int, length: int, context: int, goal_k: int, count: int, seed: int) -> np.ndarray:
    """(count, 2): a held-out sequence and a start time in it (kept frames), with room for the context before
    and the goal after; seeded, spread over the sequences."""
    first, last = context - 1, length - 1 - goal_k
    if last < first:
        raise ValueError(f"the held-out sequences have {length} kept frames: too few for a context of {context} "
                         f"and a goal {goal_k} kept frames ahead (lower plan.goal_steps or collect longer episodes)")
    rng = np.random.default_rng(seed)
    seqs = np.arange(count) % n_seq
    return np.stack([seqs, rng.integers(first, last + 1, size=count)], axis=1)


def _run_method(method: str, envs: EnvEpisodes, test, tasks: np.ndarray, goal_k: int, context: int,
                cfg: PlanConfig, run, fit, pixel, goal_frames: Tensor, goal_states: np.ndarray) -> dict:
    rows, starts = tasks[:, 0], tasks[:, 1]
    envs.reset(test.states[rows, starts - context + 1].numpy())
    controller = None
    if method == "world model":
        controller = ModelController(partial(embed_frames, run), fit.model, fit.norm, cfg, 1.0, run.device)
    elif method == "pixels":
        controller = ModelController(lambda f: pixel_embedding(f).to(run.device), pixel.model, pixel.norm, cfg,
                                     1.0, run.device)
    elif method == "random":
        controller = RandomController(cfg, 1.0, fit.action_dim)
    if controller is not None:
        controller.start(envs, goal_frames)
        controller.observe(envs.observe(), None)
    for i in range(context - 1):  # the recorded actions up to the start: the context, as the environment makes it
        a = test.actions[rows, starts - context + 1 + i]
        envs.step(a)
        if controller is not None:
            controller.observe(envs.observe(), a)
    seconds, actions = [], None
    for t in range(goal_k):
        if method == "replay":
            a = test.actions[rows, starts + t]
        else:
            if t % cfg.replan_every == 0:
                t0 = time.perf_counter()
                actions = controller.plan()
                seconds.append(time.perf_counter() - t0)
            a = actions[:, t % cfg.replan_every]
        envs.step(a)
        if controller is not None:
            controller.observe(envs.observe(), a)
    scores = score_states(np.stack(envs.states), goal_states, envs.envs[0].spec)
    summary = {"episodes": len(tasks), "success_rate": float(scores["success"].mean())}
    for key, values in scores.items():
        if key != "success":
            summary[f"mean_{key}"] = float(values.mean())
    calls = seconds[1:] if len(seconds) > 1 else seconds
    summary["plan_seconds"] = float(np.mean(calls)) if calls else 0.0
    return summary


def plan_env_run(run_dir: Path | str, cfg: PlanConfig, methods=ENV_METHODS, log=print) -> dict:
    """Plan in the environment of a run on collected episodes with each of ``methods`` on ``cfg.episodes`` tasks
    (module docstring); writes run_dir/plan/ and returns plan.json's content."""
    run_dir = Path(run_dir)
    unknown = [m for m in methods if m not in ENV_METHODS]
    if unknown:
        raise ValueError(f"method {unknown[0]!r} is not available in an environment yet: expected some of "
                         f"{', '.join(ENV_METHODS)}")
    start = time.perf_counter()
    run, fit = load_run_with_predictor(run_dir, cfg.device)
    if fit.action_dim == 0:
        raise ValueError(f"the predictor of {run_dir} takes no actions: retrain it with --predictor.use_actions true")
    data = run.cfg.data
    skip = data.frame_skip
    if cfg.goal_steps % skip:
        raise ValueError(f"plan.goal_steps={cfg.goal_steps} is not a multiple of the run's data.frame_skip={skip}")
    goal_k, context = cfg.goal_steps // skip, fit.cfg.context
    test = load_episode_sequences(data, "test")
    if test.states is None:
        raise ValueError(f"the episodes in {data.data_dir} hold no states: goals and success need them")
    meta = EpisodeFolder(data.data_dir).meta
    out = run_dir / PLAN
    out.mkdir(exist_ok=True)
    pixel = pixel_predictor(run, fit, out, log) if "pixels" in methods else None
    tasks = _tasks(len(test), test.frames.shape[1], context, goal_k, cfg.episodes, cfg.seed)
    envs = EnvEpisodes(meta["env_id"], cfg.episodes, test.frames.shape[-1], skip,
                       np.asarray(meta["action_low"]), np.asarray(meta["action_high"]))
    try:
        goal_states = test.states[tasks[:, 0], tasks[:, 1] + goal_k].numpy()
        goal_frames = envs.render(goal_states)
        results = {}
        for method in methods:
            t0 = time.perf_counter()
            results[method] = _run_method(method, envs, test, tasks, goal_k, context, cfg, run, fit, pixel,
                                          goal_frames, goal_states)
            log(f"{method}: success {100 * results[method]['success_rate']:5.1f} % of {cfg.episodes} tasks, "
                f"object {results[method]['mean_object_distance']:.1f} px from its goal on average "
                f"({time.perf_counter() - t0:.1f} s)")
    finally:
        envs.close()
    spec = spec_of(meta["env_id"])
    save_yaml(cfg, out / CONFIG)
    report = {"run_dir": str(run_dir), "env_id": meta["env_id"], "plan": asdict(cfg), "context": context,
              "goal_steps": cfg.goal_steps, "frame_skip": skip,
              "success": {"object_distance": spec.success_distance, "object_angle_rad": spec.success_angle},
              "results": results, "device": str(run.device), "seconds": round(time.perf_counter() - start, 2)}
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
