"""A batch of planning episodes in the sprite simulator: the controlled sprite starts somewhere, moving, and must
end where it stands in a goal frame; every push is executed with the physics that made the training data.

The physics and the drawing are :mod:`vicreg.data.sprites`'s own (``push``, ``move``, ``render_frames``), so a
frame here is drawn exactly as a training frame would be. The episodes of a (seed, count) are always the same:
digits, start positions and velocities drawn in the order :func:`vicreg.data.sprites.generate_sprites` draws
them (batched, so a different count gives other episodes; seed 2s + 1 starts where the test split of
``video.seed = s`` starts), then a goal position uniform over the canvas. The leaves are redrawn at random
in every frame, from the environment's own generator, so every planner sees the same leaves in the same order.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from ..config import VideoConfig
from ..data.sprites import push_and_move, render_frames, sprite_bank, start_state

__all__ = ["SpriteEnv"]


class SpriteEnv:
    """``episodes`` episodes stepped together. State on the CPU: positions and velocities (N, K, 2) of the K
    sprites (sprite 0 is the controlled one), the goal position (N, 2) of sprite 0.

    observe() -> the current frames uint8 (N, C, H, W); goal_frames() -> the frames with sprite 0 at its goal
    (the other sprites where they started); step(actions (N, 2)) pushes sprite 0 and moves every sprite by one
    frame; distance() -> (N,) pixels between sprite 0 and its goal.
    """

    def __init__(self, video: VideoConfig, episodes: int, seed: int = 0, distractors: int | None = None,
                 data_dir: str | None = None):
        if not video.controlled:
            raise ValueError("planning needs a controlled sprite: the run was trained on sprites without pushes "
                             "(train one with --preset sprites-control or --data.video.controlled true)")
        if episodes < 1:
            raise ValueError(f"episodes={episodes} is not valid: need at least 1")
        self.cfg = video if distractors is None else replace(video, distractors=distractors)
        self.limit = float(video.canvas - video.sprite_size)
        g = torch.Generator().manual_seed(seed)
        bank, _, _ = sprite_bank(video, "test", data_dir, download=False, log=lambda _: None)
        n, k = episodes, video.objects
        self.sprites = bank[torch.randint(len(bank), (n, k), generator=g)]  # (N, K, C, s, s)
        self.p, self.v = start_state(video, n, g)
        self.goal = torch.rand((n, 2), generator=g) * self.limit
        self.start = self.p.clone()
        self._leaves = torch.Generator().manual_seed(seed + 1_000_003)

    def __len__(self) -> int:
        return self.p.shape[0]

    @property
    def push_limit(self) -> float:
        """The largest push per axis (the box the planners search)."""
        return float(self.cfg.push)

    def _draw(self, positions: Tensor) -> Tensor:
        leaves = None
        if self.cfg.distractors:
            high = self.cfg.canvas - self.cfg.distractor_size + 1
            leaves = torch.randint(high, (len(self), 1, self.cfg.distractors, 2), generator=self._leaves).float()
        return render_frames(self.cfg, positions[:, None], self.sprites, leaves)[:, 0]

    def observe(self) -> Tensor:
        return self._draw(self.p)

    def goal_frames(self) -> Tensor:
        at_goal = self.start.clone()
        at_goal[:, 0] = self.goal
        return self._draw(at_goal)

    def step(self, actions: Tensor) -> None:
        """Push sprite 0 by ``actions`` (N, 2), clipped to the push box, and move every sprite one frame."""
        a = actions.detach().to("cpu", torch.float32).clamp(-self.push_limit, self.push_limit)
        self.p, self.v = push_and_move(self.p, self.v, a, self.limit, self.cfg.max_speed)

    def distance(self) -> Tensor:
        return (self.p[:, 0] - self.goal).norm(dim=-1)
