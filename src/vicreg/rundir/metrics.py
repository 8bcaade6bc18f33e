"""Writing during training: metrics.csv, knn.csv, diagnostics.jsonl, TensorBoard and log.txt, and trimming
them back to a checkpoint's step when a run resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .atomic import atomic_write
from .layout import DIAGNOSTICS, KNN, LOG, LOSS_COLUMNS, METRIC_COLUMNS, METRICS, TENSORBOARD
from .parse import read_text
from .readers import jsonl_entries, read_csv_rows


def _keep_rows(path: Path, until_step: int, header: list[str] | None = None) -> None:
    """Rewrite the CSV at ``path`` (atomically) keeping the rows with step <= until_step; create it with
    ``header`` if it does not exist (or is empty) and a header is given. A row cut short by a kill is dropped;
    a file that is not such a CSV is a ValueError naming it (readers.read_csv_rows)."""
    rows: list[list[str]] = []
    if path.exists() and read_text(path).strip():
        header, rows = read_csv_rows(path, header or ["step"])
        step = header.index("step")
        rows = [r for r in rows if float(r[step]) <= until_step]
    elif header is None:
        path.unlink(missing_ok=True)  # empty: the next evaluation writes it again, header first
        return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    atomic_write(path, write)


def _keep_jsonl(path: Path, until_step: int) -> None:
    """Rewrite the JSON-lines file at ``path`` (atomically) keeping the records with step <= until_step; a line
    cut short by a kill is dropped, a file that is not such JSON lines is a ValueError naming it."""
    if not path.exists():
        return
    records = [line + "\n" for line, entry in jsonl_entries(path) if entry["step"] <= until_step]
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
