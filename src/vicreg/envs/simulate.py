"""Candidate plans simulated by the environment itself, from a true state, in copies that render nothing: what
the oracle plans with (the ceiling of a planner). Several worker processes (spawned, as ``collect``'s) share the
candidates of one search iteration."""

from __future__ import annotations

import multiprocessing

import numpy as np

from .action_units import ActionUnits
from .pixel_env import PixelEnv, open_env

__all__ = ["Simulator", "simulate"]

_WORKER_ENV: PixelEnv | None = None  # a worker process's environment (set by its initializer)


def simulate(env: PixelEnv, states: np.ndarray, plans: np.ndarray, units: ActionUnits, skip: int) -> np.ndarray:
    """For every row m: reset ``env`` to ``states[m]`` (S,), execute ``plans[m]`` (H, skip x A, the model's units:
    each row is ``skip`` environment steps) and record the state after each row: (M, H, S)."""
    m, h = plans.shape[:2]
    out = np.empty((m, h, states.shape[1]), dtype=np.float64)
    for i in range(m):
        _, state = env.reset(state=states[i])
        for j in range(h):
            for sub in plans[i, j].reshape(skip, -1):
                _, state, _ = env.step(units.to_env(sub, state))
            out[i, j] = state
    return out


def _open_worker(env_id: str) -> None:
    global _WORKER_ENV
    _WORKER_ENV = open_env(env_id, physics_only=True)


def _simulate_in_worker(args: tuple) -> np.ndarray:
    return simulate(_WORKER_ENV, *args)


class Simulator:
    """``rollouts(states, plans, units, skip)``: :func:`simulate` split over ``workers`` processes (in this
    process for 1). Close it (or use it in a ``with`` block) to end the workers."""

    def __init__(self, env_id: str, workers: int = 1):
        self.workers = workers
        self.env = open_env(env_id, physics_only=True)  # also checks, here, that the oracle can simulate env_id
        self.pool = None
        if workers > 1:
            self.pool = multiprocessing.get_context("spawn").Pool(workers, _open_worker, (env_id,))

    def rollouts(self, states: np.ndarray, plans: np.ndarray, units: ActionUnits, skip: int) -> np.ndarray:
        if self.pool is None:
            return simulate(self.env, states, plans, units, skip)
        parts = np.array_split(np.arange(len(states)), 4 * self.workers)
        jobs = [(states[p], plans[p], units, skip) for p in parts if len(p)]
        return np.concatenate(self.pool.map(_simulate_in_worker, jobs))

    def close(self) -> None:
        self.env.close()
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
