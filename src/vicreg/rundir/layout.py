"""The names of a run directory's files, its format version, and making a run directory.

Every other module names a run's files through these constants, never by literal paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..config import Config, save_yaml
from .atomic import atomic_write, write_json
from .parse import DAMAGED, read_json

if TYPE_CHECKING:
    from .lock import RunLock

RUN_FORMAT = 1  # bump when a file's meaning changes; read_config (so loading, resuming, evaluating a run),
#                 create_run_dir and plot_run refuse runs of a newer format

FORMAT = "run.json"
CONFIG = "config.yaml"
METRICS = "metrics.csv"
KNN = "knn.csv"
DIAGNOSTICS = "diagnostics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
LOG = "log.txt"
TENSORBOARD = "tb"
EVAL = "eval.json"
PLOTS = "plots"
PREDICTOR = "predictor"  # the world model's folder, holding config.yaml, eval.json and:
PREDICTOR_WEIGHTS = "predictor.pt"
PREDICTOR_ENCODER = "encoder.pt"  # the encoder after joint training
PREDICTOR_HISTORY = "history.csv"
PLAN = "plan"  # vicreg plan's folder, holding config.yaml and:
PLAN_REPORT = "plan.json"
PIXEL_PREDICTOR = "pixel_predictor.pt"  # the pixel baseline's predictor
STATE_PREDICTOR = "state_predictor.pt"  # the state baseline's predictor (environments)

METRIC_COLUMNS = ["step", "epoch", "lr", "loss", "invariance", "variance", "covariance", "images_per_s"]
LOSS_COLUMNS = METRIC_COLUMNS[3:7]


RUN_FILES = (CONFIG, CHECKPOINT, METRICS, SUMMARY)  # any of them: the folder holds a run


def create_run_dir(run_dir: Path | str, cfg: Config, lock: RunLock | None = None, resume: bool = False) -> Path:
    """Make ``run_dir`` (taking ``lock`` on it first, when given) and write run.json and config.yaml into it. A
    new run never takes over a folder that holds a run (ValueError naming it); a run being resumed keeps its
    run.json (which says what wrote it) after its format is checked; one from before run.json existed gets one.
    A folder that cannot be made or written is one line (ValueError) naming the path, before any training."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the run directory {run_dir}: {e.strerror or e} "
                         f"({e.filename or run_dir}); choose another train.out_dir or train.name") from None
    if lock is not None:
        try:
            lock.acquire()
        except PermissionError as e:
            raise ValueError(f"cannot write in the run directory {run_dir}: {e.strerror}") from None
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    if found and not resume:
        raise ValueError(f"{run_dir} already holds a run ({', '.join(found)}): resume it with `vicreg train --resume "
                         f"{run_dir}`, or choose another train.name (a new run never overwrites one)")
    try:
        _write_run_files(run_dir, cfg)
    except OSError as e:
        raise ValueError(f"cannot write in the run directory {run_dir}: {e.strerror or e}") from None
    return run_dir


def holds_run(run_dir: Path | str) -> bool:
    """Does the folder hold a run (any of RUN_FILES)?"""
    return any((Path(run_dir) / name).exists() for name in RUN_FILES)


def remove_unstarted_run(run_dir: Path | str, made_folder: bool) -> None:
    """Undo :func:`create_run_dir` for a new run whose set-up failed before its first step (a model that cannot
    be built, weights out of reach, data that does not fit): its run.json, config.yaml and log.txt, and the
    folder itself when this run made it and nothing else is in it. No run directory is left half made."""
    run_dir = Path(run_dir)
    for name in (FORMAT, CONFIG, LOG):
        (run_dir / name).unlink(missing_ok=True)
    if made_folder:
        try:
            run_dir.rmdir()
        except OSError:  # something else is in it (or it is gone): leave it
            pass


def _write_run_files(run_dir: Path, cfg: Config) -> None:
    if (run_dir / FORMAT).exists():
        run_format(run_dir)
    else:
        write_json(run_dir / FORMAT, {"format": RUN_FORMAT, "vicreg": __version__})
    atomic_write(run_dir / CONFIG, lambda tmp: save_yaml(cfg, tmp))  # a kill never leaves half a config


def run_format(run_dir: Path | str) -> int:
    """The run's format version (1 for runs written before run.json existed); a newer one raises."""
    path = Path(run_dir) / FORMAT
    found = read_json(path, missing={"format": 1}).get("format", 1)
    if isinstance(found, bool) or not isinstance(found, int) or found < 1:
        raise ValueError(f"{path}: format={found!r} is not valid: expected a positive integer ({DAMAGED})")
    if found > RUN_FORMAT:
        raise ValueError(f"{path}: run format {found}, newer than this vicreg reads ({RUN_FORMAT}): upgrade vicreg "
                         f"to read it")
    return found
