"""The moving-sprite simulator: physics, drawing and the sequence generator, with its ground truth.

:func:`generate_sprites` draws ``N`` sequences of ``T`` frames in which ``K`` sprites (8x8 digits or
Fashion-MNIST images, resized) move and bounce inside a square black canvas, optionally with one
*controlled* sprite that receives random pushes (the actions) and with *distractors* ("leaves": small white
squares redrawn at random places every frame). Everything that made a frame is returned beside it
(:class:`Sequences`): positions, velocities, pushes, leaf positions and the sprites' classes, so a
representation can be probed for what it keeps.

Conventions (all in pixels, ``(x, y)`` = (column, row), ``L = canvas - sprite_size``):

- ``positions[n, t, k]`` is the top-left corner of sprite ``k`` at frame ``t``, in ``[0, L]``, before rounding;
  the sprite is drawn at ``(round(x), round(y))`` (``torch.round``: halves to even).
- ``velocities[n, t, k]`` is the velocity that moves sprite ``k`` from frame ``t`` to ``t + 1``: for the
  controlled sprite (``k = 0``) it already includes the push ``actions[n, t]`` and the speed limit.
- One step: ``p = positions[t] + velocities[t]``; then per axis, while ``p`` is outside ``[0, L]``, it is mirrored
  at the wall it crossed (``p < 0: p = -p``; ``p > L: p = 2L - p``) and that velocity component changes
  sign. ``positions[t + 1] = p``, and the (possibly flipped) velocity is the one carried to frame ``t + 1``.
- Controlled sprite, before each step ``t -> t + 1``: with probability ``push_p`` a push ``a_t`` uniform in
  ``[-push, push]^2`` is added to its carried velocity (``actions[t] = a_t``, else 0), then its speed is
  clipped to ``max_speed`` (at every step). The last frame's action is 0.
- Uncontrolled sprites keep their initial speed (bounces only flip signs).

:func:`load_sprites_dataset` makes the sequences usable by the image training loop (``data.dataset`` "sprites");
the planning environment (:mod:`vicreg.worldmodel.env`) steps the same physics and draws with the same code.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ..config import DataConfig, VideoConfig
from ..image_ops import resize_uint8
from .dataset import ImageDataset, Log
from .images import load_fashion_mnist
from .video import SPLITS, Sequences, check_split, quiet, train_note, video_dataset

__all__ = [
    "generate_sprites",
    "load_sprites_dataset",
    "move",
    "push",
    "push_and_move",
    "render_frames",
    "sprite_bank",
    "start_state",
]

SPRITE_SOURCES = ("digits", "fashion-mnist")
DIGITS_TEST_SIZE = 0.25  # held-out share of scikit-learn's digits (sprites of the test sequences)
DIGIT_CLASSES = [str(i) for i in range(10)]  # as vicreg.data.images.load_digits names them


def _check_video(cfg: VideoConfig) -> None:
    """The few invariants the generator relies on (full range checks: vicreg.config.checks.validate)."""
    if cfg.sprites not in SPRITE_SOURCES:
        raise ValueError(f"sprites={cfg.sprites!r} is not valid: expected one of {', '.join(SPRITE_SOURCES)}")
    if not cfg.canvas > cfg.sprite_size >= 1:
        raise ValueError(f"sprite_size={cfg.sprite_size} is not valid: need 1 <= sprite_size < canvas={cfg.canvas}")
    if not 1 <= cfg.distractor_size <= cfg.canvas:
        raise ValueError(f"distractor_size={cfg.distractor_size} is not valid: need 1 <= size <= canvas={cfg.canvas}")
    if cfg.length < 1 or cfg.objects < 1 or cfg.distractors < 0:
        raise ValueError(f"length={cfg.length}, objects={cfg.objects}, distractors={cfg.distractors} are not valid: "
                         f"need length >= 1, objects >= 1, distractors >= 0")


def sprite_bank(cfg: VideoConfig, split: str, data_dir: str | None, download: bool,
                 log: Log) -> tuple[Tensor, Tensor, list[str]]:
    """Sprite images of ``split`` uint8 (S, 1, s, s) (s = cfg.sprite_size), their labels int64 (S,), class names."""
    if cfg.sprites == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        images = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
        labels = d.target.astype(np.int64)
        tr, te = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels,
                                  random_state=0)
        idx = tr if split == "train" else te
        images_t, labels_t, names = torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]), DIGIT_CLASSES
    else:
        ds = load_fashion_mnist(DataConfig(dataset="fashion-mnist", data_dir=data_dir, download=download), log=log)
        part = ds.train if split == "train" else ds.test
        images_t, labels_t, names = part.images, part.labels, list(ds.classes)
    return resize_uint8(images_t, cfg.sprite_size), labels_t.to(torch.int64), names


def _generator(seed: int, split: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed * 2 + (split == "test"))
    return g


def move(p: Tensor, v: Tensor, limit: float) -> tuple[Tensor, Tensor]:
    """One frame of motion: positions ``p + v`` mirrored back into [0, limit], the velocities flipped where
    they bounced. p, v: (..., 2) (any batch shape); returns the next positions and the velocities carried."""
    return _bounce(p + v, v, limit)


def push(v: Tensor, action: Tensor, max_speed: float) -> Tensor:
    """The controlled sprite's velocity after a push: ``action`` added to ``v`` and the speed clipped to
    ``max_speed`` (done at every step, pushed or not). v, action: (..., 2)."""
    return _clip_speed(v + action, max_speed)


def push_and_move(p: Tensor, v: Tensor, action: Tensor, limit: float, max_speed: float) -> tuple[Tensor, Tensor]:
    """One step of the controlled scene: sprite 0 pushed by ``action`` (:func:`push`), then every sprite moved
    (:func:`move`). p, v: (..., K, 2); action: (..., 2). Returns the next positions and velocities."""
    v = torch.cat([push(v[..., :1, :], action[..., None, :], max_speed), v[..., 1:, :]], dim=-2)
    return move(p, v, limit)


def _bounce(p: Tensor, v: Tensor, limit: float) -> tuple[Tensor, Tensor]:
    """Mirror every coordinate of ``p`` back into [0, limit], flipping the matching component of ``v``.

    Repeats until all are inside (a step longer than the canvas bounces more than once). Shapes (..., 2).
    """
    while True:
        low, high = p < 0, p > limit
        if not (low.any() or high.any()):
            return p, v
        p = torch.where(low, -p, torch.where(high, 2 * limit - p, p))
        v = torch.where(low | high, -v, v)


def _clip_speed(v: Tensor, max_speed: float) -> Tensor:
    """Scale each velocity (..., 2) whose norm exceeds ``max_speed`` down to it; others are left untouched."""
    speed = v.norm(dim=-1, keepdim=True)
    return torch.where(speed > max_speed, v * (max_speed / speed.clamp_min(1e-12)), v)


def start_state(cfg: VideoConfig, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Positions (n, K, 2) uniform over [0, L]^2 and velocities (n, K, 2) of a speed uniform in ``cfg.speed`` in
    a uniform direction: the first frame of n sequences, drawn from ``g`` in this order."""
    k, limit = cfg.objects, float(cfg.canvas - cfg.sprite_size)
    p = torch.rand((n, k, 2), generator=g) * limit
    lo, hi = cfg.speed
    speed = lo + (hi - lo) * torch.rand((n, k), generator=g)
    angle = 2 * torch.pi * torch.rand((n, k), generator=g)
    return p, torch.stack([speed * angle.cos(), speed * angle.sin()], dim=-1)


