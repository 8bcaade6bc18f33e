"""The trained encoder back in Python (vicreg.load_encoder) and out to safetensors and ONNX (vicreg export)."""

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vicreg.cli import main
from vicreg.config import build_config
from vicreg.encoder import EXPORT_JSON, EXPORT_ONNX, EXPORT_WEIGHTS, export_encoder, load_encoder
from vicreg.image_ops import resize_images
from vicreg.loaded_run import load_run
from vicreg.training import train

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("encoder")
    cfg = build_config("demo", {"train.device": "cpu", "train.epochs": 1, "train.batch_size": 128,
                                "train.progress": False, "train.knn_every": 0, "model.expander": [32, 32],
                                "train.out_dir": str(tmp)})
    return train(cfg, run_dir=tmp / "run", echo=lambda m: None).run_dir


def test_the_encoder_of_a_run_is_its_model_without_the_expander(run_dir):
    run = load_run(run_dir, device="cpu")
    x = run.dataset.test.images[:16]
    expected = run.model.embed(resize_images(x, run.input_size)).detach()
    for source in (run_dir, run_dir / "checkpoint.pt"):
        encoder, pre = load_encoder(source)
        assert not encoder.training and (pre.size, pre.channels) == (16, 1)  # demo: 8x8 digits fed at 16x16
        assert torch.equal(encoder(pre(x)).detach(), expected)
    representation, _ = load_encoder(run_dir, level="representation")
    assert torch.equal(representation(pre(x)).detach(), run.model.represent(resize_images(x, 16)).detach())
    assert sum(p.numel() for p in encoder.parameters()) < sum(p.numel() for p in run.model.parameters())


def test_preprocess_takes_pil_images_and_uint8_tensors(run_dir):
    _, pre = load_encoder(run_dir)
    grey = Image.fromarray(np.full((20, 30), 200, dtype=np.uint8), "L")  # not square: the centred square is kept
    colour = Image.new("RGB", (8, 8), (255, 0, 0))  # converted to the encoder's one channel
    x = pre([grey, colour])
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.tensor(200 / 255)) and 0 < float(x[1].mean()) < 1
    t = pre(torch.full((1, 1, 10, 12), 51, dtype=torch.uint8))
    assert t.shape == (1, 1, 16, 16) and torch.allclose(t, torch.tensor(0.2))
    with pytest.raises(ValueError, match=r"expected uint8 images \(N, 1, H, W\), got torch.float32"):
        pre(torch.zeros(1, 1, 8, 8))


