"""The units the predictor and the planners give actions in, and the way back to what the environment takes.

- absolute: the environment's action box scaled to [-1, 1] (:func:`vicreg.envs.episodes.scale_actions`);
- relative (``data.relative_actions``, environments whose actions are target positions of an agent whose position
  is in the state, as Push-T's): the action minus the agent's position at that step, over the spec's
  ``relative_scale`` pixels. Zero is then "stay where you are" (the centre of a planner's search) and not "go to the
  middle of the table", and a push means the same wherever the agent stands. Data is not clipped (a replayed
  episode is executed exactly); the planners search inside [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .episodes import scale_actions, unscale_actions
from .specs import EnvSpec

__all__ = ["ActionUnits", "action_units"]


@dataclass(frozen=True)
class ActionUnits:
    low: np.ndarray
    high: np.ndarray
    relative_to: tuple[int, int] | None = None  # entries of the state the actions are relative to (None: absolute)
    scale: float = 1.0  # relative: pixels per unit

    def to_model(self, actions: np.ndarray, states: np.ndarray | None) -> np.ndarray:
        """Environment actions (..., A) taken in ``states`` (..., S) -> the model's units."""
        if self.relative_to is None:
            return scale_actions(actions, self.low, self.high).astype(np.float32)
        if states is None:
            raise ValueError("relative actions need the environment's states (the agent's position)")
        return ((actions - states[..., list(self.relative_to)]) / self.scale).astype(np.float32)

    def to_env(self, units: np.ndarray, states: np.ndarray | None) -> np.ndarray:
        """The model's units (..., A) in ``states`` (..., S) -> environment actions, inside the action box."""
        if self.relative_to is None:
            return unscale_actions(units, self.low, self.high)
        if states is None:
            raise ValueError("relative actions need the environment's states (the agent's position)")
        return np.clip(states[..., list(self.relative_to)] + units * self.scale, self.low, self.high)


def action_units(meta: dict, spec: EnvSpec, relative: bool) -> ActionUnits:
    """The units for a collection (its collection.json ``meta``) of an environment of ``spec``."""
    low, high = np.asarray(meta["action_low"], np.float32), np.asarray(meta["action_high"], np.float32)
    if not relative:
        return ActionUnits(low, high)
    if spec.relative_to is None:
        raise ValueError(f"data.relative_actions=true needs an environment whose actions are an agent's target "
                         f"position (its spec's relative_to, vicreg.envs.specs); {meta['env_id']!r} has none: "
                         f"use data.relative_actions=false")
    return ActionUnits(low, high, spec.relative_to, spec.relative_scale)
