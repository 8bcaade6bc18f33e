"""The sequences an encoder run saw, made again (seeded) with their labels, and their embeddings by the run's
frozen encoder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..config import Config, PredictorConfig
from ..data.episodes import episode_length, load_episode_sequences
from ..data.sprites import generate_sprites
from ..data.video import Sequences, load_moving_mnist
from ..evaluate import extract_outputs
from ..loaded_run import LoadedRun
from ..rundir import CONFIG, read_config

__all__ = ["VIDEO_DATASETS", "load_sequences", "check_video_run", "embed_frames", "embed_sequences", "actions_of",
           "spread"]

VIDEO_DATASETS = ("sprites", "moving-mnist", "episodes")
MOVING_MNIST_FRAMES = 20


def load_sequences(cfg: Config, split: str) -> Sequences:
    """The sequences (with labels where the source has them) of an encoder run's dataset."""
    if cfg.data.dataset == "sprites":
        return generate_sprites(cfg.data.video, split, cfg.data.data_dir)
    if cfg.data.dataset == "moving-mnist":
        return load_moving_mnist(cfg.data.data_dir, cfg.data.download, split)
    if cfg.data.dataset == "episodes":
        return load_episode_sequences(cfg.data, split)
    raise ValueError(f"the run was trained on data.dataset={cfg.data.dataset!r}, not on video: a world model needs "
                     "a run on sprites, moving-mnist or collected episodes (e.g. vicreg train --preset sprites)")


def check_video_run(run_dir: Path, cfg: PredictorConfig | None = None) -> Config:
    """The run's config, after checking (before any work) that it is a video run whose sequences are long
    enough for the predictor's context and training horizon."""
    run_cfg = read_config(run_dir)
    if run_cfg.data.dataset not in VIDEO_DATASETS:
        try:
            load_sequences(run_cfg, "train")  # raises the explanation
        except ValueError as e:
            raise ValueError(f"{Path(run_dir) / CONFIG}: {e}") from None
    if run_cfg.data.dataset == "sprites":
        length = run_cfg.data.video.length
    elif run_cfg.data.dataset == "episodes":
        length = episode_length(run_cfg.data)
    else:
        length = MOVING_MNIST_FRAMES
    if cfg is not None and cfg.context + cfg.train_horizon > length:
        raise ValueError(f"predictor.context={cfg.context} plus predictor.train_horizon={cfg.train_horizon} does "
                         f"not fit in the run's sequences of {length} frames (need context + horizon <= {length})")
    return run_cfg


@torch.no_grad()
def embed_frames(run: LoadedRun, frames: Tensor, batch_size: int = 1024) -> Tensor:
    """Embeddings (N, E) on the run's device of uint8 frames (N, C, H, W) by the run's frozen encoder (eval mode,
    resized to its input size, in batches of ``batch_size``)."""
    chunks = ((frames[i:i + batch_size].to(run.device), torch.zeros(0)) for i in range(0, len(frames), batch_size))
    out, _ = extract_outputs(run.model, chunks, run.input_size, run.amp, run.channels_last, ("embedding",))
    return out["embedding"]


def embed_sequences(run: LoadedRun, seq: Sequences, batch_size: int = 1024) -> Tensor:
    """Embeddings (N, T, E), float32 on the CPU, of every frame of ``seq`` by the run's frozen encoder."""
    n, t = seq.frames.shape[:2]
    return embed_frames(run, seq.frames_flat(), batch_size).cpu().view(n, t, -1)


def actions_of(seq: Sequences, cfg: PredictorConfig) -> Tensor | None:
    """The pushes of the sequences when the predictor uses them (predictor.use_actions) and they have any."""
    return seq.actions if (cfg.use_actions and seq.actions is not None) else None


def spread(n: int, count: int) -> Tensor:
    """``min(n, count)`` indices evenly spread over 0..n-1 (all of them when count >= n, at least one)."""
    if count >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, max(count, 1)).round().long()
