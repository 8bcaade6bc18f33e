"""Collected environment episodes (``vicreg collect``, :mod:`vicreg.envs.episodes`) as video sequences: what the
frame encoder trains on (``data.dataset episodes``, temporal views) and what the predictor learns to roll out.

The folder's episodes are split in order: the last ``data.test_fraction`` of them (at least one) are the test
split. Every ``data.frame_skip``-th frame is kept, resized to ``data.image_size`` (bilinear, anti-aliased, kept as
bytes); the ``frame_skip`` actions between two kept frames become one action (concatenated), each in the model's
units: the environment's action box scaled to [-1, 1], or with ``data.relative_actions`` relative to the agent's
position (:mod:`vicreg.envs.action_units`). With ``data.frame_phases`` the training split also holds the sequences
that start 1 to ``frame_skip - 1`` frames into every episode (``frame_skip`` times the clips and predictor windows
from the same episodes; all sequences then span ``(steps - frame_skip + 1) // frame_skip`` kept steps). Episodes
that ended early (fewer frames than the folder's steps give) are left out, so that all sequences have one length.
Where the environment's spec names positions in its state (Push-T: the pusher and the block), they are the
sequences' ``positions`` (the probes' targets), their frame-to-frame differences the ``velocities``; the whole
state is kept as ``states``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..config import DataConfig
from ..envs.action_units import action_units
from ..envs.episodes import EpisodeFolder
from ..envs.specs import spec_of
from ..image_ops import resize_uint8
from .dataset import ImageDataset, Log
from .video import SPLITS, Sequences, check_split, no_label, quiet, train_note, video_dataset

__all__ = ["episode_length", "load_episode_sequences", "load_episodes_dataset", "native_episode_size"]


def _folder(cfg: DataConfig) -> EpisodeFolder:
    if cfg.data_dir is None:
        raise ValueError("data.dataset episodes needs --data.data_dir pointing at a folder made by vicreg collect")
    return EpisodeFolder(cfg.data_dir)


def native_episode_size(cfg: DataConfig) -> int:
    """The side of the collected frames (the folder's collection.json), without reading an episode."""
    return int(_folder(cfg).meta["frame_shape"][0])


def _kept_steps(steps: int, cfg: DataConfig) -> int:
    """Environment steps a sequence spans: a multiple of the frame skip, leaving room for the phases."""
    return (steps - (cfg.frame_skip - 1 if cfg.frame_phases else 0)) // cfg.frame_skip * cfg.frame_skip


def episode_length(cfg: DataConfig) -> int:
    """Frames per sequence after the frame skip."""
    return _kept_steps(_folder(cfg).meta["steps"], cfg) // cfg.frame_skip + 1


def _split_indices(folder: EpisodeFolder, cfg: DataConfig, split: str) -> list[int]:
    indices = folder.indices()
    if len(indices) < 2:
        raise ValueError(f"{folder.root} holds {len(indices)} episode(s): a train and a test split need at least 2")
    n_test = min(len(indices) - 1, max(1, round(len(indices) * cfg.test_fraction)))
    return indices[:-n_test] if split == "train" else indices[-n_test:]


def load_episode_sequences(cfg: DataConfig, split: str, log: Log = quiet) -> Sequences:
    """The ``split`` of the collection in ``cfg.data_dir`` as :class:`Sequences` (see the module docstring)."""
    check_split(split)
    folder = _folder(cfg)
    meta, k = folder.meta, cfg.frame_skip
    spec = spec_of(meta["env_id"])
    size = cfg.image_size or meta["frame_shape"][0]
    steps = _kept_steps(meta["steps"], cfg)
    if steps < k:
        raise ValueError(f"data.frame_skip={k} is larger than the episodes' {meta['steps']} steps")
    units = action_units(meta, spec, cfg.relative_actions)
    phases = range(k) if cfg.frame_phases and split == "train" else range(1)
    frames, actions, states, short = [], [], [], 0
    for i in _split_indices(folder, cfg, split):
        ep = folder.read(i)
        if len(ep) < steps + phases[-1]:
            short += 1
            continue
        resized = resize_uint8(torch.from_numpy(ep.frames[:steps + phases[-1] + 1]).permute(0, 3, 1, 2), size)
        scaled = units.to_model(ep.actions, None if ep.states is None else ep.states[:-1])
        for o in phases:
            frames.append(resized[o:o + steps + 1:k])  # (L, 3, size, size)
            grouped = scaled[o:o + steps].reshape(steps // k, -1)
            actions.append(torch.from_numpy(np.concatenate([grouped, np.zeros_like(grouped[:1])])))
            if ep.states is not None:
                states.append(torch.from_numpy(ep.states[o:o + steps + 1:k]))
    if not frames:
        raise ValueError(f"no episode of the {split} split of {folder.root} has {steps} steps ({short} ended early)")
    if short:
        log(f"episodes: left out {short} {split} episode(s) that ended before {steps} steps")
    st = torch.stack(states) if states else None
    positions = velocities = None
    if st is not None and spec.positions:
        positions = torch.stack([st[..., list(xy)] for xy in spec.positions], dim=2).float()  # (N, L, K, 2)
        velocities = torch.cat([positions[:, 1:] - positions[:, :-1], torch.zeros_like(positions[:, :1])], dim=1)
    return Sequences(torch.stack(frames), positions, velocities, torch.stack(actions), None, None, [], None, st)


def load_episodes_dataset(cfg: DataConfig, log: Log = print) -> ImageDataset:
    """Collected episodes as an unlabelled ImageDataset: single frames, or clips for temporal views."""
    start = time.perf_counter()
    train, test = (load_episode_sequences(cfg, s, log) for s in SPLITS)
    seconds = time.perf_counter() - start
    ds = video_dataset("episodes", [], train, test, cfg.temporal_offset, no_label)
    _, length, c, h, w = train.frames.shape
    log(f"episodes: {len(train)} train / {len(test)} test episodes of {_folder(cfg).meta['env_id']} x {length} "
        f"frames (frame skip {cfg.frame_skip}), {c}x{h}x{w}, from {cfg.data_dir} in {seconds:.2f} s; "
        f"{train_note(ds, cfg.temporal_offset)}")
    return ds
