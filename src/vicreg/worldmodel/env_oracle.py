"""The oracle of planning in an environment: the same planner and the same shape of cost as the world model's,
with the environment itself as the model, simulated from the true state (:mod:`vicreg.envs.simulate`) and the
cost measured on the true poses (:func:`vicreg.worldmodel.env_tasks.pose_error`, the mean over the plan's steps):
the ceiling of that planner on these tasks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from ..config import PlanConfig
from ..envs.simulate import Simulator
from .action_search import Cost
from .closed_loop import PlanningController
from .env_tasks import EnvEpisodes, pose_error

__all__ = ["EnvOracle"]


class EnvOracle(PlanningController):
    """Plans for every environment of an :class:`EnvEpisodes` from its true state, with ``cfg.oracle_samples``
    candidates per task simulated by ``sim``."""

    def __init__(self, cfg: PlanConfig, sim: Simulator, action_dim: int):
        elites = max(2, round(cfg.elites * cfg.oracle_samples / cfg.samples))
        super().__init__(replace(cfg, samples=cfg.oracle_samples, elites=min(elites, cfg.oracle_samples)), 1.0,
                         action_dim, torch.device("cpu"))
        self.sim = sim

    def start(self, envs: EnvEpisodes, goal_states: np.ndarray) -> None:
        self.envs, self.goal, self.mean = envs, goal_states, None

    def observe(self, observation, action: Tensor | None) -> None:
        pass

    def cost(self) -> Cost:
        states, envs = self.envs.true_states(), self.envs

        def cost(actions: Tensor) -> Tensor:
            n, s, h, a = actions.shape
            plans = actions.detach().cpu().double().numpy().reshape(n * s, h, a)
            reached = self.sim.rollouts(np.repeat(states, s, axis=0), plans, envs.units, envs.skip)
            goals = np.repeat(self.goal, s, axis=0)[:, None]
            return torch.from_numpy(pose_error(reached, goals, envs.spec).mean(-1).reshape(n, s)).float()

        return cost

    def plan(self) -> Tensor:
        return self.search(self.cost(), len(self.envs))
