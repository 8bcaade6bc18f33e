"""The run directory: the one owner of its layout, and of reading and writing every file in it.

A run directory holds::

    run.json           the format version of the directory (RUN_FORMAT) and the vicreg version that wrote it
    config.yaml        the resolved configuration (all fields)
    metrics.csv        one row per step: lr, loss and its three unweighted terms, images/s
    knn.csv            k-NN accuracy of the embedding on the test split, per evaluation, with the training
                       seconds so far (evaluation, diagnostics and checkpoints not counted)
    diagnostics.jsonl  collapse diagnostics per epoch (vicreg.diagnostics), of the embedding and the projection
    tb/                TensorBoard event files (the same scalars)
    checkpoint.pt      model, optimiser, scheduler, step and RNG states (written atomically)
    summary.json       final k-NN accuracies (learned and raw pixels), time, images/s, compilation
    log.txt            what was printed
    eval.json, plots/  written by ``vicreg eval`` and ``vicreg plot``
    predictor/         the world model's predictor (vicreg.worldmodel): config.yaml, checkpoint, history, eval

Runs written before ``run.json`` existed have the same layout: they read as format 1.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml
from torch import Tensor

from . import __version__
from .config import Config, config_from_dict, config_to_dict, save_yaml
from .errors import first_line

__all__ = ["RUN_FORMAT", "create_run_dir", "run_format", "read_config", "read_config_dict", "same_config",
           "is_finished", "read_metrics", "read_knn", "read_diagnostics", "read_summary", "write_json",
           "atomic_save", "atomic_write", "check_writable", "load_checkpoint", "save_checkpoint", "trim_to_step",
           "MetricsWriter", "RunLog"]

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

METRIC_COLUMNS = ["step", "epoch", "lr", "loss", "invariance", "variance", "covariance", "images_per_s"]
LOSS_COLUMNS = METRIC_COLUMNS[3:7]


# --------------------------------------------------------------------------------------------
# Format and config
# --------------------------------------------------------------------------------------------


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


def _write_run_files(run_dir: Path, cfg: Config) -> None:
    if (run_dir / FORMAT).exists():
        run_format(run_dir)
    else:
        write_json(run_dir / FORMAT, {"format": RUN_FORMAT, "vicreg": __version__})
    atomic_write(run_dir / CONFIG, lambda tmp: save_yaml(cfg, tmp))  # a kill never leaves half a config


def run_format(run_dir: Path | str) -> int:
    """The run's format version (1 for runs written before run.json existed); a newer one raises."""
    path = Path(run_dir) / FORMAT
    found = int(json.loads(path.read_text()).get("format", 1)) if path.exists() else 1
    if found > RUN_FORMAT:
        raise ValueError(f"{run_dir} has run format {found}, newer than this vicreg reads ({RUN_FORMAT}): "
                         f"upgrade vicreg to read it")
    return found


def read_config(run_dir: Path | str) -> Config:
    """The run's config.yaml as a validated Config."""
    run_format(run_dir)
    return config_from_dict(_config_yaml(Path(run_dir), required=True))


def read_config_dict(run_dir: Path | str) -> dict:
    """The run's config.yaml as a plain dict ({} without one): for titles and labels."""
    return _config_yaml(Path(run_dir), required=False)


def _config_yaml(run_dir: Path, required: bool) -> dict:
    path = run_dir / CONFIG
    if not path.exists():
        if required:
            raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG} in it)")
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def same_config(run_dir: Path | str, cfg: Config) -> bool:
    """Does run_dir hold a run of exactly this config (train.progress aside)?"""
    saved = read_config_dict(run_dir)
    if not saved:
        return False

    def strip(d: dict) -> dict:
        return {**d, "train": {k: v for k, v in d["train"].items() if k != "progress"}}

    return strip(saved) == strip(config_to_dict(cfg))


def is_finished(run_dir: Path | str, cfg: Config) -> bool:
    """A finished run of exactly this config (summary.json written)."""
    return (Path(run_dir) / SUMMARY).exists() and same_config(run_dir, cfg)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a numeric CSV with a header row, as float arrays (empty arrays when there are no rows)."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty (no header row)")
        rows = [r for r in reader if r]
    values = np.array(rows, dtype=float).reshape(len(rows), len(header))
    return {name: values[:, i] for i, name in enumerate(header)}


