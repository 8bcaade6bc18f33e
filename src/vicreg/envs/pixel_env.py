"""A Gymnasium environment seen as the world model sees it: RGB frames in, continuous actions out, and its true
state where it exposes one. Opening one checks, in one line each, that the id exists, that an observation holds an
RGB image and that actions are a Box; rendering is headless (pygame's dummy video driver)."""

from __future__ import annotations

import importlib
import os
import warnings

import numpy as np

from .specs import ENV_SPECS, EnvSpec, spec_of

__all__ = ["PixelEnv", "open_env"]

IMAGE_KEYS = ("pixels", "image", "rgb", "observation")  # dict observations: these keys are looked at first
OWN_ENVS = {"vicreg/Sprites-v0": "vicreg.envs.sprites:SpritesEnv"}  # id -> entry point


def _gymnasium():
    try:
        import gymnasium
    except ImportError:
        raise ValueError("environments need gymnasium: pip install 'vicreg[envs]' (it brings gym-pusht, "
                         "Push-T)") from None
    return gymnasium


def _register(gym, env_id: str) -> None:
    """Make a namespaced id known to Gymnasium: vicreg's own by entry point (the module is imported by
    ``gymnasium.make``, not here), another namespace by importing its package ("gym_pusht/PushT-v0" -> gym_pusht)."""
    namespace = env_id.split("/", 1)[0] if "/" in env_id else None
    if env_id in OWN_ENVS:
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=OWN_ENVS[env_id], max_episode_steps=200)
    elif namespace:
        try:
            importlib.import_module(namespace)
        except ImportError:
            pass  # gymnasium says the id is unknown, below


def _is_image(space) -> bool:
    shape = getattr(space, "shape", None)
    return (type(space).__name__ == "Box" and np.dtype(space.dtype) == np.uint8 and shape is not None
            and len(shape) == 3 and shape[2] == 3)


def image_key(env_id: str, space) -> str | None:
    """None when the observation is the image itself; else the dict key that holds it. ValueError when none does."""
    if _is_image(space):
        return None
    spaces = getattr(space, "spaces", None)
    if isinstance(spaces, dict):
        for key in sorted(spaces, key=lambda k: (k not in IMAGE_KEYS, k)):
            if _is_image(spaces[key]):
                return key
    raise ValueError(f"environment {env_id!r} has no image observation (its observation space is {space}): the "
                     f"world model needs RGB frames, uint8 (H, W, 3), or a dict holding them")


class PixelEnv:
    """One environment: ``reset(seed, state=None) -> (frame, state)`` and ``step(action) -> (frame, state, done)``.

    ``frame`` is uint8 (H, W, 3); ``state`` a float64 vector (the spec's ``state_keys`` of ``info``) or None where
    the environment exposes none. ``reset(state=...)`` puts the environment in a given state where it takes
    ``options={"reset_to_state": state}`` (Push-T does). ``done`` is Gymnasium's terminated or truncated.
    """

    def __init__(self, env_id: str, env, spec: EnvSpec, frames: bool = True):
        self.env_id, self.env, self.spec, self.frames = env_id, env, spec, frames
        self.key = image_key(env_id, env.observation_space) if frames else None
        self.frame_shape = tuple(env.observation_space[self.key].shape if self.key else env.observation_space.shape)
        space = env.action_space
        self.action_low = np.asarray(space.low, dtype=np.float32).reshape(-1)
        self.action_high = np.asarray(space.high, dtype=np.float32).reshape(-1)
        self._reset_once = False

    def _frame(self, obs) -> np.ndarray | None:
        if not self.frames:
            return None
        return np.ascontiguousarray(obs if self.key is None else obs[self.key], dtype=np.uint8)

    def _state(self, info: dict) -> np.ndarray | None:
        if self.spec.state_of is not None:
            return self.spec.state_of(self.env)
        if not self.spec.state_keys:
            return None
        return np.concatenate([np.asarray(info[k], dtype=np.float64).reshape(-1) for k in self.spec.state_keys])

    def reset(self, seed: int | None = None, state: np.ndarray | None = None, options: dict | None = None):
        """A new episode (seeded); with ``state`` (as ``step`` returns it), in that state; ``options``: more of the
        environment's own reset options."""
        options, given = dict(options or {}) or None, state
        if state is not None:
            state = np.asarray(state, dtype=np.float64)
            if self.spec.reset_state is not None:
                if not self._reset_once:  # the environment's bodies exist from its first reset on
                    self.env.reset(seed=seed)
                state = self.spec.reset_state(self.env, state)
            options = {**(options or {}), "reset_to_state": state}
        obs, info = self.env.reset(seed=seed, options=options)
        self._reset_once = True
        if given is not None and self.spec.after_reset is not None:
            self.spec.after_reset(self.env, np.asarray(given, dtype=np.float64))
        return self._frame(obs), self._state(info)

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float32).reshape(self.action_low.shape)
        obs, _reward, terminated, truncated, info = self.env.step(action)
        return self._frame(obs), self._state(info), bool(terminated or truncated)

    def close(self) -> None:
        self.env.close()


def open_env(env_id: str, max_steps: int | None = None, physics_only: bool = False, **make_kwargs) -> PixelEnv:
    """``gymnasium.make(env_id)`` with vicreg's settings for it (:mod:`vicreg.envs.specs`) and ``make_kwargs``,
    rendering headless, checked: an unknown id, observations without an RGB image or actions that are not a Box end
    in one line. ``physics_only``: the spec's copy that renders nothing (frames are None), for simulating plans."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (Push-T) draws without a screen
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    gym = _gymnasium()
    _register(gym, env_id)
    spec = spec_of(env_id)
    kwargs = {**spec.make_kwargs, **make_kwargs}
    if physics_only:
        if spec.physics_kwargs is None or spec.state_of is None and not spec.state_keys:
            raise ValueError(f"environment {env_id!r} has no copy without rendering whose state vicreg can read and "
                             f"set (vicreg.envs.specs: physics_kwargs, a state): the oracle cannot simulate it")
        kwargs.update(spec.physics_kwargs)
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    try:
        with warnings.catch_warnings():  # "using the latest versioned environment ...": a warning in colours on
            warnings.filterwarnings("ignore", module="gymnasium.envs.registration")  # stderr beside vicreg's lines
            env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"unknown environment id {env_id!r} (gymnasium: {str(e).splitlines()[0]}); with vicreg's "
                         f"settings: {', '.join(ENV_SPECS)}") from None
    if type(env.action_space).__name__ != "Box":
        env.close()
        raise ValueError(f"environment {env_id!r} has {env.action_space} actions: the world model plans "
                         f"continuous actions (a gymnasium Box)")
    try:
        return PixelEnv(env_id, env, spec, frames=not physics_only)
    except ValueError:
        env.close()
        raise
