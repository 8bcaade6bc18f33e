"""A running job's checkpoints: written by rank 0 with the random states of every process, restored so that a
resumed run reaches the very weights of an uninterrupted one (bit-identical on the CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..config import ConfigError
from ..distributed import barrier
from ..errors import first_line
from ..optim import load_optimizer_state
from ..rundir import CHECKPOINT, CONFIG, first_non_finite, load_checkpoint, load_weights, rng_state, save_checkpoint
from .state import Progress, Session

__all__ = ["checkpoint", "restore", "last_checkpoint_step"]


def checkpoint(s: Session, p: Progress, seconds: float) -> None:
    """checkpoint.pt, written by rank 0 with the random states of every process; ``seconds``: this
    invocation's training time."""
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


def restore(s: Session) -> Progress:
    """Weights, optimiser, step, RNG states, the last k-NN and the training seconds from checkpoint.pt; a run
    stopped before its first checkpoint starts again from step 0 (as it started, so it ends the same). A
    checkpoint that is damaged or does not fit the run is a one-line ValueError naming it."""
    path = s.run_dir / CHECKPOINT
    if not path.exists():
        s.log(f"{s.run_dir} has no checkpoint yet (it stopped before its first): starting it again from step 0")
        return Progress()
    ckpt = load_checkpoint(path, map_location=s.device, require=("model", "optimizer", "step", "rng"))
    bad = first_non_finite(ckpt["optimizer"], "optimizer")
    if bad:
        raise ValueError(f"{path} is not a usable checkpoint: {bad} (a damaged file: training never saves it)")
    try:
        load_weights(s.model, ckpt["model"])
        load_optimizer_state(s.optimizer, ckpt["optimizer"])
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        first = first_line(e, default=type(e).__name__)
        raise ValueError(f"{path} does not fit this run's model and optimiser (those of {s.run_dir / CONFIG}: "
                         f"{first}); was it copied from another run?") from None
    try:
        return _restore_progress(s, ckpt)
    except ConfigError:
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as e:
        what = f"{type(e).__name__}: {first_line(e, 120)}".rstrip(": ")
        raise ValueError(f"{path} is not a checkpoint this run can resume from (its random states, k-NN or "
                         f"seconds are not what training writes: {what})") from None


def _restore_progress(s: Session, ckpt: dict) -> Progress:
    """The random states (this process's), the step, the k-NN so far and the training seconds."""
    ranks = ckpt["rng"].get("ranks", [ckpt["rng"]])
    if len(ranks) != s.dist.world:
        raise ConfigError(f"{s.run_dir} was trained by {len(ranks)} process(es): resume it with as many "
                          f"(this job has {s.dist.world})")
    rng = ranks[s.dist.rank]
    torch.set_rng_state(rng["torch"].cpu())
    s.generator.set_state(rng["augment"].cpu())
    if "cuda" in rng and s.device.type == "cuda":
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    knn = {int(k): float(v) for k, v in ckpt.get("knn", {}).items()}
    seconds = float(ckpt.get("train_seconds", 0.0))
    if not (math.isfinite(seconds) and seconds >= 0 and all(math.isfinite(v) for v in knn.values())):
        raise ValueError(f"train_seconds={seconds!r}, knn={knn!r}: not finite")
    p = Progress(step=int(ckpt["step"]), knn=knn, seconds_before=seconds)
    s.log(f"resuming {s.run_dir} at step {p.step}/{s.total_steps} (epoch {p.step // s.steps_per_epoch})")
    return p


def last_checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's checkpoint, None when there is none (or none readable)."""
    try:
        return int(load_checkpoint(run_dir)["step"])
    except (OSError, ValueError, KeyError):
        return None
