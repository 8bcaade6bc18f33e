"""End-to-end training on tiny settings: the run directory, bit-identical resume, Ctrl-C, NaN."""

import csv
import json
import os
import shutil
import signal

import pytest
import torch

from vicreg.config import build_config
from vicreg.rundir import load_checkpoint
from vicreg.training import train


def tiny(tmp_path, **extra):
    # on the CPU whatever the machine has (the CUDA-only tests below ask for CUDA themselves): the same
    # numbers and the same (eager, fp32) path on a laptop, in CI and on a GPU machine
    over = {"train.device": "cpu", "train.epochs": 2, "train.batch_size": 64, "model.expander": [64, 64],
            "data.image_size": 8,
            "train.knn_every": 1, "train.progress": False, "train.out_dir": str(tmp_path), "train.log_every": 4,
            "train.knn_k": [5, 20]}
    over.update(extra)
    return build_config("demo", over)


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_directory_contents(tmp_path):
    cfg = tiny(tmp_path, **{"train.epochs": 1})
    result = train(cfg, run_dir=tmp_path / "run", echo=lambda m: None)
    d = result.run_dir
    for name in ("config.yaml", "metrics.csv", "knn.csv", "checkpoint.pt", "summary.json", "log.txt",
                 "diagnostics.jsonl"):
        assert (d / name).exists(), name
    assert any((d / "tb").iterdir())
    assert not list(d.glob("*.tmp"))
    metrics = rows(d / "metrics.csv")
    steps_per_epoch = 1347 // 64
    assert [int(r["step"]) for r in metrics] == list(range(1, steps_per_epoch + 1))  # one row per step
    assert set(metrics[0]) == {"step", "epoch", "lr", "loss", "invariance", "variance", "covariance", "images_per_s"}
    ckpt = load_checkpoint(d)  # weights_only=True: no arbitrary unpickling
    assert ckpt["step"] == steps_per_epoch
    assert {"model", "optimizer", "scheduler", "rng", "config"} <= set(ckpt)
    summary = json.loads((d / "summary.json").read_text())
    assert set(summary["knn"]) == {"5", "20"} and 0 <= summary["knn"]["20"] <= 100
    assert summary["knn_raw_pixels"]["20"] > 90  # raw 8x8 pixels already separate the digits well
    # collapse diagnostics: one record per epoch, for the embedding (512-D here) and the projection
    (diag,) = [json.loads(line) for line in (d / "diagnostics.jsonl").read_text().splitlines()]
    assert diag["step"] == steps_per_epoch and diag["target"] == 1.0
    for level, dim in (("embedding", 512), ("projection", 64)):
        rec = diag[level]
        assert rec["dim"] == dim and len(rec["std"]) == dim
        assert len(rec["singular_values"]) == min(dim, 450)  # min(N, D) over the 450 test digits
        assert 1.0 <= rec["effective_rank"] <= dim and 0.0 <= rec["dead_fraction"] <= 1.0 and rec["mean_hinge"] >= 0.0
    assert summary["collapse"]["embedding"]["effective_rank"] == diag["embedding"]["effective_rank"]
    # the loss terms are each logged and add up to the total with the weights
    r = metrics[-1]
    total = 25 * float(r["invariance"]) + 25 * float(r["variance"]) + float(r["covariance"])
    assert float(r["loss"]) == pytest.approx(total, rel=1e-4)


def test_a_slow_loader_is_named_as_what_limits_the_throughput(tmp_path, monkeypatch):
    import time

    import vicreg.data.batches as batches

    collate = batches._collate

    def slow_collate(items):  # the streamed path's batches take 50 ms each to arrive
        time.sleep(0.05)
        return collate(items)

    monkeypatch.setattr(batches, "_collate", slow_collate)
    cfg = tiny(tmp_path, **{"train.epochs": 1, "train.knn_every": 0, "data.placement": "stream",
                            "data.num_workers": 0})
    lines = []
    result = train(cfg, run_dir=tmp_path / "run", echo=lines.append)
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    steps = result.step  # 21
    assert 0.05 * steps <= summary["data_wait_seconds"] <= summary["train_seconds"]
    assert any("for their batches" in line and "the loader limits the throughput" in line for line in lines)


