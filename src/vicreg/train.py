"""The training loop: ``train(cfg)`` runs VICReg end to end and writes a run directory (see vicreg.rundir).

Read it top to bottom as a run goes:

1. :func:`set_up` -- run directory, device, data on the device, model, augmentation, optimiser, the step;
2. :func:`restore` -- a resumed run's weights, optimiser, step and RNG states from ``checkpoint.pt``;
3. :func:`train_epoch` -- the steps of one epoch: learning rate, step (vicreg.step), metrics;
4. :func:`end_of_epoch` -- collapse diagnostics, k-NN evaluation and a checkpoint, as ``train.*`` asks;
5. :func:`finish` -- the raw-pixel k-NN baseline and ``summary.json``.

What is built once lives in a :class:`Session`; what changes as the run goes (and what a checkpoint keeps)
in a :class:`Progress`; the clock, the metrics files and the progress bar in a :class:`Meter`.

``train(cfg, resume=True)`` continues a stopped run from ``checkpoint.pt`` and reaches the same weights as
an uninterrupted run (bit-identical on CPU). Ctrl-C finishes the current step, saves a checkpoint and
returns (SIGTERM too); a second signal aborts at once.
"""

from __future__ import annotations

import inspect
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from .augment import TemporalViews, TwoViews
from .backbones import input_size
from .config import Config, ConfigError
from .data import Batches, ImageDataset, load_dataset, spread_subset
from .data.dataset import channel_stats, stats_sample
from .device import autocast_dtype, resolve_device, synchronize
from .diagnostics import brief, collapse_diagnostics
from .distributed import (
    Dist,
    Vote,
    all_reduce_mean,
    barrier,
    broadcast_object,
    gather_rows,
    gather_with_grad,
    init_from_env,
)
from .errors import FollowedRank0, JobStopped, first_line
from .evaluate import extract_outputs, knn_accuracy, raw_pixel_features
from .models import VICReg, build_model
from .optim import build_optimizer, load_optimizer_state, peak_lr, set_learning_rate
from .rundir import (
    CHECKPOINT,
    MetricsWriter,
    RunLock,
    RunLog,
    create_run_dir,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    write_json,
)
from .rundir import SUMMARY as SUMMARY_FILE
from .schedule import warmup_cosine
from .step import Step, compiles_update, per_view_batchnorm, resolve_compile

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 images (B, C, H, W), int64 labels (B,)

__all__ = ["train", "RunResult", "Session", "Progress", "set_up", "restore", "train_epoch", "end_of_epoch",
           "finish", "default_run_dir"]


@dataclass
class RunResult:
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


@dataclass
class Session:
    """Everything :func:`set_up` builds for a run; fixed while it runs."""

    cfg: Config
    run_dir: Path
    log: RunLog
    device: torch.device
    amp: torch.dtype | None  # autocast dtype, None for fp32
    channels_last: bool
    dataset: ImageDataset
    input_size: int
    labelled: bool  # k-NN evaluation needs labels in the bank and the test split
    train_batches: Batches
    bank_batches: Batches  # labelled training images: the k-NN bank
    test_batches: Batches
    diag_batches: Batches  # a fixed, evenly spread sample of the test split: collapse diagnostics
    model: VICReg
    augment: nn.Module
    generator: torch.Generator  # the augmentations' randomness
    optimizer: torch.optim.Optimizer
    step_fn: Step
    schedule: dict  # total_steps, warmup_steps, peak_lr, final_lr_ratio (saved in the checkpoint)
    dist: Dist = field(default_factory=Dist)  # this process's rank in a data-parallel job (one process: 0 of 1)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_batches)

    @property
    def total_steps(self) -> int:
        return self.schedule["total_steps"]

    def learning_rate(self, step: int) -> float:
        s = self.schedule
        return warmup_cosine(step, s["total_steps"], s["warmup_steps"], s["peak_lr"], s["final_lr_ratio"])


@dataclass
class Progress:
    """What changes as the run goes; a checkpoint keeps step, knn and the training seconds."""

    step: int = 0
    knn: dict[int, float] = field(default_factory=dict)  # the latest k-NN evaluation
    seconds_before: float = 0.0  # training seconds of earlier invocations (a resumed run)
    collapse: str = ""  # the latest collapse diagnostics in a few words (progress bar, log)
    collapse_final: dict = field(default_factory=dict)  # the latest diagnostics' scalars (summary.json)


