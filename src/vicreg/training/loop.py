"""The training loop: ``train(cfg)`` runs VICReg end to end and writes a run directory (see vicreg.rundir).

Read it top to bottom as a run goes:

1. set-up (vicreg.training.setup) -- run directory, device, data on the device, model, augmentation, the step;
2. a resumed run's weights, optimiser, step and RNG states (vicreg.training.checkpoints);
3. :func:`train_epoch` -- the steps of one epoch: learning rate, step (vicreg.step), metrics;
4. :func:`end_of_epoch` -- collapse diagnostics, k-NN evaluation (vicreg.training.monitor) and a checkpoint;
5. :func:`finish` -- the raw-pixel k-NN baseline and ``summary.json``.

The clock, the metrics files, the progress bar, the stop agreement and the divergence policy are job
control (vicreg.training.control). ``train(cfg, resume=True)`` continues a stopped run from
``checkpoint.pt`` and reaches the same weights as an uninterrupted run (bit-identical on CPU). Ctrl-C
finishes the current step, saves a checkpoint and returns (SIGTERM too); a second signal aborts at once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import torch

from ..config import Config
from ..distributed import broadcast_object, init_from_env
from ..errors import JobStopped
from ..evaluate import knn_accuracy, raw_pixel_features
from ..optim import set_learning_rate
from ..rundir import CONFIG, SUMMARY, RunLock, holds_run, remove_unstarted_run, write_json
from .checkpoints import checkpoint, restore
from .control import Meter, Stop, lost_peer, resume_command, saved_message, stop_on_signals, stopped_message
from .monitor import measure
from .setup import check_world, default_run_dir, describe, set_up
from .state import Progress, RunResult, Session

__all__ = ["train", "run_epochs", "train_epoch", "end_of_epoch", "save", "finish"]

OnStep = Callable[[int], None]


def train(cfg: Config, run_dir: Path | str | None = None, resume: bool = False, on_step: OnStep | None = None,
          echo: Callable[[str], None] | None = None) -> RunResult:
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
    new_run, made_folder = dist.main and not resume and not holds_run(path), not path.exists()
    try:
        try:
            s = set_up(cfg, path, echo or tqdm.write, dist, lock, resume)
        except BaseException as e:  # a new run that cannot start leaves no run directory behind
            if new_run and lock.held:  # this process made the run directory (held its lock): undo it
                lock.release()
                remove_unstarted_run(path, made_folder)
            if isinstance(e, ValueError):  # ConfigError included
                raise _naming_config(e, path) if resume else e from None
            raise
        p = restore(s) if resume else Progress()
        s.log(describe(s))
        return run_epochs(s, p, on_step)
    except (RuntimeError, torch.distributed.DistError) as e:
        if dist.world == 1 or not lost_peer(e):
            raise
        raise JobStopped(stopped_message(e, dist, path)) from e
    finally:
        lock.release()


def _naming_config(e: ValueError, run_dir: Path) -> ValueError:
    """A resumed run's config is its config.yaml: a problem with one of its values (``section.key=value ...``)
    names the file."""
    if re.match(r"[a-z_]+(\.[a-z_]+)+=", str(e)):
        return type(e)(f"{run_dir / CONFIG}: {e}")
    return e


def run_epochs(s: Session, p: Progress, on_step: OnStep | None) -> RunResult:
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
                      f"{resume_command(s.dist.world, s.run_dir)}")
            stop.vote.close()
    except FloatingPointError as e:
        message = f"{e}. {saved_message(s.run_dir, s.dist.world)}"
        s.log(f"error: {message}")
        raise FloatingPointError(message) from None
    finally:
        meter.close()
    return finish(s, p, meter, start_step)


def train_epoch(s: Session, p: Progress, meter: Meter, stop: Stop, on_step: OnStep | None) -> bool:
    """The remaining steps of the epoch ``p.step`` is in; True when it ran to its end, False when a stop
    request (Ctrl-C, SIGTERM) stopped it in the middle (at an epoch's end, the epoch's own work runs first)."""
    epoch, first = divmod(p.step, s.steps_per_epoch)
    meter.bar.set_description(f"epoch {epoch + 1}/{s.cfg.train.epochs}")
    for images, _ in meter.timed(s.batches.train.epoch(epoch, start=first)):
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


def end_of_epoch(s: Session, p: Progress, meter: Meter, epoch_done: int, stop: Stop) -> None:
    """What train.* asks for after ``epoch_done`` epochs (the last one does everything), off the clock. A
    checkpoint after the first epoch, every train.checkpoint_every epochs, the last, and when one is due by
    time (train.checkpoint_minutes)."""
    t = s.cfg.train
    last = epoch_done == t.epochs
    # every process extracts its share, rank 0 measures
    measure(s, p, meter.metrics, p.seconds_before + meter.clock.seconds(), epoch_done, last)
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


def finish(s: Session, p: Progress, meter: Meter, start_step: int) -> RunResult:
    """The run's result; when it ran to its end, the raw-pixel k-NN baseline and summary.json too."""
    t = s.cfg.train
    seconds = meter.clock.seconds()
    interrupted = p.step < s.total_steps
    result = RunResult(run_dir=s.run_dir, step=p.step, epochs_done=p.step / s.steps_per_epoch, knn=p.knn,
                       seconds=seconds, images_per_s=2 * t.batch_size * (p.step - start_step) / max(seconds, 1e-9),
                       interrupted=interrupted,
                       resume_command=resume_command(s.dist.world, s.run_dir) if interrupted else "",
                       start_epoch=start_step / s.steps_per_epoch)
    if interrupted or not s.dist.main:
        return result
    share = meter.data_wait / max(seconds, 1e-9)
    s.log(f"the steps waited {meter.data_wait:.1f} s of {seconds:.1f} s for their batches ({share:.0%}): " + (
        "the loader limits the throughput (more data.num_workers, data.decode device, or resident data help)"
        if share > 0.2 else "the model, not the data, limits the throughput"))
    if s.labelled:
        train_px = raw_pixel_features(s.batches.bank.epoch(0))
        test_px = raw_pixel_features(s.batches.test.epoch(0))
        result.knn_raw_pixels = knn_accuracy(*train_px, *test_px, ks=t.knn_k, temperature=t.knn_temperature)
    result.summary = _summary(s, p, meter, seconds, result)
    write_json(s.run_dir / SUMMARY, result.summary)
    return result


def _summary(s: Session, p: Progress, meter: Meter, seconds: float, result: RunResult) -> dict:
    """summary.json of a finished run."""
    t, f = s.cfg.train, s.step_fn
    return {
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
        "compile": {"enabled": f.plan.compile, "mode": f.plan.mode if f.plan.compile else None,
                    "scope": t.compile_scope if f.plan.compile else None,
                    "seconds": round(f.compile_seconds, 2), "fallback": f.fallback}}
