"""What a training run holds: the :class:`Session` built once, the :class:`Progress` that changes as it goes, and
the :class:`RunResult` it returns. All are built with keywords."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import Config
from ..data import Batches, ImageDataset
from ..distributed import Dist
from ..models import VICReg
from ..schedule import warmup_cosine
from ..step import Step

__all__ = ["RunResult", "RunBatches", "Session", "Progress"]


@dataclass(kw_only=True)
class RunResult:
    """What :func:`vicreg.train` returns."""

    run_dir: Path
    step: int
    epochs_done: float
    knn: dict[int, float] = field(default_factory=dict)  # k -> top-1 % of the embedding on the test split
    knn_raw_pixels: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0  # training time of this invocation (evaluation, diagnostics, checkpoints excluded)
    images_per_s: float = 0.0  # two-view images per second over this invocation
    interrupted: bool = False
    resume_command: str = ""  # how to continue an interrupted run (vicreg or torchrun)
    start_epoch: float = 0.0  # where this invocation started (a resumed run: its checkpoint's epoch)
    summary: dict = field(default_factory=dict)  # summary.json of a finished run (what it wrote)


@dataclass(kw_only=True)
class RunBatches:
    """The uint8 batches a run reads, on the device (or streamed)."""

    train: Batches  # shuffled; this process's shard of every global batch
    bank: Batches  # labelled training images: the k-NN bank
    test: Batches
    diagnostics: Batches  # a fixed, evenly spread sample of the test split: collapse diagnostics


@dataclass(kw_only=True)
class Session:
    """Everything :func:`vicreg.training.setup.set_up` builds for a run; fixed while it runs."""

    cfg: Config
    run_dir: Path
    log: Callable[[str], None]
    device: torch.device
    dataset: ImageDataset
    input_size: int
    labelled: bool  # k-NN evaluation needs labels in the bank and the test split
    batches: RunBatches
    model: VICReg  # the model itself (the step calls it through DDP in a job)
    augment: nn.Module
    generator: torch.Generator  # the augmentations' randomness
    step_fn: Step  # one optimisation step; holds the optimiser and the plan (autocast, channels_last, ...)
    schedule: dict  # total_steps, warmup_steps, peak_lr, final_lr_ratio (saved in the checkpoint)
    dist: Dist = field(default_factory=Dist)  # this process's rank in a data-parallel job (one process: 0 of 1)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.step_fn.optimizer

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batches.train)

    @property
    def total_steps(self) -> int:
        return self.schedule["total_steps"]

    def learning_rate(self, step: int) -> float:
        s = self.schedule
        return warmup_cosine(step, s["total_steps"], s["warmup_steps"], s["peak_lr"], s["final_lr_ratio"])


@dataclass(kw_only=True)
class Progress:
    """What changes as the run goes; a checkpoint keeps step, knn and the training seconds."""

    step: int = 0
    knn: dict[int, float] = field(default_factory=dict)  # the latest k-NN evaluation
    seconds_before: float = 0.0  # training seconds of earlier invocations (a resumed run)
    collapse: str = ""  # the latest collapse diagnostics in a few words (progress bar, log)
    collapse_final: dict = field(default_factory=dict)  # the latest diagnostics' scalars (summary.json)
