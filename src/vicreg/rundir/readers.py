"""Reading a run directory's files back: its config, metrics, k-NN evaluations, diagnostics and summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from ..config import Config, config_from_dict, config_to_dict
from .layout import CONFIG, DIAGNOSTICS, KNN, METRICS, SUMMARY, run_format


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