def test_safetensors_export_reads_back_equal_and_loads_without_unpickling(run_dir, tmp_path, monkeypatch):
    meta = export_encoder(run_dir, "safetensors", tmp_path / "export")
    assert meta["check"]["safetensors"]["round_trip_equal"] and {p.name for p in (tmp_path / "export").iterdir()} \
        == {EXPORT_JSON, EXPORT_WEIGHTS}
    assert meta["preprocess"]["size"] == 16 and meta["model"]["backbone"] == "small_cnn" and meta["step"] == 10
    # what another runtime needs: names, shapes, dtype, channels, how to resize, and that it must not normalise
    assert meta["input"] == {"name": "images", "shape": [None, 1, 16, 16]}
    assert meta["output"] == {"name": "embeddings", "shape": [None, 512]}
    assert meta["preprocess"]["native"] == 8 and meta["preprocess"]["dtype"] == "float32"
    assert meta["preprocess"]["normalisation"].startswith("inside the model")
    reference, pre = load_encoder(run_dir)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("an exported encoder must load without unpickling")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    exported, pre2 = load_encoder(tmp_path / "export")
    assert pre2 == pre
    for (name, a), (_, b) in zip(reference.state_dict().items(), exported.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("backbone", ["small_cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_onnx_export_runs_in_onnxruntime_like_pytorch(run_dir, tmp_path, backbone, capsys):
    source = run_dir
    if backbone != "small_cnn":  # a ResNet of random weights, as a run directory with a checkpoint
        cfg = build_config("demo", {"train.device": "cpu", "train.epochs": 1, "train.batch_size": 64,
                                    "data.limit_train": 128, "data.limit_test": 64, "model.backbone": backbone,
                                    "train.progress": False,
                                    "train.knn_every": 0, "train.knn_k": [5], "train.diagnostics_samples": 64,
                                    "model.expander": [32, 32], "train.out_dir": str(tmp_path)})
        source = train(cfg, run_dir=tmp_path / "resnet", echo=lambda m: None).run_dir
    assert main(["export", str(source), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"encoder.onnx: onnxruntime vs PyTorch max abs difference \S+ \(outputs up to \S+\)", out)
    meta = json.loads((tmp_path / "onnx" / EXPORT_JSON).read_text())
    check = meta["check"]["onnx"]
    assert check["onnxruntime_max_abs_diff"] <= check["tolerance"] and (tmp_path / "onnx" / EXPORT_ONNX).exists()
    import onnxruntime as ort  # a batch size other than the exported one runs too (dynamic batch axis)

    session = ort.InferenceSession(str(tmp_path / "onnx" / EXPORT_ONNX), providers=["CPUExecutionProvider"])
    encoder, pre = load_encoder(source)
    x = torch.rand(3, pre.channels, pre.size, pre.size, generator=torch.Generator().manual_seed(1))
    got = session.run(None, {"images": x.numpy()})[0]
    assert got.shape[0] == 3 and np.abs(got - encoder(x).detach().numpy()).max() <= check["tolerance"]


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err == f"vicreg: error: no checkpoint at {tmp_path / 'nothing'}\n"
    with pytest.raises(SystemExit) as e:  # argparse's own errors exit 2, in one line
        main(["export", str(tmp_path), "--format", "tflite"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vicreg: error: argument --format: invalid choice: 'tflite'") and err.count("\n") == 1
    with pytest.raises(FileNotFoundError, match="is neither a run directory, a checkpoint"):
        load_encoder(tmp_path / "weights.bin")
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")  # a state dict, not a vicreg checkpoint
    assert main(["export", str(tmp_path / "plain.pt")]) == 1
    assert capsys.readouterr().err == f"vicreg: error: {tmp_path / 'plain.pt'} is not a vicreg checkpoint (no " \
                                      f"'config' in it)\n"


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    block = text.split("<!-- api-example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_images").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 60 * i, dtype=np.uint8), "L").save(tmp_path / "my_images" / f"{i}.png")
    exec(compile(block, "README.md (api example)", "exec"), {})
    out = capsys.readouterr().out
    assert "torch.Size([3, 512])" in out and "Preprocess(size=16, channels=1" in out


def test_a_damaged_export_folder_is_one_line_naming_the_file(run_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "export"
    meta = export_encoder(run_dir, "safetensors", out)
    meta_path, weights_path = out / EXPORT_JSON, out / EXPORT_WEIGHTS
    weights, text, data = load_file(str(weights_path)), meta_path.read_text(), weights_path.read_bytes()
    first = next(iter(weights))
    nan = {**weights, first: weights[first] * float("nan")}
    cases = [(meta_path, '{"format": 1, ', f"{meta_path} is not valid JSON (line 1, column 15"),
             (meta_path, "[1, 2]", f"{meta_path} holds a JSON list where a mapping is expected"),
             (meta_path, json.dumps({**meta, "preprocess": None}), f"{meta_path} does not describe an exported "
                                                                   f"encoder (TypeError: "),
             (meta_path, json.dumps({**meta, "preprocess": {**meta["preprocess"], "std": [float("nan")]}}),
              f"{meta_path} does not describe an exported encoder (format 1, level 'embedding', preprocessing "),
             (meta_path, json.dumps({**meta, "model": {**meta["model"], "widths": 3}}),
              f"{meta_path}: unknown config key 'model.widths'"),
             (weights_path, data[:1000], f"{weights_path} is not a readable safetensors file (truncated or not one: "),
             (weights_path, nan, f"{weights_path} is not a usable encoder: {first} has NaN"),
             (weights_path, {"w": torch.ones(2)}, f"{weights_path} does not fit the encoder that {meta_path} "
                                                  f"describes (Error(s) in loading state_dict for Encoder"),
             # cast silently by load_state_dict: a std of zeros, NaN embeddings (found by tests/test_property_rundir)
             (weights_path, {**weights, "std": weights["std"].long()}, f"{weights_path} does not fit the encoder "
                                                                        f"that {meta_path} describes (std is "
                                                                        f"torch.int64 where the model holds "
                                                                        f"torch.float32)")]
    for path, content, message in cases:
        meta_path.write_text(text)
        weights_path.write_bytes(data)
        if isinstance(content, dict):
            save_file(content, str(path))
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        with pytest.raises(ValueError, match=re.escape(message)) as e:
            load_encoder(out)
        assert "\n" not in str(e.value)


def test_export_refuses_a_damaged_checkpoint_in_one_line_and_writes_nothing(run_dir, tmp_path, capsys):
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    name = next(k for k, v in saved["model"].items() if v.is_floating_point())
    path = tmp_path / "checkpoint.pt"
    cases = [({**saved, "model": {**saved["model"], name: saved["model"][name] * float("nan")}},
              f"{path} is not a usable checkpoint: model.{name} has NaN"),
             ({**saved, "config": {**saved["config"], "model": {**saved["config"]["model"], "backbone": "resnet18"}}},
              f"{path} does not fit the model of its own config (Error(s) in loading state_dict"),
             ({**saved, "config": {**saved["config"], "loss": {"mu": "abc"}}},
              f"{path}: its config: loss.mu='abc' is not valid: expected a number"),
             ({**saved, "input_size": "big"}, f"{path} is not a vicreg checkpoint (its model has no channel mean, or "
                                              f"input_size='big' is not a size)")]
    for content, message in cases:
        torch.save(content, path)
        assert main(["export", str(path), "--out", str(tmp_path / "out")]) in (1, 2)
        err = capsys.readouterr().err
        assert err.startswith(f"vicreg: error: {message}") and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()
