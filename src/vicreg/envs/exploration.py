"""Exploration policies for collecting episodes: what to do when there is no plan yet.

- ``random``: every action uniform in the action box (on Push-T the pusher wanders and touches the block now and
  then);
- ``waypoints``: the agent heads for a random point near the object it should push (within ``reach`` of the
  object's position, which the environment's true state gives), keeps it for a random 3 to 8 steps with Gaussian
  noise on every action, then draws another: it sweeps through and around the object, so the object moves in a
  large share of the steps (reported by ``vicreg collect``).

A policy is made once per episode from a seeded ``numpy.random.Generator`` (the episode's own), so an episode is
the same whichever worker collects it.
"""

from __future__ import annotations

import numpy as np

from .specs import EnvSpec

__all__ = ["POLICIES", "make_policy"]

POLICIES = ("random", "waypoints")


class RandomPolicy:
    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator):
        self.low, self.high, self.rng = low, high, rng

    def __call__(self, state: np.ndarray | None) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class WaypointPolicy:
    def __init__(self, low: np.ndarray, high: np.ndarray, rng: np.random.Generator, object_xy: tuple[int, int],
                 reach: float, noise: float):
        self.low, self.high, self.rng, self.object_xy = low, high, rng, object_xy
        self.reach, self.noise = reach, noise
        self.target, self.left = None, 0

    def __call__(self, state: np.ndarray | None) -> np.ndarray:
        if state is None:
            raise ValueError("the waypoints policy needs the environment's true state (the object's position)")
        if self.left == 0:
            angle = self.rng.uniform(0, 2 * np.pi)
            radius = self.reach * np.sqrt(self.rng.uniform())  # uniform over the disc
            centre = state[list(self.object_xy)]
            self.target = centre + radius * np.array([np.cos(angle), np.sin(angle)])
            self.left = int(self.rng.integers(3, 9))
        self.left -= 1
        action = self.target + self.rng.normal(0.0, self.noise, size=2)
        return np.clip(action, self.low, self.high).astype(np.float32)


def make_policy(name: str, spec: EnvSpec, low: np.ndarray, high: np.ndarray, rng: np.random.Generator):
    """The policy ``name`` for an environment of ``spec`` with actions in [low, high]."""
    if name == "random":
        return RandomPolicy(low, high, rng)
    if name == "waypoints":
        if spec.object_xy is None or low.shape != (2,):
            raise ValueError("policy 'waypoints' needs an environment whose actions are target positions (2-D) and "
                             "whose spec names the object's position (vicreg.envs.specs): use --policy random")
        span = float(np.min(high - low))
        return WaypointPolicy(low, high, rng, spec.object_xy, reach=0.15 * span, noise=0.02 * span)
    raise ValueError(f"policy {name!r} is not valid: expected one of {', '.join(POLICIES)}")
