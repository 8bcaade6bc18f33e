"""A batch of planning episodes in the sprite world, stepped through Gymnasium: one ``vicreg/Sprites-v0``
environment (:mod:`vicreg.envs.sprites`) per episode, so that ``vicreg plan`` executes every push in a Gymnasium
environment, as it does in Push-T. The controlled sprite starts somewhere, moving, and must end where it stands in
a goal frame; the environments push it with the physics and draw it with the drawing that made the training data
(:mod:`vicreg.data.sprites`), so a frame here is a training frame.

The episodes of a (seed, count) are always the same: digits, start positions and velocities drawn in the order
:func:`vicreg.data.sprites.generate_sprites` draws them (batched, so a different count gives other episodes; seed
2s + 1 starts where the test split of ``video.seed = s`` starts), then a goal position uniform over the canvas; each
environment is reset to its episode (seeded by the episode's seed and index). The leaves are redrawn at random in
every frame from each environment's own generator, so every planner sees the same leaves in the same order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from ..config import VideoConfig
from ..data.sprites import sprite_bank, start_state
from ..envs import open_env

__all__ = ["SPRITES_ID", "SpriteEnv"]

SPRITES_ID = "vicreg/Sprites-v0"


class SpriteEnv:
    """``episodes`` episodes stepped together. ``p``, ``v``: positions and velocities (N, 1, 2) of the controlled
    sprite, as the environments hold them; ``goal``: its goal position (N, 2).

    observe() -> the current frames uint8 (N, 1, H, W); goal_frames() -> the frames with the sprite at its goal;
    step(actions (N, 2)) pushes the sprite and moves it by one frame; distance() -> (N,) pixels to the goal.
    """

    def __init__(self, video: VideoConfig, episodes: int, seed: int = 0, distractors: int | None = None,
                 data_dir: str | None = None):
        if not video.controlled:
            raise ValueError("planning needs a controlled sprite: the run was trained on sprites without pushes "
                             "(train one with --preset sprites-control or --data.video.controlled true)")
        if episodes < 1:
            raise ValueError(f"episodes={episodes} is not valid: need at least 1")
        if video.objects != 1:
            raise ValueError(f"data.video.objects={video.objects}: planning steps the Gymnasium sprite world "
                             f"({SPRITES_ID}), which has one (pushed) sprite")
        self.cfg = video if distractors is None else replace(video, distractors=distractors)
        self.limit = float(video.canvas - video.sprite_size)
        g = torch.Generator().manual_seed(seed)
        bank, _, _ = sprite_bank(video, "test", data_dir, download=False, log=lambda _: None)
        n = episodes
        self.index = torch.randint(len(bank), (n, 1), generator=g)
        self.sprites = bank[self.index]  # (N, 1, C, s, s)
        p, v = start_state(video, n, g)
        self.goal = torch.rand((n, 2), generator=g) * self.limit
        fields = {f.name: getattr(self.cfg, f.name) for f in dataclasses.fields(self.cfg)}
        self.envs = [open_env(SPRITES_ID, bank=bank, **fields) for _ in range(n)]
        self._frames: list[np.ndarray] = []
        self._states: list[np.ndarray] = []
        for i, env in enumerate(self.envs):
            frame, state = env.reset(seed=seed * 1_000_003 + i, state=torch.cat([p[i, 0], v[i, 0]]).numpy(),
                                     options={"sprite_index": int(self.index[i, 0])})
            self._frames.append(frame)
            self._states.append(state)

    def __len__(self) -> int:
        return len(self.envs)

    @property
    def p(self) -> Tensor:
        return torch.from_numpy(np.stack(self._states)[:, None, :2]).float()

    @property
    def v(self) -> Tensor:
        return torch.from_numpy(np.stack(self._states)[:, None, 2:4]).float()

    @property
    def push_limit(self) -> float:
        """The largest push per axis (the box the planners search)."""
        return float(self.cfg.push)

    def observe(self) -> Tensor:
        return torch.from_numpy(np.stack(self._frames)[..., 0]).unsqueeze(1)  # grey: one of the three channels

    def goal_frames(self) -> Tensor:
        """The frames of every episode with the sprite at its goal (the environments are put back where they were)."""
        frames = []
        for i, env in enumerate(self.envs):
            here, sprite = self._states[i], {"sprite_index": int(self.index[i, 0])}
            frames.append(env.reset(state=np.concatenate([self.goal[i].numpy(), here[2:4]]), options=sprite)[0])
            self._frames[i], self._states[i] = env.reset(state=here, options=sprite)
        return torch.from_numpy(np.stack(frames)[..., 0]).unsqueeze(1)

    def step(self, actions: Tensor) -> None:
        """Push the sprite by ``actions`` (N, 2) (the environments clip them to the push box), one frame."""
        a = actions.detach().to("cpu", torch.float32).numpy()
        for i, env in enumerate(self.envs):
            self._frames[i], self._states[i], _ = env.step(a[i])

    def distance(self) -> Tensor:
        return (self.p[:, 0] - self.goal).norm(dim=-1)

    def close(self) -> None:
        for env in self.envs:
            env.close()
