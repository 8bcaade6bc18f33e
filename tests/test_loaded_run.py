"""A trained run loaded back: eval.json, embeddings out (.npz, .parquet), and the plot/eval/embed commands."""

import json

import numpy as np
import pytest

from vicreg.cli import main
from vicreg.config import build_config
from vicreg.loaded_run import embed_run, evaluate_run, format_eval_table, load_run, save_embeddings
from vicreg.training import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny run with a head (E = 4) on the digits, shared by the tests of this file."""
    root = tmp_path_factory.mktemp("runs")
    cfg = build_config("demo", {
        "train.epochs": 2, "train.batch_size": 64, "data.image_size": 8, "train.progress": False,
        "train.out_dir": str(root), "train.knn_every": 1, "model.head": "mlp", "model.head_widths": [32],
        "model.embedding_dim": 4, "model.expander": [32, 16]})
    return train(cfg, run_dir=root / "tiny", echo=lambda m: None).run_dir


def test_load_run_restores_the_trained_weights(run_dir):
    run = load_run(run_dir, device="cpu")
    assert run.step == 2 * (1347 // 64) and not run.model.training and run.has_head
    outputs, labels = run.outputs("test")
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "representation": (450, 512), "embedding": (450, 4), "projection": (450, 16)}
    assert labels.shape == (450,)


def test_evaluate_run_writes_eval_json_for_every_level(run_dir):
    report = evaluate_run(run_dir, device="cpu", probe_epochs=3, log=lambda m: None)
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert list(saved["levels"]) == ["representation", "embedding", "projection", "raw pixels"]
    dims = {name: r["dim"] for name, r in saved["levels"].items()}
    assert dims == {"representation": 512, "embedding": 4, "projection": 16, "raw pixels": 64}
    for r in saved["levels"].values():
        assert set(r["knn"]) == {"20", "200"} and all(0 <= v <= 100 for v in r["knn"].values())
        assert 0 <= r["linear_probe"] <= 100 and r["probe_seconds"] > 0
    assert saved["levels"]["raw pixels"]["linear_probe"] > 80  # the 8x8 digits are nearly linearly separable
    assert saved["collapse"]["embedding"]["dim"] == 4 and saved["collapse"]["projection"]["dim"] == 16
    assert saved["train_images"] == 1347 and saved["test_images"] == 450
    table = format_eval_table(report)
    assert "embedding" in table and "raw pixels" in table and "effective rank" in table


def test_embeddings_round_trip_through_npz_and_parquet(run_dir, tmp_path):
    arrays = embed_run(run_dir, "test", device="cpu")
    npz = np.load(save_embeddings(arrays, tmp_path / "e.npz"))
    assert npz["embedding"].shape == (450, 4) and npz["labels"].shape == (450,)
    assert np.array_equal(npz["projection"], arrays["projection"])
    assert list(npz["classes"]) == [str(i) for i in range(10)]
    pq = pytest.importorskip("pyarrow.parquet")  # installed by the test extra
    table = pq.read_table(save_embeddings(arrays, tmp_path / "e.parquet"))
    assert table.num_rows == 450
    assert np.allclose(np.array(table.column("embedding").to_pylist()), arrays["embedding"])
    assert table.column("label").to_pylist() == arrays["labels"].tolist()
    with pytest.raises(ValueError, match="must end in .npz or .parquet"):
        save_embeddings(arrays, tmp_path / "e.csv")


def test_train_split_embeds_every_training_image(run_dir):
    arrays = embed_run(run_dir, "train", device="cpu")
    assert arrays["representation"].shape == (1347, 512)


@pytest.mark.slow
def test_cli_eval_plot_embed(run_dir, tmp_path, capsys):
    assert main(["eval", str(run_dir), "--probe-epochs", "2", "--no-raw-pixels"]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "eval.json" in out and "raw pixels" not in out
    assert main(["embed", str(run_dir), "--split", "test", "-o", str(tmp_path / "t.npz")]) == 0
    assert np.load(tmp_path / "t.npz")["embedding"].shape == (450, 4)
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "plots"), "--tsne-points", "200"]) == 0
    written = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"loss.png", "loss.svg", "knn.png", "spectrum.png", "collapse.png", "tsne.png"} <= written
    for name in written:
        assert (tmp_path / "plots" / name).stat().st_size > 1000, name


def test_cli_errors_are_one_line(run_dir, tmp_path, capsys):
    assert main(["embed", str(run_dir), "-o", str(tmp_path / "x.csv")]) == 1
    assert main(["eval", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vicreg: error: -o '{tmp_path / 'x.csv'}' must end in .npz or .parquet",
                   f"vicreg: error: {tmp_path / 'missing'} is not a run directory (no config.yaml in it)"]


def test_eval_and_embed_refuse_a_damaged_run_in_one_line_naming_the_file(run_dir, tmp_path, capsys):
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("tb", "eval.json", "plots"))
    saved, text = torch.load(run / "checkpoint.pt", weights_only=True), (run / "config.yaml").read_text()
    name = next(k for k, v in saved["model"].items() if v.is_floating_point())
    cases = [("checkpoint.pt", {**saved, "model": {**saved["model"], name: saved["model"][name] * float("inf")}},
              f"{run / 'checkpoint.pt'} is not a usable checkpoint: model.{name} has an infinite value"),
             ("checkpoint.pt", {k: v for k, v in saved.items() if k != "step"},
              f"{run / 'checkpoint.pt'} is not a vicreg checkpoint (no 'step' in it)"),
             ("config.yaml", text.replace("embedding_dim: 4", "embedding_dim: 8"),
              f"{run / 'checkpoint.pt'} does not fit the model of {run / 'config.yaml'}"),
             ("config.yaml", text + "extra: 1\n", f"{run / 'config.yaml'}: unknown config key 'extra'"),
             ("config.yaml", "\x89PNG\r\n", f"{run / 'config.yaml'} is not a text file (byte 0 is not UTF-8)")]
    for file, content, message in cases:
        torch.save(saved, run / "checkpoint.pt")
        (run / "config.yaml").write_text(text)
        if isinstance(content, dict):
            torch.save(content, run / file)
        else:
            (run / file).write_bytes(content.encode("latin-1"))
        for command in (["eval", str(run), "--k", "5", "--device", "cpu"],
                        ["embed", str(run), "-o", str(tmp_path / "x.npz"), "--device", "cpu"]):
            assert main(command) in (1, 2)
            err = capsys.readouterr().err
            assert err.startswith(f"vicreg: error: {message}") and err.count("\n") == 1, err
    assert not (run / "eval.json").exists() and not (tmp_path / "x.npz").exists()