# mid-epoch, exactly at the end of epoch 1, and SIGTERM (what Slurm and kill send) like a Ctrl-C
@pytest.mark.parametrize("stop_at,sig", [(13, "SIGINT"), (21, "SIGINT"), (13, "SIGTERM")])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, stop_at, sig):
    cfg = tiny(tmp_path)
    full = train(cfg, run_dir=tmp_path / "full", echo=lambda m: None)

    def ctrl_c(step):
        if step == stop_at:
            os.kill(os.getpid(), getattr(signal, sig))  # the real signal path: finish the step, save, return

    lines = []
    part = train(cfg, run_dir=tmp_path / "part", on_step=ctrl_c, echo=lines.append)
    assert part.interrupted and part.step == stop_at
    assert part.resume_command == f"vicreg train --resume {tmp_path / 'part'}"
    assert f"stopped ({sig}) at step {stop_at}: checkpoint saved; resume with: {part.resume_command}" in lines
    assert load_checkpoint(tmp_path / "part")["step"] == stop_at
    resumed = train(cfg, run_dir=tmp_path / "part", resume=True, echo=lambda m: None)
    assert not resumed.interrupted and resumed.step == full.step

    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "part")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for key in sa:
            assert torch.equal(sa[key], sb[key])
    terms = ("step", "loss", "invariance", "variance", "covariance")
    la = [tuple(r[k] for k in terms) for r in rows(tmp_path / "full/metrics.csv")]
    lb = [tuple(r[k] for k in terms) for r in rows(tmp_path / "part/metrics.csv")]
    assert la == lb
    assert resumed.knn == full.knn
    def no_time(rs: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rs]

    assert no_time(rows(tmp_path / "full/knn.csv")) == no_time(rows(tmp_path / "part/knn.csv"))
    seconds = [float(r["train_seconds"]) for r in rows(tmp_path / "part/knn.csv")]
    assert all(0 < a < b for a, b in zip(seconds, seconds[1:]))  # the resumed run's clock goes on from its checkpoint
    assert (tmp_path / "full/diagnostics.jsonl").read_text() == (tmp_path / "part/diagnostics.jsonl").read_text()


def test_resume_drops_rows_written_after_the_checkpoint(tmp_path):
    cfg = tiny(tmp_path, **{"train.epochs": 1})
    train(cfg, run_dir=tmp_path / "r", echo=lambda m: None)
    # as if the process died after logging past its checkpoint: extra rows beyond the saved step
    last = load_checkpoint(tmp_path / "r")["step"]
    with open(tmp_path / "r/knn.csv", "a") as f:
        f.write(f"{last + 5},9.000,1.00,1.00,1.00\n")
    with open(tmp_path / "r/metrics.csv", "a") as f:
        f.write(f"{last + 5},9,0.1,1,1,1,1,1\n")
    with open(tmp_path / "r/diagnostics.jsonl", "a") as f:
        f.write(json.dumps({"step": last + 5}) + "\n")
    train(cfg, run_dir=tmp_path / "r", resume=True, echo=lambda m: None)
    steps = [json.loads(line)["step"] for line in (tmp_path / "r/diagnostics.jsonl").read_text().splitlines()]
    assert steps == [last]
    assert max(int(r["step"]) for r in rows(tmp_path / "r/knn.csv")) == last
    assert max(int(r["step"]) for r in rows(tmp_path / "r/metrics.csv")) == last


def test_diverging_run_stops_with_a_clear_error(tmp_path):
    cfg = tiny(tmp_path, **{"optim.lr": 1e12, "train.epochs": 1, "train.log_every": 1, "train.divergence_factor": 0})
    with pytest.raises(FloatingPointError, match="non-finite at step .* No checkpoint was written yet"):
        train(cfg, run_dir=tmp_path / "nan", echo=lambda m: None)


@pytest.mark.parametrize("minutes", [0.0, 1e-9])
def test_checkpoints_after_the_first_epoch_and_by_time_between_epochs(tmp_path, minutes):
    cfg = tiny(tmp_path, **{"train.epochs": 3, "train.checkpoint_every": 10, "train.knn_every": 0,
                            "train.checkpoint_minutes": minutes, "data.limit_train": 640})  # 10 steps an epoch
    run, seen = tmp_path / f"run{minutes}", set()

    def look(step):
        if (run / "checkpoint.pt").exists():
            seen.add(load_checkpoint(run)["step"])

    train(cfg, run_dir=run, on_step=look, echo=lambda m: None)
    if minutes == 0:
        assert seen == {10}  # the first epoch's, though checkpoint_every is 10 (and the last, after the hook)
    else:  # due after every step: saved after the step that follows (one poll late in a job; here at once)
        assert seen == set(range(1, 30))