# --------------------------------------------------------------------------------------------
# 1. Set-up
# --------------------------------------------------------------------------------------------


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


def _batches(cfg: Config, dataset: ImageDataset, device: torch.device, log, dist: Dist) -> tuple[Batches, ...]:
    """uint8 batches on the device (or streamed): train (shuffled; this process's shard of every global batch),
    bank, test and the diagnostics sample."""
    t = cfg.train
    if len(dataset.train) < t.batch_size:
        raise ValueError(f"train.batch_size={t.batch_size} is larger than the {len(dataset.train)} training images")
    common = dict(placement=cfg.data.placement, num_workers=cfg.data.num_workers,
                  max_device_fraction=cfg.data.max_device_fraction, seed=t.seed, log=log)
    eval_bs = max(256, t.batch_size)
    return (Batches(dataset.train, t.batch_size // dist.world, device, shuffle=True, drop_last=True,
                    shard=(dist.rank, dist.world), **common),
            Batches(dataset.train_labeled, eval_bs, device, shuffle=False, drop_last=False, **common),
            Batches(dataset.test, eval_bs, device, shuffle=False, drop_last=False, **common),
            Batches(spread_subset(dataset.test, t.diagnostics_samples), eval_bs, device, shuffle=False,
                    drop_last=False, **common))


def set_up(cfg: Config, run_dir: Path, echo: Callable[[str], None], dist: Dist = Dist(),
           lock: RunLock | None = None, resume: bool = False) -> Session:
    """Device, run directory and seeds; data on the device; model, augmentation, optimiser and the step.
    In a data-parallel job only rank 0 writes the run directory (holding ``lock`` on it) and logs."""
    device = resolve_device(cfg.train.device)  # a bad device stops here, before the run directory exists
    if dist.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    problem = None
    if dist.main:
        try:
            create_run_dir(run_dir, cfg, lock, resume)
        except (RuntimeError, ValueError, OSError) as e:
            problem = str(e)
    problem = broadcast_object(problem)  # every rank stops with rank 0's one line
    if problem:
        raise ConfigError(problem)
    log = RunLog(run_dir, echo) if dist.main else _quiet
    amp = autocast_dtype(cfg.train.precision, device)
    torch.manual_seed(cfg.train.seed)
    channels_last = cfg.model.channels_last and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolution kernels

    if not dist.main:
        barrier()  # rank 0 loads first: a download happens once, then the others find the files
    dataset = load_dataset(cfg.data, log=log)
    if dist.main:
        barrier()
    size = input_size(cfg.model.backbone, dataset.image_size, cfg.data.image_size, log)
    batches = _batches(cfg, dataset, device, log, dist)
    mean, std = channel_stats(stats_sample(dataset, whole_clips=bool(cfg.data.temporal_offset)))

    model = build_model(cfg.model, dataset.channels, mean, std).to(device)
    if dist.rank:  # the weights are rank 0's (DDP broadcasts them); dropout and the like draw per rank
        torch.manual_seed(cfg.train.seed + AUGMENT_SEED_STRIDE * dist.rank)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.data.temporal_offset:  # two frames of a clip, up to temporal_offset apart, each augmented
        augment = TemporalViews(cfg.augment, size, dataset.channels, cfg.data.temporal_offset).to(device)
    else:  # two augmentations of one image
        augment = TwoViews(cfg.augment, size).to(device)
    labelled = bool((dataset.train_labeled.labels >= 0).any()) and bool((dataset.test.labels >= 0).any())
    if not labelled:
        log(f"{dataset.name} has no class labels: no k-NN evaluation (collapse diagnostics still run)")
    bank = int((dataset.train_labeled.labels >= 0).sum())
    if labelled and max(cfg.train.knn_k) > bank:
        raise ConfigError(f"train.knn_k={cfg.train.knn_k} is not valid: the k-NN bank holds {bank} labelled "
                          f"images, so k must be at most {bank}")
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.train.seed + AUGMENT_SEED_STRIDE * dist.rank)  # rank 0: the single-process stream
    cfg = _step_config(cfg, device, dist, log)
    t = cfg.train
    optimizer = build_optimizer(cfg.optim, model, t.batch_size, lr_tensor=compiles_update(t, device))
    # both views in one call with per-view batch-norm statistics; compiled as train.compile asks (auto: CUDA)
    step_fn = Step(_data_parallel(model, cfg, dist, device), cfg, optimizer, amp, channels_last, device, log,
                   gather=gather_with_grad if dist.world > 1 else None)
    steps_per_epoch = len(batches[0])
    schedule = {"total_steps": t.epochs * steps_per_epoch,
                "warmup_steps": round(cfg.optim.warmup_epochs * steps_per_epoch),
                "peak_lr": peak_lr(cfg.optim, t.batch_size), "final_lr_ratio": cfg.optim.final_lr_ratio}
    return Session(cfg, run_dir, log, device, amp, channels_last, dataset, size, labelled, *batches, model, augment,
                   generator, optimizer, step_fn, schedule, dist)