def _simulate(cfg: VideoConfig, n: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
    """Positions and velocities float32 (n, T, K, 2), actions float32 (n, T, 2) or None (see the module docstring)."""
    t_len, k = cfg.length, cfg.objects
    limit = float(cfg.canvas - cfg.sprite_size)
    p, v = start_state(cfg, n, g)
    actions = None
    if cfg.controlled:
        pushed = torch.rand((n, t_len - 1), generator=g) < cfg.push_p
        pushes = (2 * torch.rand((n, t_len - 1, 2), generator=g) - 1) * cfg.push
        actions = torch.zeros((n, t_len, 2))
        actions[:, :-1] = torch.where(pushed[..., None], pushes, torch.zeros(()))
    positions, velocities = torch.empty((n, t_len, k, 2)), torch.empty((n, t_len, k, 2))
    for t in range(t_len):
        if actions is not None:
            v[:, 0] = push(v[:, 0], actions[:, t], cfg.max_speed)
        positions[:, t], velocities[:, t] = p, v
        p, v = move(p, v, limit)
    return positions, velocities, actions


def _box_index(top_left: Tensor, size: int, width: int) -> Tensor:
    """Flat pixel indices (..., size*size) of the size x size boxes at integer (x, y) ``top_left`` (..., 2)."""
    r = torch.arange(size)
    offsets = (r[:, None] * width + r[None, :]).reshape(-1)
    return (top_left[..., 1] * width + top_left[..., 0])[..., None] + offsets


def render_frames(cfg: VideoConfig, positions: Tensor, sprites: Tensor, leaves: Tensor | None) -> Tensor:
    """Frames uint8 (N, T, 1, H, W) from positions (N, T, K, 2), sprites uint8 (N, K, 1, s, s), leaves (N, T, M, 2).

    Sprites are pasted at their rounded positions on a black canvas and combined with max(), then the leaves
    (squares of value 255).
    """
    n, t_len, k, _ = positions.shape
    side, s = cfg.canvas, cfg.sprite_size
    canvas = torch.zeros((n, t_len, side * side), dtype=torch.uint8)
    corners = positions.round().long().clamp_(0, side - s)
    for j in range(k):
        idx = _box_index(corners[:, :, j], s, side).reshape(n, t_len, s * s)
        values = sprites[:, j].reshape(n, 1, s * s).expand(n, t_len, s * s)
        canvas.scatter_(2, idx, torch.maximum(canvas.gather(2, idx), values))
    if leaves is not None:
        idx = _box_index(leaves.long(), cfg.distractor_size, side).reshape(n, t_len, -1)
        canvas.scatter_(2, idx, 255)
    return canvas.view(n, t_len, 1, side, side)


def _generate(cfg: VideoConfig, split: str, bank: Tensor, bank_labels: Tensor, names: list[str]) -> Sequences:
    n = cfg.sequences if split == "train" else cfg.test_sequences
    g = _generator(cfg.seed, split)
    choice = torch.randint(len(bank), (n, cfg.objects), generator=g)
    positions, velocities, actions = _simulate(cfg, n, g)
    leaves = None
    if cfg.distractors:
        high = cfg.canvas - cfg.distractor_size + 1
        leaves = torch.randint(high, (n, cfg.length, cfg.distractors, 2), generator=g).float()
    sprites = bank[choice]  # (n, K, 1, s, s)
    frames = render_frames(cfg, positions, sprites, leaves)
    return Sequences(frames, positions, velocities, actions, leaves, bank_labels[choice], list(names), sprites)


def generate_sprites(cfg: VideoConfig, split: str = "train", data_dir: str | None = None, *, download: bool = True,
                     log: Log = quiet) -> Sequences:
    """``cfg.sequences`` (train) or ``cfg.test_sequences`` (test) moving-sprite sequences, frames uint8 (N, T, 1, H, W).

    Sprites come from the split's own images of the source (digits: scikit-learn's stratified 75/25 split,
    random_state 0; Fashion-MNIST: its train / test files, looked for in ``data_dir`` as ``vicreg.data``
    does, downloaded when ``download``). Deterministic in ``(cfg.seed, split)``. Conventions: module docstring.
    """
    check_split(split)
    _check_video(cfg)
    bank, labels, names = sprite_bank(cfg, split, data_dir, download, log)
    return _generate(cfg, split, bank, labels, names)


def _first_class(seqs: Sequences) -> Tensor:
    return seqs.classes[:, 0].contiguous()  # type: ignore[index]


def load_sprites_dataset(cfg: DataConfig, log: Log = print) -> ImageDataset:
    """Moving sprites (``cfg.video``) as an ImageDataset; frame labels = the class of the sequence's sprite 0."""
    v = cfg.video
    _check_video(v)
    start = time.perf_counter()
    seqs = {}
    for split in SPLITS:
        bank, labels, names = sprite_bank(v, split, cfg.data_dir, cfg.download, log)
        seqs[split] = _generate(v, split, bank, labels, names)
    seconds = time.perf_counter() - start
    ds = video_dataset("sprites", seqs["train"].class_names, seqs["train"], seqs["test"], cfg.temporal_offset,
                        _first_class)
    log(f"sprites: generated {v.sequences} train / {v.test_sequences} test sequences x {v.length} frames, "
        f"{v.canvas}x{v.canvas} canvas, {v.objects} {v.sprites} sprite(s) of {v.sprite_size}px, {v.distractors} "
        f"distractors, controlled {v.controlled}, seed {v.seed}, in {seconds:.2f} s; "
        f"{train_note(ds, cfg.temporal_offset)}")
    return ds
