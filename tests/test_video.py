"""Moving sprites (ground truth against the rendered frames, dynamics, pushes) and Moving MNIST on a tiny fake file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from vicreg.config import DataConfig, VideoConfig
from vicreg.data import FASHION_MNIST_CLASSES, load_dataset
from vicreg.data.sprites import generate_sprites, load_sprites_dataset, sprite_bank
from vicreg.data.video import Sequences, load_moving_mnist, load_moving_mnist_dataset

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FIELDS = ("frames", "positions", "velocities", "actions", "distractors", "classes", "sprite_images")


def quiet(_msg: str) -> None:
    pass


def small(**kw) -> VideoConfig:
    kw = {"sequences": 16, "test_sequences": 16, "length": 8, **kw}
    return VideoConfig(**kw)


def limit(cfg: VideoConfig) -> float:
    return float(cfg.canvas - cfg.sprite_size)


def bounce(p: torch.Tensor, v: torch.Tensor, lim: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One reflection at the walls (enough when a step is shorter than the free space ``lim``)."""
    low, high = p < 0, p > lim
    p = torch.where(low, -p, torch.where(high, 2 * lim - p, p))
    return p, torch.where(low | high, -v, v)


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def test_generator_is_deterministic_and_depends_on_seed_and_split():
    cfg = small(objects=2, distractors=3, controlled=True)
    a, b = generate_sprites(cfg), generate_sprites(cfg)
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.class_names == b.class_names == [str(i) for i in range(10)]
    other = generate_sprites(dataclasses.replace(cfg, seed=1))
    test = generate_sprites(cfg, "test")
    for seqs in (other, test):
        assert not torch.equal(seqs.frames, a.frames)
        assert not torch.equal(seqs.positions, a.positions)
        assert not torch.equal(seqs.actions, a.actions)
        assert not torch.equal(seqs.distractors, a.distractors)


def test_shapes_dtypes_and_split_sizes():
    cfg = small(objects=3, distractors=2, controlled=True, test_sequences=5)
    s = generate_sprites(cfg)
    n, t, k, m = 16, 8, 3, 2
    assert isinstance(s, Sequences) and len(s) == n
    assert s.frames.shape == (n, t, 1, 32, 32) and s.frames.dtype == torch.uint8
    assert s.positions.shape == s.velocities.shape == (n, t, k, 2) and s.positions.dtype == torch.float32
    assert s.actions.shape == (n, t, 2) and s.distractors.shape == (n, t, m, 2)
    assert s.classes.shape == (n, k) and s.classes.dtype == torch.int64
    assert s.sprite_images.shape == (n, k, 1, 12, 12)
    flat = s.frames_flat()
    assert flat.shape == (n * t, 1, 32, 32) and torch.equal(flat[t + 3], s.frames[1, 3])
    assert len(generate_sprites(cfg, "test")) == 5
    plain = generate_sprites(small())
    assert plain.actions is None and plain.distractors is None


def test_bad_split_and_source():
    with pytest.raises(ValueError, match="split='val'"):
        generate_sprites(small(), "val")
    with pytest.raises(ValueError, match="sprites='emoji'"):
        generate_sprites(dataclasses.replace(small(), sprites="emoji"))


# --------------------------------------------------------------------------------------------
# Labels against the frames
# --------------------------------------------------------------------------------------------


def test_single_sprite_is_drawn_at_its_rounded_position_and_nowhere_else():
    cfg = small(sequences=12, length=10, sprite_size=10, canvas=28)
    s = generate_sprites(cfg)
    size = cfg.sprite_size
    corner = s.positions.round().long()
    for n in range(len(s)):
        for t in range(cfg.length):
            x, y = corner[n, t, 0].tolist()
            frame = s.frames[n, t, 0].clone()
            assert torch.equal(frame[y:y + size, x:x + size], s.sprite_images[n, 0, 0])
            frame[y:y + size, x:x + size] = 0
            assert not frame.any()


def test_sprites_and_classes_come_from_their_split_only():
    cfg = small(objects=2)
    banks = {split: sprite_bank(cfg, split, None, False, quiet) for split in ("train", "test")}
    for split in ("train", "test"):
        s = generate_sprites(cfg, split)
        for split_bank in ("train", "test"):
            images, labels, _ = banks[split_bank]
            same = (s.sprite_images.flatten(2)[:, :, None] == images.flatten(1)[None, None]).all(-1)  # (N, K, S)
            if split_bank == split:
                assert same.any(-1).all()
                assert (same & (labels[None, None] == s.classes[..., None])).any(-1).all()
            else:
                assert not same.any()


