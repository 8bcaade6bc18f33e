"""The world model end to end on tiny moving sprites: encoder run -> predictor -> roll-out, probes, pictures."""

import json
import re

import pytest
import torch

from vicreg.cli import main
from vicreg.config import PredictorConfig, build_config
from vicreg.loaded_run import load_run
from vicreg.rundir import load_checkpoint
from vicreg.training import train
from vicreg.worldmodel import (
    embed_sequences,
    evaluate_predictor,
    fit_predictor,
    load_predictor,
    load_sequences,
    probe_report,
    save_predictor,
    train_predictor,
)


def QUIET(_msg: str) -> None:
    """A log that prints nothing."""


def _encoder_run(path, **extra):
    over = {"data.video.sequences": 24, "data.video.test_sequences": 8, "data.video.length": 8,
            "data.video.canvas": 16, "data.video.sprite_size": 6, "data.video.distractors": 2,
            "train.epochs": 1, "train.batch_size": 8, "train.knn_every": 0, "train.progress": False,
            "train.diagnostics_samples": 64, "train.knn_k": [5, 20], "model.head_widths": [16],
            "model.embedding_dim": 8,
            "model.expander": [32, 32], "train.device": "cpu", **extra}
    cfg = build_config("sprites", over)
    train(cfg, run_dir=path, echo=QUIET)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _encoder_run(tmp_path_factory.mktemp("wm") / "enc")


def test_predictor_trains_and_evaluates_with_baselines_probes_and_pictures(run_dir):
    cfg = PredictorConfig(epochs=3, context=2, width=16, batch_size=32, device="cpu")
    fit = train_predictor(run_dir, cfg, device="cpu", log=QUIET)
    assert (run_dir / "predictor/predictor.pt").exists() and (run_dir / "predictor/config.yaml").exists()
    assert len(fit.history) == 3 and (run_dir / "predictor/history.csv").read_text().count("\n") == 4
    report = evaluate_predictor(run_dir, device="cpu", horizons=(1, 2, 4), figure_sequences=2, log=QUIET)
    assert report["horizons"] == [1, 2, 4]
    assert set(report["rollout_mse"]) == {"predictor", "last", "linear"}
    saved = json.loads((run_dir / "predictor/eval.json").read_text())
    assert saved["rollout_mse"] == report["rollout_mse"]
    # "next = last" worked out directly: frame s-1 standing in for frame s+h-1, standardised, averaged
    run = load_run(run_dir, "cpu")
    test = load_sequences(run.cfg, "test")
    z = fit.norm.normalize(embed_sequences(run, test))
    for h in (1, 2, 4):
        errs = [((z[:, s + h - 1] - z[:, s - 1]) ** 2).mean() for s in range(2, 8 - 4 + 1)]
        assert report["rollout_mse"]["last"][str(h)] == pytest.approx(float(torch.stack(errs).mean()), rel=1e-4)
    assert set(report["probes_r2"]) == {"position", "velocity", "distractors"}
    assert all(set(r) == {"embedding", "raw pixels"} for r in report["probes_r2"].values())
    for path in report["figures"]:
        assert path.endswith((".png", ".svg")) and (run_dir / "predictor" / path.rsplit("/", 1)[1]).stat().st_size > 0


def test_probe_report_finds_positions_in_pixels_and_not_in_noise(run_dir):
    run = load_run(run_dir, "cpu")
    train_seq, test_seq = load_sequences(run.cfg, "train"), load_sequences(run.cfg, "test")
    n, t = train_seq.frames.shape[:2]
    # features that are the positions themselves, and pure noise
    exact = probe_report(train_seq.positions.flatten(2), test_seq.positions.flatten(2), train_seq, test_seq)
    assert exact["position"]["embedding"] > 0.999
    noise = probe_report(torch.randn(n, t, 8), torch.randn(len(test_seq), t, 8), train_seq, test_seq)
    assert noise["position"]["embedding"] < 0.2


