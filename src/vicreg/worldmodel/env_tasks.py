"""Planning tasks in an environment: N environments stepped side by side in the model's action units, the seeded
choice of start times in held-out episodes, and the scores of where the environments ended (success as the
environment's spec states it, :mod:`vicreg.envs.specs`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..envs import open_env
from ..envs.action_units import ActionUnits
from ..envs.specs import EnvSpec
from ..image_ops import resize_uint8

__all__ = ["EnvEpisodes", "plan_tasks", "pose_error", "score_states", "angle_between"]


class EnvEpisodes:
    """N environments stepped side by side; actions come as the predictor sees them ((N, k A): the k skipped
    steps' actions in the model's units, :mod:`vicreg.envs.action_units`) and are executed as k environment steps
    each. ``frames`` and ``states`` are what the environments last returned."""

    def __init__(self, env_id: str, n: int, size: int, skip: int, units: ActionUnits):
        self.envs = [open_env(env_id) for _ in range(n)]
        self.size, self.skip, self.units = size, skip, units
        self.spec: EnvSpec = self.envs[0].spec
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
        """The last frames, uint8 (N, 3, size, size)."""
        frames = torch.from_numpy(np.stack(self.frames)).permute(0, 3, 1, 2)
        return resize_uint8(frames, self.size)

    def true_states(self) -> np.ndarray:
        return np.stack(self.states)

    def step(self, actions: Tensor) -> None:
        units = actions.detach().cpu().numpy().reshape(len(self), self.skip, -1)
        for i, env in enumerate(self.envs):
            for sub in units[i]:
                self.frames[i], self.states[i], _ = env.step(self.units.to_env(sub, self.states[i]))

    def close(self) -> None:
        for env in self.envs:
            env.close()


def plan_tasks(n_seq: int, length: int, context: int, goal_k: int, count: int, seed: int) -> np.ndarray:
    """(count, 2): a held-out sequence and a start time in it (kept frames), with room for the context before
    and the goal after; seeded, spread over the sequences."""
    first, last = context - 1, length - 1 - goal_k
    if last < first:
        raise ValueError(f"the held-out sequences have {length} kept frames: too few for a context of {context} "
                         f"and a goal {goal_k} kept frames ahead (lower plan.goal_steps or collect longer episodes)")
    rng = np.random.default_rng(seed)
    seqs = np.arange(count) % n_seq
    return np.stack([seqs, rng.integers(first, last + 1, size=count)], axis=1)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| as an angle in [0, pi] (radians; any number of turns apart)."""
    return np.abs((a - b + np.pi) % (2 * np.pi) - np.pi)


def score_states(states: np.ndarray, goals: np.ndarray, spec: EnvSpec) -> dict[str, np.ndarray]:
    """Per episode: the object's distance and angle to its goal pose, the agent's distance, and success."""
    obj = list(spec.object_xy)
    out = {"object_distance": np.linalg.norm(states[:, obj] - goals[:, obj], axis=1)}
    ok = out["object_distance"] < spec.success_distance
    if spec.object_angle is not None:
        out["object_angle"] = angle_between(states[:, spec.object_angle], goals[:, spec.object_angle])
        ok &= out["object_angle"] < spec.success_angle
    if spec.agent_xy is not None:
        out["agent_distance"] = np.linalg.norm(states[:, list(spec.agent_xy)] - goals[:, list(spec.agent_xy)], axis=1)
    out["success"] = ok
    return out


def pose_error(states: np.ndarray, goals: np.ndarray, spec: EnvSpec) -> np.ndarray:
    """(..., S) -> (...): the object's squared distance to its goal pose in units of the success thresholds,
    (distance / success_distance)^2 + (angle / success_angle)^2: below 1 on both terms is success."""
    obj = list(spec.object_xy)
    err = (np.linalg.norm(states[..., obj] - goals[..., obj], axis=-1) / spec.success_distance) ** 2
    if spec.object_angle is not None:
        err = err + (angle_between(states[..., spec.object_angle], goals[..., spec.object_angle])
                     / spec.success_angle) ** 2
    return err