def test_leaves_are_white_squares_at_their_positions_redrawn_every_frame():
    cfg = small(distractors=4, distractor_size=3, objects=2)
    s = generate_sprites(cfg)
    d = s.distractors
    assert torch.equal(d, d.round()) and d.min() >= 0 and d.max() <= cfg.canvas - cfg.distractor_size
    corner = d.long()
    for n in range(len(s)):
        for t in range(cfg.length):
            for j in range(cfg.distractors):
                x, y = corner[n, t, j].tolist()
                assert (s.frames[n, t, 0, y:y + 3, x:x + 3] == 255).all()
    assert not torch.equal(d[:, 0], d[:, 1])


# --------------------------------------------------------------------------------------------
# Dynamics
# --------------------------------------------------------------------------------------------


def test_positions_follow_velocities_and_bounce_and_speeds_stay_constant():
    cfg = small(sequences=64, length=12, objects=3, speed=(1.0, 3.0))
    s = generate_sprites(cfg)
    lim = limit(cfg)
    p, v = s.positions, s.velocities
    assert p.min() >= 0 and p.max() <= lim
    assert s.positions.round().min() >= 0 and s.positions.round().max() <= lim
    flips = 0
    for t in range(cfg.length - 1):
        p_next, v_next = bounce(p[:, t] + v[:, t], v[:, t], lim)
        assert torch.allclose(p[:, t + 1], p_next, atol=1e-5)
        assert torch.equal(v[:, t + 1], v_next)
        flips += int((v_next != v[:, t]).sum())
    assert flips > 10  # walls were hit
    speed = v.norm(dim=-1)
    assert torch.allclose(speed, speed[:, :1].expand_as(speed), atol=1e-5)
    assert speed.min() >= 1 - 1e-5 and speed.max() <= 3 + 1e-5


def test_steps_longer_than_the_canvas_bounce_several_times():
    cfg = small(canvas=16, sprite_size=10, speed=(13.0, 20.0))
    s = generate_sprites(cfg)
    assert s.positions.min() >= 0 and s.positions.max() <= limit(cfg)
    speed = s.velocities.norm(dim=-1)
    assert torch.allclose(speed, speed[:, :1].expand_as(speed), atol=1e-4)


def test_pushes_change_the_controlled_velocity_by_the_action():
    cfg = small(sequences=300, length=8, objects=2, controlled=True, push_p=0.3, push=1.0, max_speed=4.0)
    s = generate_sprites(cfg)
    a, v, lim = s.actions, s.velocities, limit(cfg)
    assert not a[:, -1].any()
    pushed = a[:, :-1].ne(0).any(-1)
    assert abs(pushed.float().mean().item() - cfg.push_p) < 0.05
    assert a.abs().max() <= cfg.push
    clipped = 0
    for t in range(cfg.length - 1):
        _, carried = bounce(s.positions[:, t] + v[:, t], v[:, t], lim)
        assert torch.equal(v[:, t + 1, 1:], carried[:, 1:])  # the other sprite ignores the pushes
        wanted = carried[:, 0] + a[:, t + 1]
        free = wanted.norm(dim=-1) <= cfg.max_speed
        assert torch.equal(v[free, t + 1, 0], wanted[free])
        assert torch.allclose(v[free, t + 1, 0] - carried[free, 0], a[free, t + 1], atol=1e-6)
        clipped += int((~free).sum())
    assert (v[:, :, 0].norm(dim=-1) <= cfg.max_speed + 1e-5).all()
    slow = generate_sprites(dataclasses.replace(cfg, max_speed=1.5))
    speed0 = slow.velocities[:, :, 0].norm(dim=-1)
    assert (speed0 <= 1.5 + 1e-5).all() and (speed0 > 1.5 - 1e-4).any()


# --------------------------------------------------------------------------------------------
# As a training dataset
# --------------------------------------------------------------------------------------------


