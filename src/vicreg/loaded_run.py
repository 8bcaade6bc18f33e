"""A trained run, loaded back: its model and data, its outputs on a split, and its evaluation.

    run = load_run("runs/demo-...")                      # config.yaml + checkpoint.pt -> model in eval mode
    outputs, labels = run.outputs("test")                # {representation, embedding, projection} (N, dim)
    report = evaluate_run("runs/demo-...")               # k-NN + linear probe per level -> eval.json
    save_embeddings(embed_run("runs/demo-..."), "test.npz")

``vicreg eval``, ``vicreg embed`` and ``vicreg plot`` are thin shells over these functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .backbones import input_size
from .config import Config
from .data import Batches, ImageDataset, load_dataset
from .device import autocast_dtype, resolve_device
from .diagnostics import collapse_diagnostics
from .errors import first_line
from .evaluate import (
    LEVELS,
    extract_outputs,
    knn_accuracy,
    linear_probe,
    raw_pixel_features,
)
from .models import VICReg, build_model
from .rundir import CHECKPOINT, EVAL, check_writable, load_checkpoint, load_weights, read_config, write_json

__all__ = ["LoadedRun", "load_run", "evaluate_run", "embed_run", "save_embeddings", "format_eval_table"]

SPLITS = ("train", "test")


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: Config
    model: VICReg  # eval mode, on ``device``
    dataset: ImageDataset
    input_size: int
    device: torch.device
    amp: torch.dtype | None
    channels_last: bool
    step: int  # optimisation steps done when the checkpoint was written

    def batches(self, split: str, labelled_only: bool = False) -> Batches:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not valid; choose from {', '.join(SPLITS)}")
        data = self.dataset.test if split == "test" else (
            self.dataset.train_labeled if labelled_only else self.dataset.train)
        return Batches(data, max(256, self.cfg.train.batch_size), self.device, shuffle=False, drop_last=False,
                       placement=self.cfg.data.placement, num_workers=self.cfg.data.num_workers,
                       max_device_fraction=self.cfg.data.max_device_fraction, seed=self.cfg.train.seed,
                       log=lambda _: None)

    def outputs(self, split: str = "test", levels=LEVELS, labelled_only: bool = False):
        """({level: float32 (N, dim)}, labels (N,)) of every image of the split, on the device."""
        return extract_outputs(self.model, self.batches(split, labelled_only).epoch(0), self.input_size, self.amp,
                               self.channels_last, levels)

    @property
    def has_head(self) -> bool:
        return self.cfg.model.head != "none"


def load_run(run_dir: Path | str, device: str = "auto", log: Callable[[str], None] = lambda _: None) -> LoadedRun:
    """Rebuild a run's model from config.yaml and checkpoint.pt, and load its dataset (no download unless the
    run's config asked for it). The model is in eval mode."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    ckpt = load_checkpoint(run_dir, map_location="cpu", require=("model", "step"))
    dev = resolve_device(device, "device")
    dataset = load_dataset(cfg.data, log=log)
    size = input_size(cfg.model.backbone, dataset.image_size, cfg.data.image_size, log)
    # weights come from the checkpoint: never download pretrained ones here
    model = build_model(replace(cfg.model, pretrained=False), dataset.channels, [0.0] * dataset.channels,
                        [1.0] * dataset.channels, size)
    try:
        load_weights(model, ckpt["model"])
    except (KeyError, RuntimeError) as e:
        first = first_line(e, default=type(e).__name__)
        raise ValueError(f"{run_dir / CHECKPOINT} does not fit the model of {run_dir / 'config.yaml'} ({first}); was "
                         f"it copied from another run?") from None
    model.to(dev).eval()
    channels_last = cfg.model.channels_last and dev.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return LoadedRun(run_dir, cfg, model, dataset, size, dev, autocast_dtype(cfg.train.precision, dev), channels_last,
                     int(ckpt["step"]))


def _as_run(run: LoadedRun | Path | str, device: str, log: Callable[[str], None]) -> LoadedRun:
    return run if isinstance(run, LoadedRun) else load_run(run, device, log)