AUGMENT_SEED_STRIDE = 1_000_003  # rank r's augmentations draw from seed + r * this


def _quiet(msg: str) -> None:
    """The log of ranks other than 0: they print nothing."""


def _step_config(cfg: Config, device: torch.device, dist: Dist, log) -> Config:
    """The config the step runs under: compilation off (said once) in a data-parallel job, whose collectives
    the compiled step does not capture yet."""
    if dist.world > 1 and resolve_compile(cfg.train, device)[0]:
        log(f"train.compile is off with {dist.world} processes: the compiled step does not capture the all-gather "
            "and the synced batch norm yet (the step runs eagerly)")
        return replace(cfg, train=replace(cfg.train, compile=False))
    return cfg


def _data_parallel(model: nn.Module, cfg: Config, dist: Dist, device: torch.device) -> nn.Module:
    """The model as the step calls it: itself in one process; in a job, with batch norm synced over the
    processes (per view, or over the whole call for joint statistics: vicreg.step's per-view function
    either way) and wrapped in DDP."""
    if dist.world == 1:
        return model
    t = cfg.train
    if t.sync_batchnorm:  # per view (2) or over the whole call (1: joint statistics, or one view per call)
        per_view_batchnorm(model, views=2 if t.stack_views and t.batchnorm == "per_view" else 1, sync=True)
    ddp = nn.parallel.DistributedDataParallel
    # with synced batch norm the buffers (running statistics) stay equal on every process by themselves
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})  # the keyword's name changed in torch 2.14
    return ddp(model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def _describe(s: Session) -> str:
    t = s.cfg.train
    n_params = sum(p.numel() for p in s.model.parameters() if p.requires_grad)
    return (f"run {s.run_dir}: {s.cfg.model.backbone} ({n_params / 1e6:.2f} M trainable parameters) on "
            f"{s.dataset.name}, {s.input_size}x{s.input_size} input, {t.epochs} epochs x {s.steps_per_epoch} steps "
            f"of {t.batch_size}, {s.device.type}{' bf16' if s.amp else ' fp32'}, "
            f"data {'on the device' if s.train_batches.resident else 'streamed'}, "
            + (f"compiled ({t.compile_scope}, {s.step_fn.mode})" if s.step_fn.enabled else "eager")
            + (f", {s.dist.world} processes ({s.dist.backend}), {t.batch_size // s.dist.world} images each"
               if s.dist.world > 1 else ""))


# --------------------------------------------------------------------------------------------
# 2. Resume
# --------------------------------------------------------------------------------------------


def restore(s: Session) -> Progress:
    """Weights, optimiser, step, RNG states, the last k-NN and the training seconds from checkpoint.pt; a run
    stopped before its first checkpoint starts again from step 0 (as it started, so it ends the same)."""
    if not (s.run_dir / CHECKPOINT).exists():
        s.log(f"{s.run_dir} has no checkpoint yet (it stopped before its first): starting it again from step 0")
        return Progress()
    ckpt = load_checkpoint(s.run_dir, map_location=s.device)
    try:
        s.model.load_state_dict(ckpt["model"])
        load_optimizer_state(s.optimizer, ckpt["optimizer"])
    except (KeyError, RuntimeError, ValueError) as e:
        first = first_line(e)
        raise ValueError(f"{s.run_dir / CHECKPOINT} does not fit this run's model and optimiser ({first}); "
                         f"was it copied from another run?") from None
    ranks = ckpt["rng"].get("ranks", [ckpt["rng"]])
    if len(ranks) != s.dist.world:
        raise ConfigError(f"{s.run_dir} was trained by {len(ranks)} process(es): resume it with as many "
                          f"(this job has {s.dist.world})")
    rng = ranks[s.dist.rank]
    torch.set_rng_state(rng["torch"].cpu())
    s.generator.set_state(rng["augment"].cpu())
    if "cuda" in rng and s.device.type == "cuda":
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    p = Progress(step=int(ckpt["step"]), knn={int(k): v for k, v in ckpt["knn"].items()},
                 seconds_before=float(ckpt.get("train_seconds", 0.0)))
    s.log(f"resuming {s.run_dir} at step {p.step}/{s.total_steps} (epoch {p.step // s.steps_per_epoch})")
    return p


# --------------------------------------------------------------------------------------------
# The clock, the metrics and the bar
# --------------------------------------------------------------------------------------------


class TrainClock:
    """A stopwatch of training time: ``pause`` waits for the device's queued work before it stops."""

    def __init__(self, device: torch.device):
        self.device, self.total, self.since = device, 0.0, None

    def start(self) -> None:
        self.since = time.perf_counter()

    def pause(self) -> None:
        if self.since is not None:
            synchronize(self.device)
            self.total += time.perf_counter() - self.since
            self.since = None

    def seconds(self) -> float:
        return self.total + (time.perf_counter() - self.since if self.since is not None else 0.0)


class Meter:
    """The training clock (paused for evaluation, diagnostics and checkpoints), the metrics files, the
    progress bar and the throughput window between flushes."""

    def __init__(self, s: Session, p: Progress):
        from tqdm.auto import tqdm

        self.batch_size = s.cfg.train.batch_size  # global: images/s are the job's
        self.world = s.dist.world
        self.failure: FloatingPointError | None = None  # rank 0's non-finite loss in a job (see Stop.agree)
        factor = s.cfg.train.divergence_factor
        self.metrics = (MetricsWriter(s.run_dir, keep_until_step=p.step, divergence_factor=factor) if s.dist.main
                        else NullMetrics())
        self.bar = tqdm(total=s.total_steps, initial=p.step, unit="step", dynamic_ncols=True,
                        disable=None if s.cfg.train.progress and s.dist.main else True)
        self.clock = TrainClock(s.device)
        self.wall_start = time.perf_counter()
        self.window_time, self.window_step = self.wall_start, p.step
        self.data_wait = 0.0  # seconds the loop waited for its next batch (the loader, when streamed)

    def timed(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """``batches``, adding the host's wait for each to ``data_wait`` (no device sync: on CUDA, resident
        batches are queued at once, so the wait is the loader's alone)."""
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            self.data_wait += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    def flush(self, p: Progress, wait: bool = False) -> None:
        """Write the steps' metrics (see MetricsWriter.flush) and show the latest in the bar."""
        now = time.perf_counter()
        ips = 2 * self.batch_size * (p.step - self.window_step) / max(now - self.window_time, 1e-9)
        reduce = all_reduce_mean if self.world > 1 else None  # the logged terms are the job's: one collective
        try:
            last = self.metrics.flush(ips, wait, reduce)
        except FloatingPointError as e:  # in a job, every process raises it after the same step (Stop.agree)
            if self.world == 1:
                raise
            self.failure, last = self.failure or e, []  # the first one (the vote comes a step later)
        if last:
            loss, inv, var, cov = last
            self.bar.set_postfix_str(f"loss {loss:.3f} inv {inv:.4f} var {var:.3f} cov {cov:.3f} "
                                     f"{p.collapse} {ips:,.0f} img/s", refresh=False)
        self.window_time, self.window_step = now, p.step

    def restart_window(self, step: int) -> None:
        self.window_time, self.window_step = time.perf_counter(), step

    def close(self) -> None:
        self.bar.close()
        self.metrics.close()


class NullMetrics:
    """The metrics of ranks other than 0: nothing is written, but each window's losses join the job's mean
    (``reduce``, a collective every process enters)."""

    def __init__(self):
        self.pending: list[torch.Tensor] = []

    def add(self, step: int, epoch: int, lr: float, terms: torch.Tensor) -> None:
        self.pending.append(terms.detach())

    def flush(self, images_per_s: float, wait: bool = False, reduce=None) -> list[float]:
        if self.pending and reduce is not None:
            reduce(torch.stack(self.pending))
        self.pending.clear()
        return []
    def knn(self, *args) -> None: ...
    def diagnostics(self, *args) -> None: ...
    def close(self) -> None: ...


class Stop:
    """What every process of a job agrees on after each step: whether to stop, to fail, or to save.

    A Ctrl-C (SIGINT) or SIGTERM (Slurm, ``kill``, torchrun stopping the job) sets ``requested``: the loop
    finishes the step, saves a checkpoint and prints the resume command. A second Ctrl-C aborts at once;
    a repeated SIGTERM does not (Slurm and torchrun may both send one; the launcher's SIGKILL follows
    anyway). A checkpoint falls due ``minutes`` after the last one (rank 0's clock). ``now`` (stop) and
    ``save_due`` are what the loop acts on: in one process at once; in a data-parallel job as agreed by a
    :class:`Vote` after every step (one step late, without a wait) and at epoch ends, so every process acts
    after the same step. A failure rank 0 found (a non-finite or blown-up loss) is raised on every process."""

    def __init__(self, d: Dist, minutes: float = 0.0):
        self.requested, self.signal, self.now, self.save_due = False, "", False, False
        self.vote = Vote(d, 3)
        self.main, self.minutes = d.main, minutes
        self.last_save = time.perf_counter()
        self.saves_asked = self.saves_done = self._agreed = 0  # time-due checkpoints, counted (the vote takes max)
        self.last_saved_step = -1

    def agree(self, failure: FloatingPointError | None, wait: bool = False) -> bool:
        """Agree on the stop request, a failure and a due checkpoint; wait: on the flags of now. Returns ``now``."""
        if self.main and self.minutes and time.perf_counter() - self.last_save >= 60 * self.minutes:
            self.saves_asked = self.saves_done + 1
        flags = (self.requested, failure is not None, self.saves_asked)
        requested, failed, asked = self.vote.settle(flags) if wait else self.vote.poll(flags)
        if failed:
            raise failure or FollowedRank0("stopped with rank 0, which found a failing loss")
        self.now, self._agreed = bool(requested), int(asked)
        self.save_due = self._agreed > self.saves_done
        return self.now

    def saved(self, step: int) -> None:
        """A checkpoint was written after ``step``: the next one falls due ``minutes`` from now."""
        self.saves_done, self.save_due, self.last_save = max(self.saves_done, self._agreed), False, time.perf_counter()
        self.last_saved_step = step

    def handler(self, signum: int, frame) -> None:
        if self.requested:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return  # a repeated SIGTERM: already stopping
        self.requested, self.signal = True, signal.Signals(signum).name

    def reason(self) -> str:
        return self.signal or "a stop request from another process"


@contextmanager
def stop_on_signals(d: Dist, minutes: float = 0.0):
    """A :class:`Stop` whose handler catches SIGINT and SIGTERM while the loop runs (not outside the main
    thread, where signals keep their default behaviour)."""
    stop = Stop(d, minutes)
    try:
        previous = {sig: signal.signal(sig, stop.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not in the main thread
        yield stop
        return
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------
# 3. One epoch of steps
# --------------------------------------------------------------------------------------------


def train_epoch(s: Session, p: Progress, meter: Meter, stop: Stop, on_step: Callable[[int], None] | None) -> bool:
    """The remaining steps of the epoch ``p.step`` is in; True when it ran to its end, False when a stop
    request (Ctrl-C, SIGTERM) stopped it in the middle (at an epoch's end, the epoch's own work runs first)."""
    epoch, first = divmod(p.step, s.steps_per_epoch)
    meter.bar.set_description(f"epoch {epoch + 1}/{s.cfg.train.epochs}")
    for images, _ in meter.timed(s.train_batches.epoch(epoch, start=first)):
        lr = s.learning_rate(p.step)
        set_learning_rate(s.optimizer, lr)
        if s.step_fn.pending:  # this call compiles: its time is counted apart from training
            meter.clock.pause()
            terms = s.step_fn(images, s.augment, s.generator)
            meter.clock.start()
        else:
            terms = s.step_fn(images, s.augment, s.generator)
        p.step += 1
        meter.metrics.add(p.step, epoch + 1, lr, terms)
        if p.step % s.cfg.train.log_every == 0:
            meter.flush(p)
        meter.bar.update(1)
        if on_step is not None:
            on_step(p.step)
        if stop.agree(meter.failure) and p.step % s.steps_per_epoch != 0:
            return False
        if stop.save_due and p.step % s.steps_per_epoch != 0:  # at an epoch's end, end_of_epoch saves
            meter.clock.pause()
            save(s, p, meter, stop)
            if stop.now:  # a stop agreed while saving: this checkpoint is the stop's
                return False
            meter.restart_window(p.step)  # the save is not training time
            meter.clock.start()
    return True


# --------------------------------------------------------------------------------------------
# 4. End of an epoch: diagnostics, evaluation, checkpoint
# --------------------------------------------------------------------------------------------


def outputs_on_rank0(s: Session, batches: Batches, levels: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    """The model's outputs at ``levels`` and the labels (key "labels") for every image of the unshuffled
    ``batches``, on rank 0; None on the other ranks. In a data-parallel job each process extracts a contiguous
    run of the batches and rank 0 gathers them in rank order: the very batches, in the very order, that one
    process sees, so the figures are one process's."""
    n, (r, w) = len(batches), (s.dist.rank, s.dist.world)
    lo, hi = n * r // w, n * (r + 1) // w
    found: dict[str, torch.Tensor | None] = dict.fromkeys((*levels, "labels"))
    if hi > lo:
        outputs, labels = extract_outputs(s.model, batches.epoch(0, lo, hi), s.input_size, s.amp, s.channels_last,
                                          levels)
        found = {**outputs, "labels": labels}
    if w > 1:
        found = {key: gather_rows(value) for key, value in found.items()}
    return found if s.dist.main else None  # type: ignore[return-value]


def evaluate_knn(s: Session) -> dict[int, float]:
    """Weighted k-NN top-1 (%) of the embedding: training bank -> test split ({} without labels), the same
    on every process."""
    if not s.labelled:
        return {}
    bank = outputs_on_rank0(s, s.bank_batches, ("embedding",))
    test = outputs_on_rank0(s, s.test_batches, ("embedding",))
    t = s.cfg.train
    acc = {}
    if bank is not None and test is not None:
        acc = knn_accuracy(bank["embedding"], bank["labels"], test["embedding"], test["labels"], ks=t.knn_k,
                           temperature=t.knn_temperature)
    return broadcast_object(acc)


def diagnose(s: Session, p: Progress, metrics: MetricsWriter, epoch_done: int) -> None:
    """Collapse diagnostics of the embedding and the projection of the fixed test sample: diagnostics.jsonl,
    and a few words in ``p.collapse`` (rank 0)."""
    outputs = outputs_on_rank0(s, s.diag_batches, ("embedding", "projection"))
    if outputs is None:
        return
    outputs.pop("labels")
    found = {level: collapse_diagnostics(z, s.cfg.loss.gamma, s.cfg.loss.eps) for level, z in outputs.items()}
    metrics.diagnostics({"step": p.step, "epoch": epoch_done, "target": s.cfg.loss.gamma,
                         **{level: d.to_dict() for level, d in found.items()}})
    p.collapse_final = {level: d.scalars() for level, d in found.items()}
    p.collapse = brief(found["embedding"], found["projection"])


def checkpoint(s: Session, p: Progress, seconds: float) -> None:
    """checkpoint.pt, written by rank 0 with the random states of every process."""
    rngs = None
    if s.dist.world > 1:
        rngs = [None] * s.dist.world
        torch.distributed.all_gather_object(rngs, {k: _cpu(v) for k, v in rng_state(s.generator).items()})
    if s.dist.main:
        save_checkpoint(s.run_dir, s.cfg, s.model, s.optimizer, p.step, s.schedule, s.generator, p.knn,
                        p.seconds_before + seconds, rank_rngs=rngs, input_size=s.input_size)
    barrier()


def _cpu(state):
    return [t.cpu() for t in state] if isinstance(state, list) else state.cpu()


def end_of_epoch(s: Session, p: Progress, meter: Meter, epoch_done: int, stop: Stop) -> None:
    """What train.* asks for after ``epoch_done`` epochs (the last one does everything), off the clock. A
    checkpoint after the first epoch, every train.checkpoint_every epochs, the last, and when one is due by
    time (train.checkpoint_minutes)."""
    t = s.cfg.train
    last = epoch_done == t.epochs
    _measure(s, p, meter, epoch_done, last)  # every process extracts its share, rank 0 measures
    if last or epoch_done == 1 or stop.save_due or (t.checkpoint_every and epoch_done % t.checkpoint_every == 0):
        checkpoint(s, p, meter.clock.seconds())
        stop.saved(p.step)


def save(s: Session, p: Progress, meter: Meter, stop: Stop) -> None:
    """A checkpoint between epochs (due by time, or a stop): the steps' metrics are written and checked first,
    so a failing loss is raised before anything is saved over the last checkpoint."""
    meter.flush(p, wait=True)
    stop.agree(meter.failure, wait=True)
    checkpoint(s, p, meter.clock.seconds())
    stop.saved(p.step)


def _measure(s: Session, p: Progress, meter: Meter, epoch_done: int, last: bool) -> None:
    """Collapse diagnostics and k-NN evaluation, as train.* asks, logged."""
    t = s.cfg.train
    if last or (t.diagnostics_every and epoch_done % t.diagnostics_every == 0):
        diagnose(s, p, meter.metrics, epoch_done)
    if last or (t.knn_every and epoch_done % t.knn_every == 0):
        p.knn = evaluate_knn(s)
        if p.knn:
            meter.metrics.knn(p.step, epoch_done, p.seconds_before + meter.clock.seconds(), p.knn)
        parts = ["k-NN " + ", ".join(f"@{k} {v:.2f}%" for k, v in p.knn.items())] if p.knn else []
        parts += [p.collapse] if p.collapse else []
        s.log(f"epoch {epoch_done}: " + "; ".join(parts))


# --------------------------------------------------------------------------------------------
# 5. Finish
# --------------------------------------------------------------------------------------------


def finish(s: Session, p: Progress, meter: Meter, start_step: int) -> RunResult:
    """The run's result; when it ran to its end, the raw-pixel k-NN baseline and summary.json too."""
    t = s.cfg.train
    seconds = meter.clock.seconds()
    interrupted = p.step < s.total_steps
    result = RunResult(s.run_dir, p.step, p.step / s.steps_per_epoch, p.knn, {}, seconds,
                       2 * t.batch_size * (p.step - start_step) / max(seconds, 1e-9), interrupted,
                       _resume_command(s.dist.world, s.run_dir) if interrupted else "",
                       start_step / s.steps_per_epoch)
    if interrupted or not s.dist.main:
        return result
    share = meter.data_wait / max(seconds, 1e-9)
    s.log(f"the steps waited {meter.data_wait:.1f} s of {seconds:.1f} s for their batches ({share:.0%}): " + (
        "the loader limits the throughput (more data.num_workers, data.decode device, or resident data help)"
        if share > 0.2 else "the model, not the data, limits the throughput"))
    if s.labelled:
        train_px = raw_pixel_features(s.bank_batches.epoch(0))
        test_px = raw_pixel_features(s.test_batches.epoch(0))
        result.knn_raw_pixels = knn_accuracy(*train_px, *test_px, ks=t.knn_k, temperature=t.knn_temperature)
    f = s.step_fn
    result.summary = {
        "run_dir": str(s.run_dir), "steps": p.step, "epochs": t.epochs,
        "train_seconds": round(p.seconds_before + seconds, 2),
        "wall_seconds": round(time.perf_counter() - meter.wall_start, 2),
        # of train_seconds (this invocation): waiting for the next batch; near 0 when the model limits the step
        "data_wait_seconds": round(meter.data_wait, 2),
        "images_per_s": round(result.images_per_s, 1), "device": str(s.device),
        "knn": {str(k): v for k, v in p.knn.items()},
        "knn_raw_pixels": {str(k): v for k, v in result.knn_raw_pixels.items()},
        "collapse": p.collapse_final,
        # compilation of this invocation, counted apart from train_seconds
        "compile": {"enabled": f.enabled, "mode": f.mode if f.enabled else None,
                    "scope": t.compile_scope if f.enabled else None,
                    "seconds": round(f.compile_seconds, 2), "fallback": f.fallback}}
    write_json(s.run_dir / SUMMARY_FILE, result.summary)
    return result


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def train(cfg: Config, run_dir: Path | str | None = None, resume: bool = False,
          on_step: Callable[[int], None] | None = None, echo: Callable[[str], None] | None = None) -> RunResult:
    """Train VICReg with ``cfg``; write everything to ``run_dir`` (default: train.out_dir/<preset>-<time>).

    resume: continue from run_dir/checkpoint.pt (the config must be the run's own).
    on_step: called with the step number after every optimisation step (tests, custom hooks).
    echo: where log lines are printed (default: tqdm.write, which keeps the bar intact).
    """
    from tqdm.auto import tqdm

    dist = init_from_env(cfg.train.device)  # torchrun's environment: a data-parallel job; else one process
    check_world(cfg, dist)
    path = Path(broadcast_object(str(run_dir if run_dir is not None else default_run_dir(cfg))))
    lock = RunLock(path)
    try:
        s = set_up(cfg, path, echo or tqdm.write, dist, lock, resume)
        p = restore(s) if resume else Progress()
        s.log(_describe(s))
        return _run(s, p, on_step)
    except (RuntimeError, torch.distributed.DistError) as e:
        if dist.world == 1 or not _lost_peer(e):
            raise
        raise JobStopped(_stopped_message(e, dist, path)) from e
    finally:
        lock.release()


def _resume_command(world: int, run_dir: Path) -> str:
    """The command that continues the run in ``run_dir`` with ``world`` processes."""
    launcher = f"torchrun --nproc-per-node {world} -m vicreg" if world > 1 else "vicreg"
    return f"{launcher} train --resume {run_dir}"


def _last_checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's checkpoint, None when there is none (or none readable)."""
    try:
        return int(load_checkpoint(run_dir)["step"])
    except (OSError, ValueError, KeyError):
        return None


def _lost_peer(e: BaseException) -> bool:
    """Is this the error of a collective whose peer is gone (or timed out), or the launcher's SIGTERM?"""
    if isinstance(e, (JobStopped, torch.distributed.DistError)):
        return True
    text = str(e).lower()
    return any(w in text for w in ("gloo", "nccl", "connection reset", "connection closed", "timed out", "timeout"))


def _stopped_message(e: BaseException, dist: Dist, run_dir: Path) -> str:
    step = _last_checkpoint_step(run_dir)
    where = "no checkpoint was written yet" if step is None else f"the last checkpoint (step {step}) is intact"
    cause = "" if isinstance(e, JobStopped) else "; another process probably died, see its log"
    return (f"rank {dist.rank}: the job stopped ({type(e).__name__}: {first_line(e)}){cause}. In {run_dir} {where}; "
            f"resume with: {_resume_command(dist.world, run_dir)}")


def _run(s: Session, p: Progress, on_step: Callable[[int], None] | None) -> RunResult:
    """The epochs, until the end or a stop request; then the result (see :func:`finish`). A failing loss
    (non-finite, blown up) is raised with what was saved, and written to the run's log."""
    meter = Meter(s, p)
    start_step = p.step
    s.model.train()
    meter.clock.start()
    try:
        with stop_on_signals(s.dist, s.cfg.train.checkpoint_minutes) as stop:
            while p.step < s.total_steps and not stop.agree(meter.failure, wait=True):
                if train_epoch(s, p, meter, stop, on_step):
                    meter.clock.pause()
                    meter.flush(p, wait=True)
                    stop.agree(meter.failure, wait=True)  # a failing loss stops every process before the checkpoint
                    end_of_epoch(s, p, meter, p.step // s.steps_per_epoch, stop)
                    meter.restart_window(p.step)  # evaluation time is not training time
                    meter.clock.start()
            meter.clock.pause()
            if stop.now and p.step < s.total_steps:
                if stop.last_saved_step != p.step:  # not saved after this very step already
                    save(s, p, meter, stop)
                s.log(f"stopped ({stop.reason()}) at step {p.step}: checkpoint saved; resume with: "
                      f"{_resume_command(s.dist.world, s.run_dir)}")
            stop.vote.close()
    except FloatingPointError as e:
        message = f"{e}. {_saved(s)}"
        s.log(f"error: {message}")
        raise FloatingPointError(message) from None
    finally:
        meter.close()
    return finish(s, p, meter, start_step)


def _saved(s: Session) -> str:
    """What a stopped run can resume from, in words (never a claim about a checkpoint that is not there)."""
    step, command = _last_checkpoint_step(s.run_dir), _resume_command(s.dist.world, s.run_dir)
    if step is None:
        return f"No checkpoint was written yet ({command} starts the run again from step 0)"
    return f"The last checkpoint (step {step}), saved before it, is intact: resume with {command}"