def read_metrics(run_dir: Path | str) -> dict[str, np.ndarray]:
    """metrics.csv as {column: (n_steps,) float array}: step, epoch, lr, loss, invariance, variance, ..."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {METRICS} in it)")
    return _read_csv(path)


def read_knn(run_dir: Path | str) -> dict[str, np.ndarray] | None:
    """knn.csv as {column: (n_evals,) array} (step, epoch, knn@K for each K); None without evaluations."""
    path = Path(run_dir) / KNN
    if not path.exists():
        return None
    knn = _read_csv(path)
    return knn if len(knn["step"]) else None


def read_diagnostics(run_dir: Path | str) -> list[dict]:
    """The entries of diagnostics.jsonl in order; [] when the file is missing. A truncated last line (the run
    was killed while writing it) is skipped; a malformed line elsewhere raises."""
    path = Path(run_dir) / DIAGNOSTICS
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    entries = []
    for i, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}, line {i + 1} is not valid JSON: {e}") from None
    return entries


def read_json(path: Path | str) -> dict:
    """A JSON file's content; {} when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def read_summary(run_dir: Path | str) -> dict:
    """summary.json ({} until the run has finished)."""
    return read_json(Path(run_dir) / SUMMARY)


def write_json(path: Path | str, obj: Any) -> None:
    """JSON to a temporary file, then renamed over ``path``: readers never see half a file."""
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2)))


def check_writable(folder: Path) -> None:
    """Raise ValueError (one line, naming the folder) unless a file can be written in ``folder``: said before a
    long computation whose result goes there, not after it."""
    probe = Path(folder) / f".vicreg-write-check-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write in {folder}: {e.strerror or e}") from None


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, flush it to disk and rename it over ``path``: readers and
    a crash never see half a file. When writing fails (a full disk, no permission) the temporary file is
    removed and an OSError names ``path``, in one line."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        raise OSError(f"could not write {path}: {reason} (nothing was left half-written)") from None


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def atomic_save(obj: dict, path: Path) -> None:
    """torch.save through :func:`atomic_write`: a crash never leaves a half-written checkpoint, a full disk
    no temporary file."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


class RunLock:
    """run.lock in a run directory while a job trains in it: a second job (another ``vicreg train`` or
    ``--resume`` of the same run) stops with one line naming the holder. A lock whose process is gone
    (on this host) is taken over."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "run.lock"
        self.held = False

    def acquire(self) -> None:
        import socket

        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise ValueError(f"{self.path.parent} is in use by another job (process {holder.get('pid')} on "
                                   f"{holder.get('host')}, see {self.path}); wait for it or delete the lock if "
                                   f"that job is gone") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_checkpoint(path: Path | str, map_location="cpu") -> dict:
    """Load a checkpoint (a run directory or the file) without unpickling arbitrary objects
    (torch.load(weights_only=True))."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses anything but tensors and plain values
        raise ValueError(f"refused {path}: it holds objects other than tensors and plain values, which could run "
                         f"code when loaded (torch.load with weights_only=True refused it)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = first_line(e, 160, default=type(e).__name__)
        raise ValueError(f"{path} is not a readable checkpoint (truncated or not a checkpoint: {reason})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a vicreg checkpoint (it holds a {type(ckpt).__name__})")
    return ckpt


def rng_state(augment_generator: torch.Generator) -> dict:
    """This process's random states: torch's, the augmentations' generator's and CUDA's."""
    rng = {"torch": torch.get_rng_state(), "augment": augment_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def save_checkpoint(run_dir: Path, cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    step: int, schedule: dict, augment_generator: torch.Generator, knn: dict[int, float],
                    train_seconds: float = 0.0, rank_rngs: list[dict] | None = None,
                    input_size: int | None = None) -> None:
    """Everything a resumed run needs, written atomically to run_dir/checkpoint.pt. ``rank_rngs``: the random
    states of every process of a data-parallel run, in rank order (``rng["ranks"]``; rank 0's are ``rng``)."""
    rng = rank_rngs[0] if rank_rngs else rng_state(augment_generator)
    if rank_rngs and len(rank_rngs) > 1:
        rng = {**rng, "ranks": rank_rngs}
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
            "input_size": input_size,  # the side of the images the model was fed (vicreg.encoder reads it)
        },
        Path(run_dir) / CHECKPOINT,
    )


# --------------------------------------------------------------------------------------------
# Writing during training
# --------------------------------------------------------------------------------------------