@pytest.mark.parametrize("from_step,saved", [(25, 21), (5, None)])
def test_a_loss_blow_up_stops_the_run_before_the_next_checkpoint_and_says_so_in_the_log(tmp_path, monkeypatch,
                                                                                         from_step, saved):
    import vicreg.step as train_module

    real, calls = train_module.Step.__call__, [0]

    def blowing_up(self, *args, **kwargs):  # the loss, as logged, jumps 10x from `from_step` on
        calls[0] += 1
        terms = real(self, *args, **kwargs)
        return terms * 10 if calls[0] >= from_step else terms

    monkeypatch.setattr(train_module.Step, "__call__", blowing_up)
    cfg = tiny(tmp_path, **{"train.checkpoint_every": 1, "train.knn_every": 0})
    with pytest.raises(FloatingPointError, match=f"the loss blew up at step {from_step}: ") as e:
        train(cfg, run_dir=tmp_path / "run", echo=lambda m: None)
    run = tmp_path / "run"
    if saved:
        assert f"The last checkpoint (step {saved}), saved before it, is intact: resume with vicreg train " \
               f"--resume {run}" in str(e.value)
        assert load_checkpoint(run)["step"] == saved
    else:
        assert "No checkpoint was written yet (vicreg train --resume" in str(e.value)
        assert not (run / "checkpoint.pt").exists()
    assert f"error: {e.value}" in (run / "log.txt").read_text()
    assert max(int(r["step"]) for r in rows(run / "metrics.csv")) == from_step - 1


@pytest.mark.slow
def test_small_images_are_resized_for_the_backbone_and_said_once(tmp_path):
    cfg = tiny(tmp_path, **{"data.image_size": None, "model.backbone": "vgg16", "model.head": "seed",
                            "model.head_widths": [16, 8], "model.embedding_dim": 2, "model.freeze_backbone": True,
                            "train.epochs": 1, "model.expander": [8, 8], "data.limit_train": 192,
                            "data.limit_test": 64, "train.knn_k": [5]})
    lines = []
    result = train(cfg, run_dir=tmp_path / "seed", echo=lines.append)
    assert sum("resizing 8x8 images to 32x32" in line for line in lines) == 1
    assert result.step == 192 // 64


@pytest.mark.slow
def test_demo_learns_better_than_chance(tmp_path):
    cfg = tiny(tmp_path, **{"train.epochs": 4, "data.image_size": 12})
    result = train(cfg, run_dir=tmp_path / "learn", echo=lambda m: None)
    assert result.knn[20] > 60.0  # 10 classes: chance is 10 %


def test_stacked_views_train_like_one_forward_per_view(tmp_path):
    """train.stack_views (the default) and one forward per view give the same losses, step by step."""
    losses = {}
    for stack in (True, False):
        cfg = tiny(tmp_path, **{"train.epochs": 1, "train.stack_views": stack, "train.knn_every": 0})
        train(cfg, run_dir=tmp_path / f"stack-{stack}", echo=lambda m: None)
        losses[stack] = [float(r["loss"]) for r in rows(tmp_path / f"stack-{stack}/metrics.csv")]
    assert len(losses[True]) == 21
    # float32 (the maths is equal: float64 check in test_step.py). The first step differs by rounding only
    # (~1e-7); 21 AdamW steps let that grow but not past 1e-4 relative; metrics.csv keeps 6
    # significant digits (5e-6 relative). Seen on a 2-core x86 machine: equal to the 6 digits written
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    cfg = tiny(tmp_path, **{"train.epochs": 1, "train.batchnorm": "joint", "train.knn_every": 0})
    joint = train(cfg, run_dir=tmp_path / "joint", echo=lambda m: None)
    assert joint.step == 21


@pytest.mark.cuda  # the asynchronous metrics path
def test_cuda_run_writes_every_step_although_metrics_are_copied_asynchronously(tmp_path):
    cfg = tiny(tmp_path, **{"train.epochs": 1, "train.device": "cuda", "train.log_every": 3})
    train(cfg, run_dir=tmp_path / "gpu", echo=lambda m: None)
    assert [int(r["step"]) for r in rows(tmp_path / "gpu/metrics.csv")] == list(range(1, 1347 // 64 + 1))
    with pytest.raises(FloatingPointError, match="non-finite"):
        train(tiny(tmp_path, **{"optim.lr": 1e12, "train.epochs": 1, "train.device": "cuda"}),
              run_dir=tmp_path / "nan", echo=lambda m: None)


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="torch.compile on the CPU needs a C compiler")
@pytest.mark.slow
def test_compiled_run_resumes_bit_identically_and_counts_compilation_apart(tmp_path):
    """train.compile on the CPU: an interrupted run recompiles on resume and ends with the uninterrupted
    run's weights; the compilation time is said once per invocation and kept out of train_seconds."""
    cfg = tiny(tmp_path, **{"train.compile": True, "train.epochs": 1, "train.knn_every": 0,
                            "model.expander": [32, 32]})
    lines = []
    full = train(cfg, run_dir=tmp_path / "full", echo=lines.append)
    assert sum("compiled the forward and loss (torch.compile mode default)" in line for line in lines) == 1
    summary = json.loads((tmp_path / "full/summary.json").read_text())
    assert summary["compile"]["enabled"] and summary["compile"]["seconds"] > 0
    assert summary["compile"]["fallback"] is None and summary["compile"]["scope"] == "loss"

    def ctrl_c(step):
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    train(cfg, run_dir=tmp_path / "part", on_step=ctrl_c, echo=lambda m: None)
    resumed = train(cfg, run_dir=tmp_path / "part", resume=True, echo=lambda m: None)
    assert resumed.step == full.step
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "part")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_vicreg_fit_still_trains_for_one_release_and_says_it_is_now_vicreg_train():
    import vicreg

    with pytest.warns(DeprecationWarning, match=r"vicreg.fit is now vicreg.train; vicreg.fit goes in the next release"):
        fit = vicreg.fit
    assert fit is vicreg.train and "fit" not in vicreg.__all__
    with pytest.raises(AttributeError, match="has no attribute 'fitt'"):
        vicreg.fitt  # noqa: B018


