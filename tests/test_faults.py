"""Fault injection: ``kill -9`` at seeded moments of a run, each resumed to the end, must give the
uninterrupted run's weights bit for bit, with every metrics, k-NN and diagnostics row once (slow).

The killed runs are children of a fork server that has imported vicreg (so the moments fall in the run);
the reference run and the resumptions run here. All of them on one CPU thread, so every process adds its
floats in the same order."""

import importlib
import multiprocessing as mp
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from vicreg.config import build_config
from vicreg.rundir import load_checkpoint, read_config, read_diagnostics, read_knn, read_metrics
from vicreg.training import train

MOMENTS = 20  # seeded kill moments
# checkpoints every epoch and every 0.1 s, so that kills land before, during and between checkpoint writes
OVERRIDES = {"train.device": "cpu", "train.epochs": 2, "train.batch_size": 128, "model.expander": [64, 64],
             "data.image_size": 8, "train.knn_every": 1, "train.checkpoint_every": 1,
             "train.checkpoint_minutes": 0.0017, "train.log_every": 3, "train.progress": False}

# what a run imports on its way (the optimiser imports torch._dynamo; the digits come from scikit-learn)
PRELOAD = ["vicreg.training", "torch._dynamo", "sklearn.datasets", "torch.utils.tensorboard", "tqdm.auto"]
QUIET = print if os.environ.get("VICREG_FAULTS_VERBOSE") else (lambda m: None)


@contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _child(run_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    train(build_config("demo", {**OVERRIDES, "train.out_dir": out_dir}), run_dir=run_dir, echo=QUIET)


def _kill_at(ctx, run_dir: Path, moment: float) -> bool:
    """Run the training in a child forked from a server that has imported vicreg already (so the moments
    fall in the run, not in the imports) and SIGKILL it ``moment`` seconds after its start. False if it
    finished first."""
    p = ctx.Process(target=_child, args=(str(run_dir), str(run_dir.parent)))
    p.start()
    p.join(timeout=moment)
    if p.exitcode is None:
        p.kill()  # SIGKILL: no handler runs, nothing is flushed
        p.join()
        return True
    assert p.exitcode == 0
    return False


@pytest.mark.slow
def test_kill_9_at_twenty_seeded_moments_each_resumed_bit_identical_with_every_row_once(tmp_path):
    cfg = build_config("demo", {**OVERRIDES, "train.out_dir": str(tmp_path)})
    quiet = QUIET
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    for module in PRELOAD:  # here too, so that the reference run's time is the run's
        importlib.import_module(module)
    with one_thread():
        start = time.perf_counter()
        train(cfg, run_dir=tmp_path / "reference", echo=quiet)
        duration = time.perf_counter() - start  # set-up (data, model) to the end, in this process
    ref = load_checkpoint(tmp_path / "reference")
    ref_metrics, ref_knn = read_metrics(tmp_path / "reference"), read_knn(tmp_path / "reference")
    ref_diag = [d["step"] for d in read_diagnostics(tmp_path / "reference")]

    rng = random.Random(2026)
    outcomes = []
    for i in range(MOMENTS):
        run_dir = tmp_path / f"kill{i}"
        moment = rng.uniform(0.0, 1.0) * duration
        killed = _kill_at(ctx, run_dir, moment)
        saved = load_checkpoint(run_dir)["step"] if (run_dir / "checkpoint.pt").exists() else None
        rows = len(read_metrics(run_dir)["step"]) if (run_dir / "metrics.csv").exists() else 0
        resume = (run_dir / "config.yaml").exists()
        with one_thread():
            train(read_config(run_dir) if resume else cfg, run_dir=run_dir, resume=resume, echo=quiet)
        outcomes.append(f"{moment:.2f}s:{'killed' if killed else 'finished'},ckpt={saved},rows={rows}")

        got = load_checkpoint(run_dir)
        assert got["step"] == ref["step"], i
        for key, value in ref["model"].items():
            assert torch.equal(value, got["model"][key]), (i, key)
        metrics = read_metrics(run_dir)
        assert metrics["step"].tolist() == list(range(1, int(ref["step"]) + 1)), i  # every row once, none lost
        for column in ("loss", "invariance", "variance", "covariance"):
            assert (metrics[column] == ref_metrics[column]).all(), (i, column)
        knn = read_knn(run_dir)
        assert all((knn[c] == ref_knn[c]).all() for c in knn if c != "train_seconds"), i
        assert [d["step"] for d in read_diagnostics(run_dir)] == ref_diag, i
        assert not list(run_dir.glob("*.tmp")) and not (run_dir / "run.lock").exists()
    print(f"\nreference run {duration:.1f} s; kill moments after the start:", *outcomes, sep="\n  ")
    assert sum("killed" in o for o in outcomes) >= MOMENTS * 3 // 4  # most moments really killed the run