def test_sprites_dataset_frames_and_clips():
    video = small(objects=2, distractors=1, test_sequences=4)
    seqs = generate_sprites(video)
    test_seqs = generate_sprites(video, "test")
    lines = []
    ds = load_sprites_dataset(DataConfig(dataset="sprites", video=video), lines.append)
    assert ds.name == "sprites" and ds.channels == 1 and ds.image_size == 32 and ds.classes == seqs.class_names
    assert ds.train is ds.train_labeled
    assert torch.equal(ds.train.images, seqs.frames_flat())
    assert torch.equal(ds.train.labels, seqs.classes[:, 0].repeat_interleave(video.length))
    assert torch.equal(ds.test.images, test_seqs.frames_flat()) and len(ds.test) == 4 * video.length
    assert torch.equal(ds.test.labels, test_seqs.classes[:, 0].repeat_interleave(video.length))
    assert len(lines) == 1 and "16 train / 4 test sequences x 8 frames" in lines[0]

    clips = load_dataset(DataConfig(dataset="sprites", video=video, temporal_offset=2), quiet)
    assert clips.channels == 1 and clips.train is not clips.train_labeled
    assert clips.train.images.shape == (16, 8, 32, 32)
    for t in range(video.length):
        assert torch.equal(clips.train.images[:, t:t + 1], seqs.frames[:, t])
    assert torch.equal(clips.train.labels, seqs.classes[:, 0])
    assert torch.equal(clips.train_labeled.images, seqs.frames_flat())


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="needs apt-get install dataset-fashion-mnist")
def test_fashion_mnist_sprites(tmp_path):
    cfg = small(sprites="fashion-mnist", test_sequences=4, sprite_size=14)
    s = generate_sprites(cfg, "test", data_dir=str(tmp_path), download=False)
    assert s.class_names == FASHION_MNIST_CLASSES
    assert s.frames.shape == (4, 8, 1, 32, 32) and s.sprite_images.shape == (4, 1, 1, 14, 14)
    assert s.classes.min() >= 0 and s.classes.max() <= 9
    x, y = s.positions[2, 5, 0].round().long().tolist()
    assert torch.equal(s.frames[2, 5, 0, y:y + 14, x:x + 14], s.sprite_images[2, 0, 0])


# --------------------------------------------------------------------------------------------
# Moving MNIST
# --------------------------------------------------------------------------------------------


def fake_moving_mnist(root: Path, sequences: int = 10, length: int = 20) -> np.ndarray:
    """torchvision's layout: <root>/MovingMNIST/mnist_test_seq.npy holding uint8 (T, N, 64, 64)."""
    data = np.random.default_rng(0).integers(0, 256, (length, sequences, 64, 64), dtype=np.uint8)
    (root / "MovingMNIST").mkdir(parents=True)
    np.save(root / "MovingMNIST" / "mnist_test_seq.npy", data)
    return data


def test_moving_mnist_splits_whole_sequences(tmp_path):
    data = torch.from_numpy(fake_moving_mnist(tmp_path)).transpose(0, 1)[:, :, None]  # (N, T, 1, H, W)
    train = load_moving_mnist(str(tmp_path), download=False, split="train")
    test = load_moving_mnist(str(tmp_path), download=False, split="test")
    assert train.frames.shape == (9, 20, 1, 64, 64) and test.frames.shape == (1, 20, 1, 64, 64)
    assert torch.equal(train.frames, data[:9]) and torch.equal(test.frames, data[9:])
    for name in FIELDS:
        assert getattr(train, name) is None or name == "frames"
    assert train.class_names == []
    with pytest.raises(ValueError, match="split='val'"):
        load_moving_mnist(str(tmp_path), download=False, split="val")


def test_moving_mnist_dataset(tmp_path):
    data = torch.from_numpy(fake_moving_mnist(tmp_path)).transpose(0, 1)[:, :, None]
    cfg = DataConfig(dataset="moving-mnist", data_dir=str(tmp_path), download=False)
    ds = load_dataset(cfg, quiet)
    assert ds.name == "moving-mnist" and ds.classes == [] and ds.channels == 1 and ds.image_size == 64
    assert ds.train is ds.train_labeled and ds.train.images.shape == (180, 1, 64, 64)
    assert torch.equal(ds.train.images, data[:9].reshape(180, 1, 64, 64))
    assert torch.equal(ds.test.images, data[9:].reshape(20, 1, 64, 64))
    assert (ds.train.labels == -1).all() and (ds.test.labels == -1).all()
    clips = load_moving_mnist_dataset(dataclasses.replace(cfg, temporal_offset=3), quiet)
    assert clips.train.images.shape == (9, 20, 64, 64) and torch.equal(clips.train.images[:, 7], data[:9, 7, 0])
    assert torch.equal(clips.train.labels, torch.full((9,), -1))


def test_moving_mnist_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_moving_mnist(str(tmp_path), download=False, split="train")
    assert str(tmp_path / "MovingMNIST" / "mnist_test_seq.npy") in str(err.value)
    assert "--data.download true" in str(err.value)
