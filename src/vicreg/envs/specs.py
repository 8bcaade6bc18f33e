"""What vicreg knows of an environment beyond what Gymnasium says: plain data, one entry per environment id.

An environment that is not listed works too (any Gymnasium id whose observation is an RGB image, or a dict holding
one, and whose action space is a Box); an entry adds what the world-model commands use where the environment has
it: keyword arguments for ``gymnasium.make``, where its true state is in ``info`` (for ``reset_to_state`` and the
scores), which of the state's entries are the object the agent pushes (the exploration policy aims at it, and the
share of steps in which it moves is reported), and the exploration policy to collect with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def pusht_state(env) -> np.ndarray:
    """Push-T's whole state, read from its bodies: pusher x, y, block x, y, angle (what ``reset_to_state`` takes),
    then the velocities a reset to a pose would lose: pusher vx, vy, block vx, vy, angular velocity. The block
    glides (no damping), so a state without them does not say where the scene goes next."""
    u = env.unwrapped
    return np.array([*u.agent.position, *u.block.position, u.block.angle, *u.agent.velocity, *u.block.velocity,
                     u.block.angular_velocity], dtype=np.float64)


def pusht_reset_state(env, state: np.ndarray) -> np.ndarray:
    """What Push-T's ``reset_to_state`` must be given to put the block in the pose ``state`` records.

    gym-pusht sets the block's position, then its angle, and pymunk turns a body about its centre of gravity
    (c, in the block's frame), so the pose read back is not the one given: set (P, a), read P + c - R(a) c. The
    inverse: give O - c + R(a) c to read back the origin O."""
    block = env.unwrapped.block
    c = np.array(block.center_of_gravity, dtype=np.float64)
    angle = float(state[4])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    out = np.array(state[:5], dtype=np.float64)
    out[2:4] = out[2:4] - c + turn @ c
    return out


def pusht_restore_velocities(env, state: np.ndarray) -> None:
    """After a reset to ``state``'s pose: its velocities (entries 5 to 9), where it records them."""
    if len(state) >= 10:
        u = env.unwrapped
        u.agent.velocity = (float(state[5]), float(state[6]))
        u.block.velocity = (float(state[7]), float(state[8]))
        u.block.angular_velocity = float(state[9])


@dataclass(frozen=True)
class EnvSpec:
    make_kwargs: dict = field(default_factory=dict)  # passed to gymnasium.make
    state_keys: tuple[str, ...] = ()  # info entries concatenated into the true state (empty: no state)
    state_of: Callable | None = None  # env -> its true state, where info does not hold all of it
    object_dims: tuple[int, ...] = ()  # entries of the state that are the pushed object's pose
    object_xy: tuple[int, int] | None = None  # entries of the state that are the object's (x, y)
    moved_tolerance: float = 1e-2  # an object pose entry changing by more than this in a step: it moved
    policy: str = "random"  # the exploration policy `vicreg collect` uses by default
    reset_state: Callable | None = None  # (env, recorded state) -> what reset_to_state must be given; None: as is
    after_reset: Callable | None = None  # (env, recorded state) -> None: what reset_to_state cannot set
    positions: tuple[tuple[int, int], ...] = ()  # (x, y) entries of the state of each thing the probes look for
    agent_xy: tuple[int, int] | None = None  # entries of the state that are the agent's (x, y): reported
    object_angle: int | None = None  # entry of the state that is the object's angle (radians)
    success_distance: float = 20.0  # planning succeeds with the object within this distance of its goal position
    success_angle: float = float(np.pi / 9)  # ... and its angle within this of the goal's (where it has one)
    relative_to: tuple[int, int] | None = None  # entries of the state that actions can be relative to (the agent's
    #                                             position, where an action is its target: vicreg.envs.action_units)
    relative_scale: float = 1.0  # relative actions: pixels per unit
    physics_kwargs: dict | None = None  # gymnasium.make arguments of a copy without rendering (the oracle's)
    world_size: float | None = None  # the side of the world that a frame shows, in the state's units (pictures)


ENV_SPECS: dict[str, EnvSpec] = {
    # Push-T (gym-pusht): a pusher (agent) moves a T-shaped block toward a goal pose; 96x96 RGB frames. The state
    # is agent x, y, block x, y, angle (pixels of the 512x512 table, radians; what reset_to_state takes), then
    # the agent's and the block's velocities.
    "gym_pusht/PushT-v0": EnvSpec(
        make_kwargs={"obs_type": "pixels_agent_pos", "render_mode": "rgb_array"},
        state_of=pusht_state, object_dims=(2, 3, 4), object_xy=(2, 3), policy="waypoints",
        reset_state=pusht_reset_state, after_reset=pusht_restore_velocities, positions=((0, 1), (2, 3)),
        agent_xy=(0, 1), object_angle=4, relative_to=(0, 1),
        relative_scale=64.0,  # the waypoints policy's targets: 37 px (0.58 units) from the pusher (std per axis)
        physics_kwargs={"obs_type": "state"},  # 3,400 steps/s on one core, against 610 rendering 96x96 frames
        world_size=512.0,
        success_distance=20.0, success_angle=float(np.pi / 9)),  # DINO-WM's Push-T success: 20 px, 20 degrees
    # our sprite world: a digit pushed by the actions (vicreg.envs.sprites), state (x, y, vx, vy) of the digit
    "vicreg/Sprites-v0": EnvSpec(state_keys=("state",), object_dims=(0, 1), object_xy=(0, 1), positions=((0, 1),),
                                 success_distance=3.0),
}


def spec_of(env_id: str) -> EnvSpec:
    """The entry of ``env_id``, or an empty one (image observations and Box actions are all that is needed)."""
    return ENV_SPECS.get(env_id, EnvSpec())
