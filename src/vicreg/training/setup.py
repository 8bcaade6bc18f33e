"""Setting a run up: the run directory, the device, the data on it, the model, the augmentation and the step.

:func:`set_up` builds the :class:`~vicreg.training.state.Session` a run keeps while it trains. In a
data-parallel job only rank 0 writes the run directory and logs; every process builds the same model (rank
0's weights, which DDP broadcasts) and draws its own augmentations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..augment import TemporalViews, TwoViews
from ..backbones import input_size
from ..config import Config, ConfigError
from ..data import Batches, ImageDataset, load_dataset, spread_subset
from ..data.dataset import channel_stats, stats_sample
from ..device import resolve_device
from ..distributed import Dist, barrier, broadcast_object
from ..models import build_model
from ..optim import peak_lr
from ..rundir import RunLock, RunLog, create_run_dir
from ..step import Step
from .state import RunBatches, Session

__all__ = ["set_up", "default_run_dir", "check_world", "make_batches", "describe", "AUGMENT_SEED_STRIDE"]

AUGMENT_SEED_STRIDE = 1_000_003  # rank r's augmentations draw from seed + r * this


def default_run_dir(cfg: Config) -> Path:
    """train.out_dir/<name>, or train.out_dir/<preset>-<time>[-N] when no name is given."""
    name = cfg.train.name or f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(cfg.train.out_dir) / name
    suffix = 1
    while path.exists() and cfg.train.name is None:
        suffix += 1
        path = Path(cfg.train.out_dir) / f"{name}-{suffix}"
    return path


def check_world(cfg: Config, dist: Dist) -> None:
    """train.batch_size is the global batch: it must split into equal shards of at least 2 (the variance)."""
    b, w = cfg.train.batch_size, dist.world
    if b % w:
        raise ConfigError(f"train.batch_size={b} is not valid with {w} processes: the global batch must divide "
                          f"evenly among them (e.g. {b - b % w or w})")
    if b // w < 2:
        raise ConfigError(f"train.batch_size={b} is not valid with {w} processes: each would get {b // w} images, "
                          f"and the variance needs at least 2 per process")


def make_batches(cfg: Config, dataset: ImageDataset, device: torch.device, log, dist: Dist) -> RunBatches:
    """uint8 batches on the device (or streamed): train (shuffled; this process's shard of every global batch),
    bank, test and the diagnostics sample."""
    t = cfg.train
    if len(dataset.train) < t.batch_size:
        raise ValueError(f"train.batch_size={t.batch_size} is larger than the {len(dataset.train)} training images")
    common = dict(placement=cfg.data.placement, num_workers=cfg.data.num_workers,
                  max_device_fraction=cfg.data.max_device_fraction, seed=t.seed, log=log)
    eval_bs = max(256, t.batch_size)
    return RunBatches(
        train=Batches(dataset.train, t.batch_size // dist.world, device, shuffle=True, drop_last=True,
                      shard=(dist.rank, dist.world), **common),
        bank=Batches(dataset.train_labeled, eval_bs, device, shuffle=False, drop_last=False, **common),
        test=Batches(dataset.test, eval_bs, device, shuffle=False, drop_last=False, **common),
        diagnostics=Batches(spread_subset(dataset.test, t.diagnostics_samples), eval_bs, device, shuffle=False,
                            drop_last=False, **common))


def set_up(cfg: Config, run_dir: Path, echo: Callable[[str], None], dist: Dist = Dist(),
           lock: RunLock | None = None, resume: bool = False) -> Session:
    """Device, run directory and seeds; data on the device; model, augmentation and the step (which builds the
    optimiser). In a data-parallel job only rank 0 writes the run directory (holding ``lock`` on it) and logs."""
    device = resolve_device(cfg.train.device)  # a bad device stops here, before the run directory exists
    if dist.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    _make_run_dir(run_dir, cfg, dist, lock, resume)
    log = RunLog(run_dir, echo) if dist.main else _quiet
    torch.manual_seed(cfg.train.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolution kernels

    if not dist.main:
        barrier()  # rank 0 loads first: a download happens once, then the others find the files
    dataset = load_dataset(cfg.data, log=log)
    if dist.main:
        barrier()
    size = input_size(cfg.model.backbone, dataset.image_size, cfg.data.image_size, log)
    batches = make_batches(cfg, dataset, device, log, dist)
    mean, std = channel_stats(stats_sample(dataset, whole_clips=bool(cfg.data.temporal_offset)))

    model = build_model(cfg.model, dataset.channels, mean, std, size).to(device)
    if dist.rank:  # the weights are rank 0's (DDP broadcasts them); dropout and the like draw per rank
        torch.manual_seed(cfg.train.seed + AUGMENT_SEED_STRIDE * dist.rank)
    if cfg.data.temporal_offset:  # two frames of a clip, up to temporal_offset apart, each augmented
        augment = TemporalViews(cfg.augment, size, dataset.channels, cfg.data.temporal_offset).to(device)
    else:  # two augmentations of one image
        augment = TwoViews(cfg.augment, size).to(device)
    labelled = _labelled(cfg, dataset, log)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.train.seed + AUGMENT_SEED_STRIDE * dist.rank)  # rank 0: the single-process stream
    step_fn = Step(model, cfg, device, dist=dist, log=log)  # decides compilation, batch norm and the update
    steps_per_epoch = len(batches.train)
    schedule = {"total_steps": cfg.train.epochs * steps_per_epoch,
                "warmup_steps": round(cfg.optim.warmup_epochs * steps_per_epoch),
                "peak_lr": peak_lr(cfg.optim, cfg.train.batch_size), "final_lr_ratio": cfg.optim.final_lr_ratio}
    return Session(cfg=cfg, run_dir=run_dir, log=log, device=device, dataset=dataset, input_size=size,
                   labelled=labelled, batches=batches, model=model, augment=augment,
                   generator=generator, step_fn=step_fn, schedule=schedule, dist=dist)


def _make_run_dir(run_dir: Path, cfg: Config, dist: Dist, lock: RunLock | None, resume: bool) -> None:
    """The run directory, made by rank 0; every rank stops with rank 0's one line when it cannot be made."""
    problem = None
    if dist.main:
        try:
            create_run_dir(run_dir, cfg, lock, resume)
        except (RuntimeError, ValueError, OSError) as e:
            problem = str(e)
    problem = broadcast_object(problem)
    if problem:
        raise ConfigError(problem)


def _labelled(cfg: Config, dataset: ImageDataset, log) -> bool:
    """Whether the run evaluates k-NN: the bank and the test split have labels (and k fits the bank)."""
    labelled = bool((dataset.train_labeled.labels >= 0).any()) and bool((dataset.test.labels >= 0).any())
    if not labelled:
        log(f"{dataset.name} has no class labels: no k-NN evaluation (collapse diagnostics still run)")
    bank = int((dataset.train_labeled.labels >= 0).sum())
    if labelled and max(cfg.train.knn_k) > bank:
        raise ConfigError(f"train.knn_k={cfg.train.knn_k} is not valid: the k-NN bank holds {bank} labelled "
                          f"images, so k must be at most {bank}")
    return labelled


def _quiet(msg: str) -> None:
    """The log of ranks other than 0: they print nothing."""


def describe(s: Session) -> str:
    """The run in one line: model, data, schedule, device, precision, data placement, compilation, processes."""
    t = s.cfg.train
    n_params = sum(p.numel() for p in s.model.parameters() if p.requires_grad)
    return (f"run {s.run_dir}: {s.cfg.model.backbone} ({n_params / 1e6:.2f} M trainable parameters) on "
            f"{s.dataset.name}, {s.input_size}x{s.input_size} input, {t.epochs} epochs x {s.steps_per_epoch} steps "
            f"of {t.batch_size}, {s.device.type}{' bf16' if s.step_fn.plan.amp else ' fp32'}, "
            f"data {'on the device' if s.batches.train.resident else 'streamed'}, {s.step_fn.plan.describe()}"
            + (f", {s.dist.world} processes ({s.dist.backend}), {t.batch_size // s.dist.world} images each"
               if s.dist.world > 1 else ""))
