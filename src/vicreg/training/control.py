"""Job control of a training run: the clock, the metering, the stop agreement, signals, the divergence policy
and the messages that say how to resume.

- :class:`TrainClock` counts training time only (evaluation, diagnostics and checkpoints are off the clock);
- :class:`Meter` holds the clock, the metrics files (rank 0; :class:`NullMetrics` elsewhere), the progress
  bar and the throughput window;
- :class:`DivergenceGuard` decides that a loss failed: non-finite, or blown up over
  ``train.divergence_factor`` x the lowest so far;
- :class:`Stop` and :func:`stop_on_signals`: Ctrl-C or SIGTERM finishes the step, saves and returns; in a
  data-parallel job every process agrees on stopping, failing and saving after the same step;
- :func:`resume_command`, :func:`stopped_message` and :func:`saved_message` name the checkpoint a stopped job
  left and the command that continues it.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..device import synchronize
from ..distributed import Dist, Vote, all_reduce_mean
from ..errors import FollowedRank0, JobStopped, first_line
from ..rundir import MetricsWriter, read_metrics
from .checkpoints import last_checkpoint_step
from .state import Progress, Session

__all__ = ["TrainClock", "Meter", "NullMetrics", "DivergenceGuard", "Stop", "stop_on_signals", "resume_command",
           "lost_peer", "stopped_message", "saved_message"]

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 images (B, C, H, W), int64 labels (B,)


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
        self.metrics: MetricsWriter | NullMetrics = NullMetrics()
        if s.dist.main:
            guard = DivergenceGuard(s.cfg.train.divergence_factor)
            self.metrics = MetricsWriter(s.run_dir, keep_until_step=p.step, check=guard)
            guard.seen(read_metrics(s.run_dir))  # a resumed run's kept rows: its lowest and its first loss
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


class DivergenceGuard:
    """The policy that a loss failed, applied to every metrics row before it is written (``guard(step, row)``,
    row = [loss, invariance, variance, covariance]): FloatingPointError on a non-finite value, or on a loss
    above ``factor`` x the lowest so far that is also above the run's first loss (0: off)."""

    def __init__(self, factor: float):
        self.factor = factor
        self.lowest = (float("inf"), 0)  # (the lowest loss so far, its step): the blow-up check's base
        self.first: float | None = None  # the first loss: a blow-up also climbs above where the run started

    def seen(self, metrics: dict[str, np.ndarray]) -> None:
        """Take the rows already written (a resumed run's ``read_metrics``) as seen."""
        if len(metrics["loss"]):
            i = int(np.argmin(metrics["loss"]))
            self.lowest, self.first = (float(metrics["loss"][i]), int(metrics["step"][i])), float(metrics["loss"][0])

    def __call__(self, step: int, v: list[float]) -> None:
        if not all(math.isfinite(x) for x in v):
            raise FloatingPointError(f"the loss became non-finite at step {step} (loss, invariance, variance, "
                                     f"covariance = {v}). Lower optim.lr or check the data for NaN")
        lowest, at = self.lowest
        self.first = v[0] if self.first is None else self.first
        # above factor x the lowest AND above the start: a healthy loss that falls towards 0 (e.g. the
        # invariance-only collapse experiment) and wobbles is no blow-up
        if self.factor and 0 < lowest < v[0] / self.factor and v[0] > self.first:
            raise FloatingPointError(f"the loss blew up at step {step}: {v[0]:.4g}, over train.divergence_factor="
                                     f"{self.factor:g} x the lowest so far ({lowest:.4g} at step {at}). "
                                     f"Lower optim.lr or lengthen optim.warmup_epochs (train.divergence_factor=0 "
                                     f"turns this check off)")
        if v[0] < lowest:
            self.lowest = (v[0], step)


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


def resume_command(world: int, run_dir: Path) -> str:
    """The command that continues the run in ``run_dir`` with ``world`` processes."""
    launcher = f"torchrun --nproc-per-node {world} -m vicreg" if world > 1 else "vicreg"
    return f"{launcher} train --resume {run_dir}"


def lost_peer(e: BaseException) -> bool:
    """Is this the error of a collective whose peer is gone (or timed out), or the launcher's SIGTERM?"""
    if isinstance(e, (JobStopped, torch.distributed.DistError)):
        return True
    text = str(e).lower()
    return any(w in text for w in ("gloo", "nccl", "connection reset", "connection closed", "timed out", "timeout"))


def stopped_message(e: BaseException, dist: Dist, run_dir: Path) -> str:
    """A job that lost a process: what stopped it, the checkpoint it left and how to resume."""
    step = last_checkpoint_step(run_dir)
    where = "no checkpoint was written yet" if step is None else f"the last checkpoint (step {step}) is intact"
    cause = "" if isinstance(e, JobStopped) else "; another process probably died, see its log"
    return (f"rank {dist.rank}: the job stopped ({type(e).__name__}: {first_line(e)}){cause}. In {run_dir} {where}; "
            f"resume with: {resume_command(dist.world, run_dir)}")


def saved_message(run_dir: Path, world: int) -> str:
    """What a stopped run can resume from, in words (never a claim about a checkpoint that is not there)."""
    step, command = last_checkpoint_step(run_dir), resume_command(world, run_dir)
    if step is None:
        return f"No checkpoint was written yet ({command} starts the run again from step 0)"
    return f"The last checkpoint (step {step}), saved before it, is intact: resume with {command}"