def evaluate_run(run_dir: LoadedRun | Path | str, device: str = "auto", ks: tuple[int, ...] = (20, 200),
                 temperature: float = 0.1, probe_epochs: int = 30, levels=LEVELS, raw_pixels: bool = True,
                 log: Callable[[str], None] = print) -> dict:
    """Weighted k-NN and a linear probe on each level's frozen features (train split -> test split), the raw
    pixels as a baseline, and the collapse diagnostics of the test embeddings. Writes run_dir/eval.json and
    returns what it wrote."""
    t0 = time.perf_counter()
    if not isinstance(run_dir, LoadedRun):
        read_config(run_dir)  # a run directory at all (one line if not)
        check_writable(Path(run_dir))  # before the evaluation, not after it
    run = _as_run(run_dir, device, log)
    bank = int((run.dataset.train_labeled.labels >= 0).sum())
    if min(ks) < 1 or max(ks) > bank:
        raise ValueError(f"k={min(ks) if min(ks) < 1 else max(ks)} is not valid: the k-NN bank of {run.dataset.name} "
                         f"holds {bank} labelled images, so k must be in 1..{bank}")
    levels = [lv for lv in levels if lv != "embedding" or run.has_head]  # no head: embedding is the representation
    t = time.perf_counter()
    train_out, train_y = run.outputs("train", levels, labelled_only=True)
    test_out, test_y = run.outputs("test", levels)
    extract_s = time.perf_counter() - t
    features = {lv: (train_out[lv], test_out[lv]) for lv in levels}
    if raw_pixels:
        features["raw pixels"] = (raw_pixel_features(run.batches("train", True).epoch(0))[0],
                                  raw_pixel_features(run.batches("test").epoch(0))[0])
    rows = {}
    for name, (train_x, test_x) in features.items():
        t = time.perf_counter()
        knn = knn_accuracy(train_x, train_y, test_x, test_y, ks=ks, temperature=temperature)
        knn_s = time.perf_counter() - t
        probe = linear_probe(train_x, train_y, test_x, test_y, epochs=probe_epochs, seed=run.cfg.train.seed)
        rows[name] = {"dim": int(train_x.shape[1]), "knn": {str(k): round(v, 2) for k, v in knn.items()},
                      "linear_probe": round(probe.top1, 2), "linear_probe_train": round(probe.train_top1, 2),
                      "knn_seconds": round(knn_s, 3), "probe_seconds": round(probe.seconds, 3)}
        log(f"  {name:15s} k-NN " + "  ".join(f"@{k} {v:.2f}%" for k, v in knn.items())
            + f"   linear {probe.top1:.2f}%   ({knn_s:.1f} s + {probe.seconds:.1f} s)")
    embedding_level = "embedding" if run.has_head else "representation"
    diag_levels = {"embedding": embedding_level, "projection": "projection"}
    report = {
        "run_dir": str(run.run_dir), "step": run.step, "dataset": run.dataset.name, "device": str(run.device),
        "train_images": int((train_y >= 0).sum()), "test_images": int(test_y.shape[0]),
        "knn_temperature": temperature, "probe_epochs": probe_epochs, "embedding_is_representation": not run.has_head,
        "levels": rows,
        "collapse": {name: collapse_diagnostics(test_out[lv], run.cfg.loss.gamma, run.cfg.loss.eps).to_dict()
                     for name, lv in diag_levels.items() if lv in test_out},
        "extract_seconds": round(extract_s, 3), "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(run.run_dir / EVAL, report)
    return report


def format_eval_table(report: dict) -> str:
    """The eval.json report as a plain-text table."""
    ks = list(next(iter(report["levels"].values()))["knn"])
    head = (f"{'features':16s} {'dim':>5s} " + " ".join(f"{'k-NN@' + k:>9s}" for k in ks)
            + f" {'linear':>8s} {'time':>8s}")
    lines = [head, "-" * len(head)]
    same = report["embedding_is_representation"]
    for name, r in report["levels"].items():
        label = name + ("*" if same and name == "representation" else "")
        lines.append(f"{label:16s} {r['dim']:5d} " + " ".join(f"{r['knn'][k]:8.2f}%" for k in ks)
                     + f" {r['linear_probe']:7.2f}% {r['knn_seconds'] + r['probe_seconds']:7.1f}s")
    if same:
        lines.append("* no head: the embedding is the representation")
    for lv, d in report["collapse"].items():
        lines.append(f"collapse ({lv}, test): effective rank {d['effective_rank']:.1f} of {d['dim']}, median std "
                     f"{d['median_std']:.2f}, {100 * d['dead_fraction']:.0f}% dead dimensions, mean hinge "
                     f"{d['mean_hinge']:.2f}")
    return "\n".join(lines)


def embed_run(run_dir: LoadedRun | Path | str, split: str = "test", device: str = "auto",
              log: Callable[[str], None] = lambda _: None) -> dict:
    """The representation, embedding and projection of every image of a split, with labels, as numpy arrays:
    {"representation": (N, D), "embedding": (N, E), "projection": (N, R), "labels": (N,), "classes": (C,)}."""
    run = _as_run(run_dir, device, log)
    outputs, labels = run.outputs(split)
    arrays = {lv: x.cpu().numpy() for lv, x in outputs.items()}
    arrays["labels"] = labels.cpu().numpy()
    arrays["classes"] = np.array(run.dataset.classes)
    return arrays


def save_embeddings(arrays: dict, path: Path | str) -> Path:
    """Write embed_run's arrays as .npz (numpy) or .parquet (one row per image: label, class name and one list
    column per level; needs pyarrow)."""
    path = Path(path)
    if path.suffix not in (".npz", ".parquet"):
        raise ValueError(f"output file {str(path)!r} must end in .npz or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez_compressed(path, **arrays)
        return path
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ValueError("writing .parquet needs pyarrow: pip install pyarrow (or write .npz)") from e
    labels = arrays["labels"]
    classes = [str(c) for c in arrays["classes"]]
    columns = {"label": pa.array(labels),
               "class": pa.array([classes[i] if 0 <= i < len(classes) else None for i in labels.tolist()])}
    for lv in LEVELS:
        x = np.ascontiguousarray(arrays[lv], dtype=np.float32)
        columns[lv] = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    pq.write_table(pa.table(columns), path)
    return path
