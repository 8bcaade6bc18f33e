"""The benchmark scripts run end to end on tiny CPU settings and report what they promise."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"benchmark_{name}"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_throughput_measures_every_variant(tmp_path, capsys):
    throughput = _load("throughput")
    out = tmp_path / "t.json"
    rc = throughput.main(["--preset", "demo", "--batch-size", "16", "--steps", "2", "--warmup", "1", "--workers", "0",
                          "--images", "64", "--device", "cpu", "--variants", "ours,reference,plain,joint",
                          "--json", str(out), "--model.expander", "32,32"])
    assert rc == 0
    figures = json.loads(out.read_text())
    assert [r["variant"] for r in figures["results"]] == ["ours", "reference", "plain", "joint"]
    assert all(r["images_per_s"] > 0 and r["steps"] == 2 and r["tflops"] > 0 for r in figures["results"])
    assert all(r["fraction_of_peak"] is None for r in figures["results"])  # no known peak for a CPU
    assert figures["compile_seconds"] == 0.0 and figures["compile_fallback"] is None  # auto: eager on the CPU
    assert figures["input"] == [1, 16, 16]  # digits raised to the demo's 16x16
    assert figures["gflop_per_step"] > 0 and figures["tflops"] > 0 and figures["peak_tflops"] is None
    assert "x reference" in capsys.readouterr().out


def test_throughput_reference_views_follow_the_recipe():
    throughput = _load("throughput")
    from vicreg.config import build_config

    cfg = build_config("resnet18-cifar")
    images = throughput.training_images(cfg, "synthetic", 4)
    assert images.shape == (4, 3, 32, 32)
    xa, xb = throughput.PILTwoViews(images, cfg, 32)[0]
    assert xa.shape == xb.shape == (3, 32, 32) and 0 <= xa.min() and xa.max() <= 1 and not xa.equal(xb)
    with pytest.raises(SystemExit, match="unknown variant"):
        throughput.main(["--variants", "fastest", "--device", "cpu", "--images", "64", "--batch-size", "16",
                         "--preset", "demo"])


@pytest.mark.slow
def test_time_to_accuracy_reports_the_first_epoch_at_each_target(tmp_path, capsys):
    tta = _load("time_to_accuracy")
    out = tmp_path / "tta.json"
    rc = tta.main(["--preset", "demo", "--targets", "10,99.99", "--device", "cpu", "--out", str(tmp_path / "run"),
                   "--json", str(out), "--train.epochs", "2", "--train.batch_size", "64", "--data.image_size", "8",
                   "--model.expander", "32,32", "--train.progress", "false"])
    assert rc == 0
    figures = json.loads(out.read_text())
    assert [e["epoch"] for e in figures["evaluations"]] == [1, 2]
    first = figures["targets"]["10.0"]
    assert first["epoch"] == 1 and first["seconds"] > 0
    assert figures["targets"]["99.99"] is None
    assert "not reached" in capsys.readouterr().out


@pytest.mark.slow
def test_recipe_search_trains_each_variant_and_tabulates_them(tmp_path, capsys):
    search = _load("recipe_search")
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    rc = search.main(["--preset", "demo", "--set", "optim.lr=0.001,0.004", "--device", "cpu", "--out", str(tmp_path),
                      "--json", str(out), "--markdown", str(md), "--train.epochs", "2", "--train.batch_size", "64",
                      "--data.image_size", "8", "--model.expander", "32,32"])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["optim.lr=0.001", "optim.lr=0.004"]
    assert all(len(r["curve"]) == 2 and r["best"] >= r["final"] and r["raw_pixels"] > 90 for r in rows)
    assert "| optim.lr=0.004 |" in md.read_text() and "raw pixels" in capsys.readouterr().out
    assert list(search.GRID)[0] == "eta 0.001 (before)"  # the grid starts from the recipe before the search


@pytest.mark.slow
def test_worldmodel_probes_trains_each_setup_per_seed_and_reports_mean_and_spread(tmp_path, capsys):
    probes = _load("worldmodel_probes")
    tiny = ["data.video.sequences=16", "data.video.test_sequences=8", "data.video.length=6",
            "data.video.canvas=16", "data.video.sprite_size=6", "data.video.distractors=2", "train.batch_size=8",
            "train.diagnostics_samples=32", "train.knn_k=5,20", "train.progress=false", "model.head_widths=16",
            "train.device=cpu"]
    probes.main(["--seeds", "0", "1", "--setups", "preset", "linear-16", "--epochs", "1", "--probe-frames", "60",
                 "--out", str(tmp_path), "--set", *tiny])
    report = json.loads((tmp_path / "probes.json").read_text())
    assert report["seeds"] == [0, 1] and set(report["setups"]) == {"preset", "linear-16"}
    for table in report["setups"].values():
        assert set(table) == {"position", "velocity", "distractors"}
        for r in table.values():
            values = r["embedding"]["values"]
            assert len(values) == 2 and r["embedding"]["mean"] == pytest.approx(sum(values) / 2)
            assert r["embedding"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    # other seeds, other sequences: the pixels' R^2 differs between seeds too
    assert len(set(report["setups"]["preset"]["position"]["raw pixels"]["values"])) == 2
    assert (tmp_path / "probes.png").stat().st_size > 0 and (tmp_path / "preset-seed1").is_dir()
    assert "mean +- std over seeds [0, 1]" in capsys.readouterr().out


@pytest.mark.slow
def test_planning_benchmark_trains_the_world_model_and_plans_with_it(tmp_path, capsys):
    planning = _load("planning")
    out = tmp_path / "p.json"
    assert planning.main(["--quick", "--device", "cpu", "--out", str(out), "--runs", str(tmp_path / "runs"),
                          "--plan.episodes", "3"]) == 0
    report = json.loads(out.read_text())
    assert set(report["stage_seconds"]) == {"encoder", "predictor", "plan"} and report["plan"]["episodes"] == 3
    assert set(report["results"]["leaves on"]) == {"world model", "pixels", "oracle", "random"}
    assert set(report["success_by_horizon"]) == {"1", "2"} and report["device"] == "cpu"
    assert "planning toward a goal frame" in capsys.readouterr().out


@pytest.mark.slow
def test_pusht_benchmark_collects_trains_and_plans_at_each_goal_distance(tmp_path, capsys):
    pusht = _load("pusht")
    out = tmp_path / "p.json"
    assert pusht.main(["--quick", "--device", "cpu", "--out", str(out), "--work", str(tmp_path / "w"),
                       "--workers", "1", "--goal-steps", "5", "10"]) == 0
    report = json.loads(out.read_text())
    assert set(report["stage_seconds"]) == {"collect", "encoder", "predictor", "plan, goal 5", "plan, goal 10"}
    assert report["collection"]["episodes"] == 10 and set(report["by_goal_steps"]) == {"5", "10"}
    for goal in ("5", "10"):
        assert set(report["by_goal_steps"][goal]["results"]) == {"world model", "pixels", "states", "oracle", "random",
                                                                 "replay"}
    assert (tmp_path / "p_success.png").stat().st_size > 0
    assert (tmp_path / "p_goal10_tasks.png").stat().st_size > 0 and (tmp_path / "p_goal5_imagined.png").exists()
    assert "planning in gym_pusht/PushT-v0: 4 tasks, goal 10 steps ahead" in capsys.readouterr().out
