"""The pixel baseline of planning: the world model's predictor, trained the same way on pooled pixels instead of
the encoder's embedding, so that planning measures what the encoder adds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from ..loaded_run import LoadedRun
from ..rundir import PIXEL_PREDICTOR
from .baseline_fit import baseline_predictor
from .fit import FitResult

__all__ = ["PIXEL_POOL", "pixel_embedding", "pixel_predictor"]

PIXEL_POOL = 2  # the pixel baseline's "embedding": the frame average-pooled by 2 (16 x 16 = 256-D for 32 x 32)


def pixel_embedding(frames: Tensor) -> Tensor:
    """The pixel baseline's embedding: uint8 frames (N, C, H, W) in [0, 1], average-pooled by 2, flattened."""
    return F.avg_pool2d(frames.float() / 255, PIXEL_POOL).flatten(1)


def pixel_predictor(run: LoadedRun, fit: FitResult, out: Path, log: Callable[[str], None]) -> FitResult:
    """The pixel baseline: the world model's predictor architecture and training, on pixel embeddings; trained
    once and kept in plan/pixel_predictor.pt (retrained when the world model's predictor settings change)."""
    t0 = time.perf_counter()
    result, trained = baseline_predictor(
        run, fit, out / PIXEL_PREDICTOR,
        lambda seq: pixel_embedding(seq.frames_flat()).view(len(seq), seq.frames.shape[1], -1), log)
    if trained:
        log(f"trained the pixel baseline's predictor ({fit.cfg.model}, {result.dim}-D pooled pixels, "
            f"{fit.cfg.epochs} epochs) in {time.perf_counter() - t0:.1f} s; val 1-step MSE "
            f"{result.history[-1]['val_loss']:.4f}")
    return result
