"""The pictures of planning in an environment (``vicreg plan`` on collected episodes), written to run_dir/plan/:

- ``tasks.png``: for the first tasks, the start, the goal and every method's last frame with the object's path;
- ``imagined.png``: the world model's first plan, as the predictor imagines it (the training episodes' frame whose
  embedding is nearest to each predicted embedding) under the frames the environment produced executing that plan
  from the same state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..envs.specs import EnvSpec
from ..loaded_run import LoadedRun
from ..plots.env_planning import fig_env_tasks
from ..plots.style import save_figure
from ..plots.worldmodel import fig_predicted_frames
from .env_tasks import EnvEpisodes, score_states
from .fit import FitResult
from .predictor_commands import nearest_frames
from .sequences import embed_frames, load_sequences

__all__ = ["TASKS_FIGURE", "IMAGINED_FIGURE", "env_plan_figures"]

TASKS_FIGURE, IMAGINED_FIGURE = "tasks", "imagined"  # .png and .svg


def _imagined(outcome, envs: EnvEpisodes, run: LoadedRun, fit: FitResult) -> tuple[np.ndarray, ...]:
    """(real, nearest): the start frame and the frames the environment produced executing the first plan (n, 1 + H,
    C, h, w), and the training frames nearest to the imagined embeddings (n, H, C, h, w)."""
    bank_frames = load_sequences(run.cfg, "train").frames_flat()
    bank = fit.norm(embed_frames(run, bank_frames).to(fit.norm.mean.device))
    nearest = bank_frames[nearest_frames(outcome.imagined.to(bank.device), bank).cpu()]
    n = len(outcome.first_plan)
    shown = EnvEpisodes(envs.envs[0].env_id, n, envs.size, envs.skip, envs.units)
    try:
        shown.reset(outcome.path[:, 0])
        real = [shown.observe()]
        for h in range(outcome.first_plan.shape[1]):
            shown.step(outcome.first_plan[:, h])
            real.append(shown.observe())
    finally:
        shown.close()
    return torch.stack(real, 1).numpy(), nearest.numpy()


def env_plan_figures(outcomes: dict, start: np.ndarray, goal: np.ndarray, goal_states: np.ndarray, spec: EnvSpec,
                     envs: EnvEpisodes, run: LoadedRun, fit: FitResult, out: Path, title: str) -> list[Path]:
    """Write the pictures (module docstring) of the first tasks; ``outcomes``: method -> EnvOutcome."""
    n = len(start)
    obj = list(spec.object_xy)
    scale = None if spec.world_size is None else start.shape[1] / spec.world_size
    finals = {m: o.final_frames for m, o in outcomes.items()}
    paths = {m: o.path[:, :, obj] for m, o in outcomes.items()}
    success = {m: score_states(o.path[:, -1], goal_states[:n], spec)["success"] for m, o in outcomes.items()}
    written = save_figure(fig_env_tasks(start, goal, finals, paths, goal_states[:n, obj], scale, success, title),
                          out / TASKS_FIGURE)
    model = outcomes.get("world model")
    if model is not None and model.imagined is not None:
        real, nearest = _imagined(model, envs, run, fit)
        fig = fig_predicted_frames(real, nearest, 1, title + ": the world model's first plan, imagined and executed")
        written += save_figure(fig, out / IMAGINED_FIGURE)
    return written
