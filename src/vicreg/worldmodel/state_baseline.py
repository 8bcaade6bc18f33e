"""The state baseline of planning in an environment: the world model's predictor, trained the same way on the
environment's true state instead of the encoder's embedding (planning with a perfect encoder). Beside the world
model it measures what the encoder loses; beside the oracle, what learning the dynamics from the data loses.

The state it sees is the pose of things, as the spec names them (:mod:`vicreg.envs.specs`): each position's (x, y)
and the object's angle as (cos, sin) (so that a turn is one distance however many times it wrapped); velocities
are left to the predictor's context of frames, as they are for the embedding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..data.video import Sequences
from ..envs.specs import EnvSpec
from ..loaded_run import LoadedRun
from ..rundir import STATE_PREDICTOR
from .baseline_fit import baseline_predictor
from .fit import FitResult

__all__ = ["state_features", "state_predictor"]


def state_features(states: Tensor, spec: EnvSpec) -> Tensor:
    """True states (..., S) -> the baseline's features (..., F), float32 (module docstring)."""
    states = torch.as_tensor(states, dtype=torch.float64)
    parts = [states[..., list(xy)] for xy in spec.positions]
    if spec.object_angle is not None:
        angle = states[..., spec.object_angle]
        parts.append(torch.stack([angle.cos(), angle.sin()], dim=-1))
    if not parts:
        raise ValueError("the state baseline needs an environment whose spec names positions in its state")
    return torch.cat(parts, dim=-1).float()


def state_predictor(run: LoadedRun, fit: FitResult, spec: EnvSpec, out: Path, log: Callable[[str], None]) -> FitResult:
    """The state baseline: the world model's predictor architecture and training on :func:`state_features`; trained
    once and kept in plan/state_predictor.pt (retrained when the world model's predictor settings change)."""
    t0 = time.perf_counter()

    def features(seq: Sequences) -> Tensor:
        if seq.states is None:
            raise ValueError("the state baseline needs episodes that hold the environment's states")
        return state_features(seq.states, spec)

    result, trained = baseline_predictor(run, fit, out / STATE_PREDICTOR, features, log)
    if trained:
        log(f"trained the state baseline's predictor ({fit.cfg.model}, {result.dim}-D true poses, {fit.cfg.epochs} "
            f"epochs) in {time.perf_counter() - t0:.1f} s; val 1-step MSE {result.history[-1]['val_loss']:.4f}")
    return result
