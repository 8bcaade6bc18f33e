"""Reading a run directory's files back: its config, metrics, k-NN evaluations, diagnostics and summary.

Every reader here holds for a damaged file (truncated, emptied, random bytes, another format, a hand edit):
what it cannot make sense of is a one-line ValueError (ConfigError for config.yaml's values) naming the file
and what is wrong with it, never an exception from below (a decoder, a parser) without the file's name. A
row or line cut short at the end of a file that training appends to (a run killed while writing it) is skipped.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from ..config import Config, ConfigError, config_from_dict, config_to_dict, yaml_error
from .layout import CONFIG, DIAGNOSTICS, KNN, METRIC_COLUMNS, METRICS, SUMMARY, run_format
from .parse import DAMAGED, read_json, read_text


def read_config(run_dir: Path | str) -> Config:
    """The run's config.yaml as a validated Config; what is wrong with it is one line naming the file."""
    run_format(run_dir)
    path = Path(run_dir) / CONFIG
    data = _config_yaml(Path(run_dir), required=True)
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def read_config_dict(run_dir: Path | str) -> dict:
    """The run's config.yaml as a plain dict ({} without one): for titles and labels."""
    return _config_yaml(Path(run_dir), required=False)


def _config_yaml(run_dir: Path, required: bool) -> dict:
    path = run_dir / CONFIG
    if not path.exists():
        if required:
            raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG} in it)")
        return {}
    text = read_text(path)
    if not text.strip():
        raise ConfigError(f"{path} is empty: {DAMAGED}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(path, e)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping of config sections (it holds a {type(data).__name__}): "
                          f"{DAMAGED}")
    return data


def same_config(run_dir: Path | str, cfg: Config) -> bool:
    """Does run_dir hold a run of exactly this config (train.progress aside)?"""
    saved = read_config_dict(run_dir)
    if not saved:
        return False

    def strip(d: dict) -> dict:
        train = d.get("train") if isinstance(d.get("train"), dict) else {}
        return {**d, "train": {k: v for k, v in train.items() if k != "progress"}}

    return strip(saved) == strip(config_to_dict(cfg))


def is_finished(run_dir: Path | str, cfg: Config) -> bool:
    """A finished run of exactly this config (summary.json written)."""
    return (Path(run_dir) / SUMMARY).exists() and same_config(run_dir, cfg)


def read_csv_rows(path: Path, columns: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a numeric CSV that training appends to: every row as many numbers as the header has
    names. A last row that is not (a run killed while writing it) is dropped; any other bad row, a header
    without ``columns``, or no header at all is a ValueError naming the file (and the line)."""
    try:
        lines = list(csv.reader(read_text(path).splitlines()))
    except csv.Error as e:
        raise ValueError(f"{path} is not a CSV file ({e}): {DAMAGED}") from None
    header = lines[0] if lines else []
    if not any(cell.strip() for cell in header):
        raise ValueError(f"{path} is empty (no header row)")
    missing = [c for c in columns or [] if c not in header]
    if missing or len(set(header)) != len(header):
        raise ValueError(f"{path} does not have the columns vicreg writes (its header is {','.join(header)[:80]!r}"
                         f"{'; no ' + ', '.join(missing) if missing else ''}): {DAMAGED}")
    numbered = [(i + 1, row) for i, row in enumerate(lines) if i and row]
    rows = []
    for n, (line, row) in enumerate(numbered):
        problem = _row_problem(row, len(header))
        if problem is None:
            rows.append(row)
        elif n < len(numbered) - 1:
            raise ValueError(f"{path}, line {line}: {problem}: {DAMAGED}")
    return header, rows


def _row_problem(row: list[str], width: int) -> str | None:
    if len(row) != width:
        return f"{len(row)} values where the header names {width}"
    for cell in row:
        try:
            float(cell)
        except ValueError:
            return f"{cell[:20]!r} is not a number"
    return None


def _read_csv(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    """Columns of a numeric CSV with a header row, as float arrays (empty arrays when there are no rows)."""
    header, rows = read_csv_rows(path, columns)
    values = np.array(rows, dtype=float).reshape(len(rows), len(header))
    return {name: values[:, i] for i, name in enumerate(header)}


def read_metrics(run_dir: Path | str) -> dict[str, np.ndarray]:
    """metrics.csv as {column: (n_steps,) float array}: step, epoch, lr, loss, invariance, variance, ..."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {METRICS} in it)")
    return _read_csv(path, METRIC_COLUMNS)


def read_knn(run_dir: Path | str) -> dict[str, np.ndarray] | None:
    """knn.csv as {column: (n_evals,) array} (step, epoch, knn@K for each K); None without evaluations."""
    path = Path(run_dir) / KNN
    if not path.exists():
        return None
    knn = _read_csv(path, ["step"])
    ks = [c for c in knn if c.startswith("knn@")]
    if not ks or not all(c[4:].isdigit() for c in ks):
        raise ValueError(f"{path} does not have the columns vicreg writes (knn@K for each k, found "
                         f"{','.join(knn)[:80]!r}): {DAMAGED}")
    return knn if len(knn["step"]) else None


def read_diagnostics(run_dir: Path | str) -> list[dict]:
    """The entries of diagnostics.jsonl in order; [] when the file is missing. A truncated last line (the run
    was killed while writing it) is skipped; a malformed line elsewhere raises, naming the file and the line.
    Each entry is a mapping with its step."""
    path = Path(run_dir) / DIAGNOSTICS
    return [entry for _, entry in jsonl_entries(path)] if path.exists() else []


def jsonl_entries(path: Path) -> list[tuple[str, dict]]:
    """(line, entry) of every line of a JSON-lines file training appends to, each a mapping with an integer
    "step"; a bad last line is dropped (a kill cut it short), a bad line elsewhere is a ValueError naming it."""
    lines = [(i + 1, line) for i, line in enumerate(read_text(path).splitlines()) if line.strip()]
    entries = []
    for n, (number, line) in enumerate(lines):
        try:
            entry = json.loads(line)
            problem = None if isinstance(entry, dict) and type(entry.get("step")) is int else \
                "not a mapping with an integer step"
        except json.JSONDecodeError as e:
            problem = f"not valid JSON ({e.msg}, column {e.colno})"
        if problem is None:
            entries.append((line, entry))
        elif n < len(lines) - 1:
            raise ValueError(f"{path}, line {number} is {problem}: {DAMAGED}")
    return entries


def read_summary(run_dir: Path | str) -> dict:
    """summary.json ({} until the run has finished)."""
    return read_json(Path(run_dir) / SUMMARY)