def test_a_damaged_checkpoint_or_config_stops_a_resume_in_one_line_naming_it(tmp_path, capsys):
    from vicreg.cli import main

    cfg = tiny(tmp_path, **{"train.epochs": 1, "train.batch_size": 32, "data.limit_train": 64,
                            "data.limit_test": 32, "train.knn_every": 0, "train.diagnostics_samples": 32})
    run = train(cfg, run_dir=tmp_path / "r", echo=lambda m: None).run_dir
    path, config = run / "checkpoint.pt", run / "config.yaml"
    saved, text = torch.load(path, weights_only=True), config.read_text()

    def resume_with(**changes) -> str:
        torch.save({k: v for k, v in {**saved, **changes}.items() if v is not None}, path)
        assert main(["train", "--resume", str(run)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        return err.removeprefix("vicreg: error: ").strip()

    name = next(k for k, v in saved["model"].items() if v.is_floating_point())
    nan = {**saved["model"], name: torch.full_like(saved["model"][name], float("nan"))}
    assert resume_with(model=nan) == (f"{path} is not a usable checkpoint: model.{name} has NaN (a damaged file: "
                                      f"training never saves non-finite weights)")
    state = {i: {k: torch.full_like(v, float("inf")) if v.is_floating_point() else v for k, v in s.items()}
             for i, s in saved["optimizer"]["state"].items()}
    assert resume_with(optimizer={**saved["optimizer"], "state": state}).startswith(
        f"{path} is not a usable checkpoint: optimizer.state.0.")
    assert resume_with(optimizer=None) == f"{path} is not a vicreg checkpoint (no 'optimizer' in it)"
    assert resume_with(rng=[1, 2]) == (f"{path} is not a checkpoint this run can resume from (its random states, "
                                       f"k-NN or seconds are not what training writes: AttributeError: 'list' "
                                       f"object has no attribute 'get')")
    assert resume_with(knn={"5": "abc"}).startswith(f"{path} is not a checkpoint this run can resume from")
    assert resume_with(train_seconds=float("nan")).endswith(f"ValueError: train_seconds=nan, knn="
                                                            f"{ {int(k): v for k, v in saved['knn'].items()} }: not "
                                                            f"finite)")
    assert resume_with(model={"w": torch.ones(2)}).startswith(
        f"{path} does not fit this run's model and optimiser (those of {config}: ")
    torch.save(saved, path)
    config.write_text(text.replace("  batch_size: 32\n", ""))  # a hand edit: the default batch of 256
    assert main(["train", "--resume", str(run)]) == 1
    assert capsys.readouterr().err == (f"vicreg: error: {config}: train.batch_size=256 is larger than the 64 "
                                       f"training images\n")


def test_a_new_run_that_cannot_start_leaves_no_run_directory(tmp_path):
    """Set-up fails after the run directory was made (here the data: 64 images for batches of 128): run.json,
    config.yaml and log.txt go again, and the folder when this run made it; a folder of the user's stays with
    what it held, and the same name can be used at once with a fixed config."""
    with pytest.raises(ValueError, match="train.batch_size=128 is larger than the 64 training images"):
        train(tiny(tmp_path, **{"data.limit_train": 64, "train.batch_size": 128}), run_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(ValueError, match="larger than the 64 training images"):
        train(tiny(tmp_path, **{"data.limit_train": 64, "train.batch_size": 128}), run_dir=tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    result = train(tiny(tmp_path, **{"data.limit_train": 64, "train.batch_size": 32}), run_dir=tmp_path / "new")
    assert (result.run_dir / "checkpoint.pt").exists()