def test_joint_training_changes_the_encoder_and_evaluation_uses_it(tmp_path):
    run_dir = _encoder_run(tmp_path / "enc")
    cfg = PredictorConfig(epochs=1, context=2, width=16, batch_size=24, joint=True, device="cpu")
    fit = train_predictor(run_dir, cfg, device="cpu", log=QUIET)
    assert {"train_prediction", "train_variance", "train_covariance"} <= set(fit.history[0])
    encoder = torch.load(run_dir / "predictor/encoder.pt", weights_only=True)
    original = load_checkpoint(run_dir)["model"]
    assert any(not torch.equal(encoder[k], original[k]) for k in original)
    assert load_predictor(run_dir / "predictor/predictor.pt").cfg.joint
    report = evaluate_predictor(run_dir, device="cpu", horizons=(1, 2), figure_sequences=1, log=QUIET)
    assert report["predictor"]["joint"] is True
    # the joint run's encoder, damaged: one line naming it
    path = run_dir / "predictor/encoder.pt"
    for state, message in (({**encoder, "backbone.0.weight": encoder["backbone.0.weight"] * float("nan")},
                            f"{path} is not a usable encoder: backbone.0.weight has NaN"),
                           ({"w": torch.ones(2)}, f"{path} does not fit the model of {run_dir / 'config.yaml'}")):
        torch.save(state, path)
        with pytest.raises(ValueError, match=re.escape(message)):
            evaluate_predictor(run_dir, device="cpu", horizons=(1,), figure_sequences=1, log=QUIET)
    # a frozen-encoder predictor trained afterwards removes the joint run's encoder
    train_predictor(run_dir, PredictorConfig(epochs=1, context=2, width=16, batch_size=24), device="cpu", log=QUIET)
    assert not (run_dir / "predictor/encoder.pt").exists()


def test_cli_train_and_eval_predictor(run_dir, capsys):
    assert main(["train-predictor", str(run_dir), "--device", "cpu", "--predictor.epochs", "1",
                 "--predictor.model", "transformer", "--predictor.width", "16", "--predictor.context", "3"]) == 0
    assert main(["eval-predictor", str(run_dir), "--device", "cpu", "--horizons", "1", "2", "--sequences", "1"]) == 0
    out = capsys.readouterr().out
    assert "next = last" in out and "linear extrapolation" in out and "position" in out
    assert main(["train-predictor", str(run_dir), "--predictor.heads", "3"]) == 2  # 3 does not divide 256
    assert "predictor.heads=3" in capsys.readouterr().err


def test_world_model_needs_a_video_run(tmp_path, capsys):
    cfg = build_config("demo", {"train.epochs": 1, "train.batch_size": 64, "model.expander": [32, 32],
                                "data.image_size": 8, "train.progress": False, "train.knn_every": 0})
    train(cfg, run_dir=tmp_path / "digits", echo=QUIET)
    assert main(["train-predictor", str(tmp_path / "digits"), "--device", "cpu"]) == 1
    assert f"{tmp_path / 'digits' / 'config.yaml'}: the run was trained on data.dataset='digits', not on video" in \
        capsys.readouterr().err
    assert main(["eval-predictor", str(tmp_path / "digits"), "--device", "cpu"]) == 1
    assert "not on video" in capsys.readouterr().err
    assert main(["eval-predictor", str(tmp_path / "nowhere")]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_a_context_longer_than_the_sequences_stops_before_any_work(run_dir, capsys):
    assert main(["train-predictor", str(run_dir), "--predictor.context", "7", "--predictor.train_horizon", "2"]) == 1
    assert "predictor.context=7 plus predictor.train_horizon=2" in capsys.readouterr().err


def test_a_damaged_predictor_file_is_one_line_naming_it(tmp_path):
    cfg = PredictorConfig(epochs=1, context=2, width=8, batch_size=8, device="cpu")
    fit = fit_predictor(torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(0)), cfg, log=QUIET)
    path = tmp_path / "predictor.pt"
    save_predictor(fit, path)
    assert load_predictor(path).cfg == cfg
    saved = torch.load(path, weights_only=True)
    weight = next(k for k, v in saved["model"].items() if v.is_floating_point())
    cases = [(b"", f"{path} is not a readable checkpoint (truncated or not a checkpoint: "),
             (b"hello", f"{path} is not a readable checkpoint (truncated or not a checkpoint: "),
             ({**saved, "model": {**saved["model"], weight: saved["model"][weight] * float("inf")}},
              f"{path} is not a usable checkpoint: model.{weight} has "),
             ({**saved, "norm": {"mean": torch.zeros(4), "std": torch.full((4,), float("nan"))}},
              f"{path} is not a usable predictor: norm.std has NaN"),
             ({**saved, "cfg": True}, f"{path} is not a predictor vicreg wrote: its cfg is a bool"),
             ({**saved, "cfg": {**saved["cfg"], "context": "abc"}}, f"{path}: predictor.context='abc' is not valid"),
             ({**saved, "cfg": {**saved["cfg"], "width": 16}}, f"{path} does not fit the predictor its own config "
                                                                f"describes (Error(s) in loading state_dict"),
             ({**saved, "dim": 10 ** 12}, f"{path} is not a predictor vicreg wrote: dim=1000000000000, action_dim=0 "
                                          f"do not fit its "),
             ({k: v for k, v in saved.items() if k != "norm"}, f"{path} is not a vicreg checkpoint (no 'norm' in it)")]
    for content, message in cases:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        with pytest.raises(ValueError, match=re.escape(message)) as e:
            load_predictor(path)
        assert "\n" not in str(e.value)
