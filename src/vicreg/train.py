"""The training loop: ``train(cfg)`` runs VICReg end to end and writes a run directory.

A run directory holds::

    config.yaml        the resolved configuration (all fields)
    metrics.csv        one row per step: lr, loss and its three unweighted terms, images/s
    knn.csv            k-NN accuracy of the embedding on the test split, per evaluation, with the training
                       seconds so far (evaluation, diagnostics and checkpoints not counted)
    diagnostics.jsonl  collapse diagnostics per epoch: per-dimension std, singular values, effective rank and
                       the fraction of dimensions below the hinge target, of the embedding and the projection
    tb/                TensorBoard event files (the same scalars)
    checkpoint.pt      model, optimiser, scheduler, step and RNG states (written atomically)
    summary.json       final k-NN accuracies (learned and raw pixels), time, images/s, compilation (seconds,
                       mode, scope, the reason of a fallback to eager; its time is not in train_seconds)
    log.txt            what was printed

``train(cfg, resume=True)`` continues a stopped run from ``checkpoint.pt`` and reaches the same weights as
an uninterrupted run (bit-identical on CPU). Ctrl-C finishes the current step, saves a checkpoint and
returns; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml

from .augment import TemporalViews, TwoViews
from .config import Config, config_from_dict, config_to_dict, save_yaml
from .data import Batches, ImageDataset, load_dataset, spread_subset
from .device import autocast_dtype, resolve_device, synchronize
from .diagnostics import collapse_diagnostics
from .evaluate import (
    extract_features,
    extract_outputs,
    knn_accuracy,
    raw_pixel_features,
)
from .models import BACKBONES, VICReg, build_model
from .optim import build_optimizer, load_optimizer_state, peak_lr, set_learning_rate
from .schedule import warmup_cosine
from .step import Step, compiles_update

__all__ = ["train", "RunResult", "load_checkpoint", "save_checkpoint", "resolve_device", "load_run_config"]

METRIC_COLUMNS = ["step", "epoch", "lr", "loss", "invariance", "variance", "covariance", "images_per_s"]
CHECKPOINT = "checkpoint.pt"


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


# --------------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------------


def channel_stats(images: torch.Tensor, max_images: int = 10_000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of (up to ``max_images`` of) a uint8 (N, C, H, W) tensor."""
    x = images[:max_images].float().div_(255).transpose(0, 1).flatten(1)  # (C, N*H*W)
    return x.mean(dim=1).tolist(), x.std(dim=1).clamp_min(1e-3).tolist()


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``: a crash never leaves a
    half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path | str, map_location="cpu") -> dict:
    """Load a checkpoint without unpickling arbitrary objects (torch.load(weights_only=True))."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_checkpoint(path: Path, cfg: Config, model: VICReg, optimizer: torch.optim.Optimizer, step: int,
                    schedule: dict, augment_generator: torch.Generator, knn: dict[int, float],
                    train_seconds: float = 0.0) -> None:
    rng = {"torch": torch.get_rng_state(), "augment": augment_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    atomic_save(
        {
            "format": 1,
            "config": config_to_dict(cfg),
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": {**schedule, "step": step},
            "rng": rng,
            "knn": {str(k): v for k, v in knn.items()},
            "train_seconds": train_seconds,
        },
        path,
    )


def load_run_config(run_dir: Path | str) -> Config:
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml in it)")
    with open(path) as f:
        return config_from_dict(yaml.safe_load(f))


class _TrainClock:
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


class _Logger:
    """Prints through tqdm (so the bar stays intact) and appends to log.txt."""

    def __init__(self, path: Path, echo: Callable[[str], None]):
        self.path, self.echo = path, echo

    def __call__(self, msg: str) -> None:
        self.echo(msg)
        with open(self.path, "a") as f:
            f.write(msg + "\n")


@contextmanager
def _stop_on_sigint():
    """The first Ctrl-C sets a flag that the loop reads after each step; a second one aborts at once."""
    flag = {"stop": False}

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread: Ctrl-C keeps its default behaviour
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _keep_rows(path: Path, until_step: int, header: list[str] | None = None) -> None:
    """Rewrite the CSV at ``path`` keeping the rows with step <= until_step; create it with ``header`` if
    it does not exist and a header is given."""
    rows: list[list[str]] = []
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None) or header
            rows = [r for r in reader if int(r[0]) <= until_step]
    if header is None:
        return
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _keep_jsonl(path: Path, until_step: int) -> None:
    """Rewrite the JSON-lines file at ``path`` keeping the records with step <= until_step."""
    if not path.exists():
        return
    with open(path) as f:
        records = [line for line in f if line.strip() and json.loads(line)["step"] <= until_step]
    with open(path, "w") as f:
        f.writelines(records)


class _MetricsWriter:
    """metrics.csv and TensorBoard. Step losses stay on the device until ``flush``.

    On CUDA, ``flush`` only queues a copy of the window's losses into pinned host memory and writes the
    window queued at the previous flush, whose copy finished long ago: the host never waits for the
    device during training. ``flush(wait=True)`` (epoch ends, interrupts) writes everything now. On the
    CPU every flush writes at once.
    """

    def __init__(self, run_dir: Path, keep_until_step: int, tensorboard: bool = True):
        self.path, self.knn_path = run_dir / "metrics.csv", run_dir / "knn.csv"
        self.diagnostics_path = run_dir / "diagnostics.jsonl"
        # resuming: drop the rows written after the checkpoint, so the files read as one unbroken run
        _keep_rows(self.path, keep_until_step, header=METRIC_COLUMNS)
        _keep_rows(self.knn_path, keep_until_step)
        _keep_jsonl(self.diagnostics_path, keep_until_step)
        self.pending: list[tuple[int, int, float, torch.Tensor]] = []
        self.queued: list[tuple] = []  # windows on their way to the host: (rows, host tensor, event, ips)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=keep_until_step + 1)
            except ImportError:  # tensorboard is a dependency; tolerate its absence in odd environments
                self.tb = None

    def add(self, step: int, epoch: int, lr: float, terms: torch.Tensor) -> None:
        self.pending.append((step, epoch, lr, terms.detach()))

    def flush(self, images_per_s: float, wait: bool = False) -> list[float]:
        """Queue the pending rows and write the windows that are ready (all of them with ``wait`` or on the
        CPU); returns the last written row's [loss, inv, var, cov] ([] if none). Raises on a NaN loss."""
        if self.pending:
            values = torch.stack([t for *_, t in self.pending])
            event = None
            if values.is_cuda:
                host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
                host.copy_(values, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                values = host
            self.queued.append(([row[:3] for row in self.pending], values, event, images_per_s))
            self.pending.clear()
        keep = 0 if wait else 1 if self.queued and self.queued[-1][2] is not None else 0
        last: list[float] = []
        while len(self.queued) > keep:
            last = self._write(*self.queued.pop(0))
        return last

    def _write(self, rows: list[tuple[int, int, float]], values: torch.Tensor, event,
               images_per_s: float) -> list[float]:
        if event is not None:
            event.synchronize()  # long done unless wait=True
        values = values.tolist()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            for (step, epoch, lr), v in zip(rows, values):
                if not all(math.isfinite(x) for x in v):
                    raise FloatingPointError(
                        f"the loss became non-finite at step {step} (loss, invariance, variance, covariance = "
                        f"{v}); the last checkpoint is intact. Lower optim.lr or check the data for NaN")
                w.writerow([step, epoch, f"{lr:.6g}", *(f"{x:.6g}" for x in v), f"{images_per_s:.1f}"])
                if self.tb is not None:
                    for name, x in zip(METRIC_COLUMNS[3:7], v):
                        self.tb.add_scalar(f"loss/{name}", x, step)
                    self.tb.add_scalar("lr", lr, step)
        if self.tb is not None:
            self.tb.add_scalar("images_per_s", images_per_s, rows[-1][0])
        return values[-1]

    def knn(self, step: int, epoch: float, train_seconds: float, acc: dict[int, float]) -> None:
        new = not self.knn_path.exists()
        with open(self.knn_path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "epoch", "train_seconds", *(f"knn@{k}" for k in acc)])
            w.writerow([step, f"{epoch:.3f}", f"{train_seconds:.2f}", *(f"{v:.2f}" for v in acc.values())])
        if self.tb is not None:
            for k, v in acc.items():
                self.tb.add_scalar(f"knn/top1@{k}", v, step)

    def diagnostics(self, record: dict) -> None:
        with open(self.diagnostics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for level in ("embedding", "projection"):
                self.tb.add_scalar(f"collapse/{level}_effective_rank", record[level]["effective_rank"], record["step"])
                self.tb.add_scalar(f"collapse/{level}_frac_below_target", record[level]["frac_below_target"],
                                   record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _run_dir(cfg: Config) -> Path:
    name = cfg.train.name or f"{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(cfg.train.out_dir) / name
    suffix = 1
    while path.exists() and cfg.train.name is None:
        suffix += 1
        path = Path(cfg.train.out_dir) / f"{name}-{suffix}"
    return path


def input_size_for(cfg: Config, dataset: ImageDataset, log: Callable[[str], None]) -> int:
    """The side of the images fed to the model: data.image_size or the native size, raised to the
    backbone's minimum (said once in the log)."""
    size = cfg.data.image_size or dataset.image_size
    min_size = BACKBONES[cfg.model.backbone].min_size
    if size < min_size:
        log(f"resizing {size}x{size} images to {min_size}x{min_size}: backbone {cfg.model.backbone} needs at least "
            f"{min_size}x{min_size}")
        size = min_size
    elif size != dataset.image_size:
        log(f"resizing {dataset.image_size}x{dataset.image_size} images to {size}x{size} (data.image_size)")
    return size


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def train(cfg: Config, run_dir: Path | str | None = None, resume: bool = False,
          on_step: Callable[[int], None] | None = None, echo: Callable[[str], None] | None = None) -> RunResult:
    """Train VICReg with ``cfg``; write everything to ``run_dir`` (default: train.out_dir/<preset>-<time>).

    resume: continue from run_dir/checkpoint.pt (the config must be the run's own).
    on_step: called with the step number after every optimisation step (tests, custom hooks).
    """
    from tqdm.auto import tqdm

    # ---- 1. run directory, device, seeds ---------------------------------------------------
    run_dir = Path(run_dir) if run_dir is not None else _run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _Logger(run_dir / "log.txt", echo or tqdm.write)
    save_yaml(cfg, run_dir / "config.yaml")
    device = resolve_device(cfg.train.device)
    amp = autocast_dtype(cfg.train.precision, device)
    torch.manual_seed(cfg.train.seed)
    channels_last = cfg.model.channels_last and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolution kernels

    # ---- 2. data: uint8 tensors on the device, batches sliced from a permutation -------------
    dataset = load_dataset(cfg.data, log=log)
    input_size = input_size_for(cfg, dataset, log)
    t = cfg.train
    if len(dataset.train) < t.batch_size:
        raise ValueError(f"train.batch_size={t.batch_size} is larger than the {len(dataset.train)} training images")
    common = dict(placement=cfg.data.placement, num_workers=cfg.data.num_workers,
                  max_device_fraction=cfg.data.max_device_fraction, seed=t.seed, log=log)
    train_batches = Batches(dataset.train, t.batch_size, device, shuffle=True, drop_last=True, **common)
    eval_bs = max(256, t.batch_size)
    bank_batches = Batches(dataset.train_labeled, eval_bs, device, shuffle=False, drop_last=False, **common)
    test_batches = Batches(dataset.test, eval_bs, device, shuffle=False, drop_last=False, **common)
    diag_batches = Batches(spread_subset(dataset.test, t.diagnostics_samples), eval_bs, device, shuffle=False,
                           drop_last=False, **common)
    # temporal views train on whole clips (T frames stacked on the channel axis): statistics come from frames
    stats_images = dataset.train_labeled.images if cfg.data.temporal_offset else dataset.train.images
    if stats_images is None:  # streamed: about a thousand images spread over the split
        every = max(1, len(dataset.train) // 1000)
        stats_images = torch.stack([dataset.train.source[i][0] for i in range(0, len(dataset.train), every)])
    mean, std = channel_stats(stats_images)

    # ---- 3. model, augmentation, optimiser ---------------------------------------------------
    model = build_model(cfg.model, dataset.channels, mean, std).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.data.temporal_offset:  # two frames of a clip, up to temporal_offset apart, each augmented
        augment = TemporalViews(cfg.augment, input_size, dataset.channels, cfg.data.temporal_offset).to(device)
    else:  # two augmentations of one image
        augment = TwoViews(cfg.augment, input_size).to(device)
    labelled = bool((dataset.train_labeled.labels >= 0).any()) and bool((dataset.test.labels >= 0).any())
    if not labelled:
        log(f"{dataset.name} has no class labels: no k-NN evaluation (collapse diagnostics still run)")
    generator = torch.Generator(device=device)
    generator.manual_seed(t.seed)
    optimizer = build_optimizer(cfg.optim, model, t.batch_size, lr_tensor=compiles_update(t, device))
    # both views in one call with per-view batch-norm statistics; compiled as train.compile asks (auto: CUDA)
    step_fn = Step(model, cfg, optimizer, amp, channels_last, device, log)
    steps_per_epoch = len(train_batches)
    total_steps = t.epochs * steps_per_epoch
    schedule = {"total_steps": total_steps, "warmup_steps": round(cfg.optim.warmup_epochs * steps_per_epoch),
                "peak_lr": peak_lr(cfg.optim, t.batch_size), "final_lr_ratio": cfg.optim.final_lr_ratio}
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    # ---- 4. resume -----------------------------------------------------------------------------
    step, knn, train_seconds = 0, {}, 0.0
    if resume:
        ckpt = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"])
        step = int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        generator.set_state(ckpt["rng"]["augment"].cpu())
        if "cuda" in ckpt["rng"] and device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        knn = {int(k): v for k, v in ckpt["knn"].items()}
        train_seconds = float(ckpt.get("train_seconds", 0.0))
        log(f"resuming {run_dir} at step {step}/{total_steps} (epoch {step // steps_per_epoch})")
    metrics = _MetricsWriter(run_dir, keep_until_step=step)
    log(f"run {run_dir}: {cfg.model.backbone} ({n_params / 1e6:.2f} M trainable parameters) on {dataset.name}, "
        f"{input_size}x{input_size} input, {t.epochs} epochs x {steps_per_epoch} steps of {t.batch_size}, "
        f"{device.type}{' bf16' if amp else ' fp32'}, "
        f"data {'on the device' if train_batches.resident else 'streamed'}, "
        + (f"compiled ({t.compile_scope}, {step_fn.mode})" if step_fn.enabled else "eager"))

    def evaluate() -> dict[int, float]:
        if not labelled:
            return {}
        bank = extract_features(model, bank_batches.epoch(0), input_size, amp, channels_last)
        test = extract_features(model, test_batches.epoch(0), input_size, amp, channels_last)
        return knn_accuracy(*bank, *test, ks=t.knn_k, temperature=t.knn_temperature)

    def diagnose(epoch_done: int) -> str:
        """Collapse diagnostics of the embedding and the projection of a fixed test sample; returns a summary."""
        outputs, _ = extract_outputs(model, diag_batches.epoch(0), input_size, amp, channels_last,
                                     ("embedding", "projection"))
        found = {level: collapse_diagnostics(z, cfg.loss.gamma, cfg.loss.eps) for level, z in outputs.items()}
        metrics.diagnostics({"step": step, "epoch": epoch_done, "target": cfg.loss.gamma,
                             **{level: d.to_dict() for level, d in found.items()}})
        collapse["final"] = {level: {"dim": d.dim, "effective_rank": d.effective_rank,
                                     "frac_below_target": d.frac_below_target} for level, d in found.items()}
        e = found["embedding"]
        return f"rank {e.effective_rank:.1f}/{e.dim} low-std {100 * e.frac_below_target:.0f}%"

    def checkpoint() -> None:
        save_checkpoint(run_dir / CHECKPOINT, cfg, model, optimizer, step, schedule, generator, knn,
                        train_seconds + clock.seconds())

    # ---- 5. the loop ---------------------------------------------------------------------------
    start_step, interrupted = step, False
    bar = tqdm(total=total_steps, initial=step, disable=None if t.progress else True, unit="step", dynamic_ncols=True)
    clock = _TrainClock(device)  # training time only: paused for evaluation, diagnostics and checkpoints
    wall_start = time.perf_counter()
    window = {"time": wall_start, "step": step}  # throughput window between flushes
    collapse = {"summary": ""}  # the latest diagnostics, shown in the progress bar

    def flush(wait: bool = False) -> None:
        now = time.perf_counter()
        ips = 2 * t.batch_size * (step - window["step"]) / max(now - window["time"], 1e-9)
        last = metrics.flush(ips, wait)
        if last:
            loss, inv, var, cov = last
            bar.set_postfix_str(f"loss {loss:.3f} inv {inv:.4f} var {var:.3f} cov {cov:.3f} "
                                f"{collapse['summary']} {ips:,.0f} img/s", refresh=False)
        window.update(time=now, step=step)

    model.train()
    clock.start()
    try:
        with _stop_on_sigint() as stop:
            while step < total_steps and not stop["stop"]:
                epoch, first = divmod(step, steps_per_epoch)
                bar.set_description(f"epoch {epoch + 1}/{t.epochs}")
                for images, _ in train_batches.epoch(epoch, start=first):
                    lr = warmup_cosine(step, total_steps, schedule["warmup_steps"], schedule["peak_lr"],
                                       schedule["final_lr_ratio"])
                    set_learning_rate(optimizer, lr)
                    if step_fn.pending:  # this call compiles: its time is counted apart from training
                        clock.pause()
                        terms = step_fn(images, augment, generator)
                        clock.start()
                    else:
                        terms = step_fn(images, augment, generator)
                    step += 1
                    metrics.add(step, epoch + 1, lr, terms)
                    if step % t.log_every == 0:
                        flush()
                    bar.update(1)
                    if on_step is not None:
                        on_step(step)
                    if stop["stop"] and step % steps_per_epoch != 0:
                        break  # mid-epoch stop; at an epoch's end the epoch's own work runs first
                else:  # the epoch ran to its end
                    clock.pause()
                    flush(wait=True)
                    epoch_done = epoch + 1
                    last = epoch_done == t.epochs
                    if last or (t.diagnostics_every and epoch_done % t.diagnostics_every == 0):
                        collapse["summary"] = diagnose(epoch_done)
                    if last or (t.knn_every and epoch_done % t.knn_every == 0):
                        knn = evaluate()
                        if knn:
                            metrics.knn(step, epoch_done, train_seconds + clock.seconds(), knn)
                        parts = ["k-NN " + ", ".join(f"@{k} {v:.2f}%" for k, v in knn.items())] if knn else []
                        parts += [f"embedding {collapse['summary']}"] if collapse["summary"] else []
                        log(f"epoch {epoch_done}: " + "; ".join(parts))
                    if last or (t.checkpoint_every and epoch_done % t.checkpoint_every == 0):
                        checkpoint()
                    window.update(time=time.perf_counter(), step=step)  # evaluation time is not training time
                    clock.start()
            clock.pause()
            if stop["stop"] and step < total_steps:
                interrupted = True
                flush(wait=True)
                checkpoint()
                log(f"interrupted at step {step}: checkpoint saved; resume with: vicreg train --resume {run_dir}")
    finally:
        bar.close()
        metrics.close()
    seconds = clock.seconds()

    # ---- 6. summary ----------------------------------------------------------------------------
    result = RunResult(run_dir, step, step / steps_per_epoch, knn, {}, seconds,
                       2 * t.batch_size * (step - start_step) / max(seconds, 1e-9), interrupted)
    if not interrupted:
        if labelled:
            train_px = raw_pixel_features(bank_batches.epoch(0))
            test_px = raw_pixel_features(test_batches.epoch(0))
            result.knn_raw_pixels = knn_accuracy(*train_px, *test_px, ks=t.knn_k, temperature=t.knn_temperature)
        summary = {"run_dir": str(run_dir), "steps": step, "epochs": t.epochs,
                   "train_seconds": round(train_seconds + seconds, 2),
                   "wall_seconds": round(time.perf_counter() - wall_start, 2),
                   "images_per_s": round(result.images_per_s, 1), "device": str(device),
                   "knn": {str(k): v for k, v in knn.items()},
                   "knn_raw_pixels": {str(k): v for k, v in result.knn_raw_pixels.items()},
                   "collapse": collapse.get("final", {}),
                   # compilation of this invocation, counted apart from train_seconds
                   "compile": {"enabled": step_fn.enabled, "mode": step_fn.mode if step_fn.enabled else None,
                               "scope": t.compile_scope if step_fn.enabled else None,
                               "seconds": round(step_fn.compile_seconds, 2), "fallback": step_fn.fallback}}
        with open(run_dir / "summary.json", "w") as f:
            json.dump(summary, f, indent=2)
    return result
