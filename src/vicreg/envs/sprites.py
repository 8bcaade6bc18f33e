"""Our sprite world as a Gymnasium environment, ``vicreg/Sprites-v0``: a digit moving and bouncing in a square
canvas, pushed by the actions, with the physics and drawing that made the training data (:mod:`vicreg.data.sprites`).
Registered by entry point in :mod:`vicreg.envs.pixel_env`, so Gymnasium imports this module when it makes one.

Observation: the frame as RGB uint8 (canvas, canvas, 3) (the grey frame on three channels). Action: the push added
to the digit's velocity, a Box [-push, push]^2 (its speed then clipped to ``max_speed``). ``info["state"]``: the
digit's (x, y, vx, vy); ``reset(options={"reset_to_state": state})`` puts it there, and ``"sprite_index"`` picks
the digit (an index into the sprite bank; otherwise one is drawn). Keyword arguments of ``gymnasium.make`` override
the fields of the ``sprites-control`` preset's ``data.video`` (e.g. ``distractors=0``); ``bank`` gives the digits
(uint8 (S, 1, s, s); default: the ``split`` of the video's sprites, from ``data_dir``). ``vicreg plan`` on a sprite
run steps one of these per episode (:class:`vicreg.worldmodel.env.SpriteEnv`).
"""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import torch

from ..config import build_config
from ..data.sprites import push_and_move, render_frames, sprite_bank, start_state


class SpritesEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode: str | None = "rgb_array", bank: torch.Tensor | None = None, split: str = "train",
                 data_dir: str | None = None, **video):
        base = build_config("sprites-control").data.video
        self.cfg = dataclasses.replace(base, **{"objects": 1, **video})
        if self.cfg.objects != 1:
            raise ValueError(f"objects={self.cfg.objects}: the Gymnasium sprite world has one (pushed) sprite")
        side, push = self.cfg.canvas, float(self.cfg.push)
        self.observation_space = gymnasium.spaces.Box(0, 255, (side, side, 3), np.uint8)
        self.action_space = gymnasium.spaces.Box(-push, push, (2,), np.float32)
        self.render_mode = render_mode
        self.limit = float(side - self.cfg.sprite_size)
        if bank is None:
            bank, _, _ = sprite_bank(self.cfg, split, data_dir, download=False, log=lambda _: None)
        self.bank = bank

    def _observe(self):
        leaves = None
        if self.cfg.distractors:
            high = self.cfg.canvas - self.cfg.distractor_size + 1
            leaves = torch.randint(high, (1, 1, self.cfg.distractors, 2), generator=self._g).float()
        frame = render_frames(self.cfg, self.p[:, None], self.sprite, leaves)[0, 0, 0].numpy()
        info = {"state": np.concatenate([self.p[0, 0].numpy(), self.v[0, 0].numpy()]).astype(np.float64)}
        return np.repeat(frame[:, :, None], 3, axis=2), info

    def reset(self, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._g = torch.Generator().manual_seed(int(self.np_random.integers(2**62)))
        options = options or {}
        index = options.get("sprite_index")
        if index is None:
            index = torch.randint(len(self.bank), (1, 1), generator=self._g)
        self.sprite = self.bank[torch.as_tensor(index).reshape(1, 1)]  # (1, 1, C, s, s)
        self.p, self.v = start_state(self.cfg, 1, self._g)
        state = options.get("reset_to_state")
        if state is not None:
            state = torch.as_tensor(np.asarray(state, dtype=np.float32).reshape(4))
            self.p[0, 0], self.v[0, 0] = state[:2].clamp(0, self.limit), state[2:]
        return self._observe()

    def step(self, action):
        a = torch.as_tensor(np.asarray(action, dtype=np.float32).reshape(1, 2)).clamp(-self.cfg.push, self.cfg.push)
        self.p, self.v = push_and_move(self.p, self.v, a, self.limit, self.cfg.max_speed)
        obs, info = self._observe()
        return obs, 0.0, False, False, info

    def render(self):
        return self._observe()[0]