def _keep_rows(path: Path, until_step: int, header: list[str] | None = None) -> None:
    """Rewrite the CSV at ``path`` (atomically) keeping the whole rows with step <= until_step; create it with
    ``header`` if it does not exist and a header is given. A row cut short by a kill is dropped."""
    rows: list[list[str]] = []
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None) or header
            rows = [r for r in reader if header and len(r) == len(header) and _step_at_most(r[0], until_step)]
    if header is None:
        return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    atomic_write(path, write)


def _step_at_most(text: str, until_step: int) -> bool:
    try:
        return int(text) <= until_step
    except ValueError:
        return False


def _keep_jsonl(path: Path, until_step: int) -> None:
    """Rewrite the JSON-lines file at ``path`` (atomically) keeping the records with step <= until_step; a line
    cut short by a kill is dropped."""
    if not path.exists():
        return
    records = []
    for line in path.read_text().splitlines():
        try:
            if line.strip() and json.loads(line)["step"] <= until_step:
                records.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write(path, lambda tmp: tmp.write_text("".join(records)))


def trim_to_step(run_dir: Path, step: int) -> None:
    """Drop the rows written after ``step`` (a resumed run's checkpoint), so the files read as one unbroken
    run; creates metrics.csv with its header when missing."""
    _keep_rows(run_dir / METRICS, step, header=METRIC_COLUMNS)
    _keep_rows(run_dir / KNN, step)
    _keep_jsonl(run_dir / DIAGNOSTICS, step)


class RunLog:
    """Prints through ``echo`` (tqdm.write keeps a progress bar intact) and appends to log.txt."""

    def __init__(self, run_dir: Path, echo: Callable[[str], None]):
        self.path, self.echo = Path(run_dir) / LOG, echo

    def __call__(self, msg: str) -> None:
        self.echo(msg)
        with open(self.path, "a") as f:
            f.write(msg + "\n")


class MetricsWriter:
    """metrics.csv, knn.csv, diagnostics.jsonl and TensorBoard. Step losses stay on the device until ``flush``.

    On CUDA, ``flush`` only queues a copy of the window's losses into pinned host memory and writes the
    window queued at the previous flush, whose copy finished long ago: the host never waits for the
    device during training. ``flush(wait=True)`` (epoch ends, interrupts) writes everything now. On the
    CPU every flush writes at once.
    """

    def __init__(self, run_dir: Path, keep_until_step: int, tensorboard: bool = True,
                 check: Callable[[int, list[float]], None] | None = None):
        self.path, self.knn_path = run_dir / METRICS, run_dir / KNN
        self.diagnostics_path = run_dir / DIAGNOSTICS
        trim_to_step(run_dir, keep_until_step)
        self.check = check  # called with (step, [loss, inv, var, cov]) before each row is written; may raise
        self.pending: list[tuple[int, int, float, torch.Tensor]] = []
        self.queued: list[tuple] = []  # windows on their way to the host: (rows, host tensor, event, ips)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=keep_until_step + 1)
            except ImportError:  # tensorboard is a dependency; tolerate its absence in odd environments
                self.tb = None

    def add(self, step: int, epoch: int, lr: float, terms: torch.Tensor) -> None:
        self.pending.append((step, epoch, lr, terms.detach()))

    def flush(self, images_per_s: float, wait: bool = False, reduce: Callable[[Tensor], Tensor] | None = None
              ) -> list[float]:
        """Queue the pending rows and write the windows that are ready (all of them with ``wait`` or on the
        CPU); returns the last written row's [loss, inv, var, cov] ([] if none). What ``check`` raises (the
        training's divergence policy) stops the writing before the row it refused.
        reduce: applied to the window's (steps, 4) losses first (a data-parallel job's mean over processes)."""
        if self.pending:
            values = torch.stack([t for *_, t in self.pending])
            if reduce is not None:
                values = reduce(values)
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
                if self.check is not None:
                    self.check(step, v)
                w.writerow([step, epoch, f"{lr:.6g}", *(f"{x:.6g}" for x in v), f"{images_per_s:.1f}"])
                if self.tb is not None:
                    for name, x in zip(LOSS_COLUMNS, v):
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
                for key in ("effective_rank", "median_std", "dead_fraction", "mean_hinge"):
                    self.tb.add_scalar(f"collapse/{level}_{key}", record[level][key], record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
