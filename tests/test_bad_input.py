"""The table of bad inputs: each gives one line on stderr naming the bad value and what is allowed, an exit
code of 1 or 2, and never a traceback. Run through `vicreg.cli.main`, as the command does."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from vicreg.cli import main

TINY = ["--train.epochs", "1", "--train.batch_size", "128", "--data.image_size", "8", "--model.expander", "32,32",
        "--train.progress", "false", "--train.knn_every", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A finished tiny run, copies of it with broken checkpoints, and broken data and config files."""
    import shutil

    root = tmp_path_factory.mktemp("bad")
    assert main(["train", *TINY, "--train.out_dir", str(root), "--train.name", "run"]) == 0
    run = root / "run"
    f = {"root": root, "run": run}
    for name in ("truncated", "empty", "foreign", "unsafe"):
        f[name] = root / name
        shutil.copytree(run, f[name])
    data = (run / "checkpoint.pt").read_bytes()
    (f["truncated"] / "checkpoint.pt").write_bytes(data[: len(data) // 3])
    (f["empty"] / "checkpoint.pt").write_bytes(b"")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["model"] = {k.replace("backbone.", "trunk."): v for k, v in ckpt["model"].items()}  # another model's keys
    torch.save(ckpt, f["foreign"] / "checkpoint.pt")
    torch.save({**ckpt, "extra": object()}, f["unsafe"] / "checkpoint.pt")  # weights_only refuses it

    (root / "syntax.yaml").write_text("train:\n  epochs: [1\n")
    (root / "section.yaml").write_text("train: 5\n")
    (root / "a_file").write_text("not a folder")
    images = root / "images"
    for cls in ("a", "b"):
        (images / cls).mkdir(parents=True)
        for i in range(3):
            np.save(images / cls / f"{i}.npy", np.zeros(1))  # not listed: not an image extension
            (images / cls / f"{i}.jpg").write_bytes(bytes([255, 216, 255]) + bytes(range(200)))  # a JPEG that is not
    for name, meta in (("crafted", {"label_names": ["x"] * 10}), ("nometa", {"num_vis": 3072})):
        cifar = root / name / "cifar-10-batches-py"
        cifar.mkdir(parents=True)
        x = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            with open(cifar / batch, "wb") as fh:
                pickle.dump(x, fh, protocol=2)
        with open(cifar / "batches.meta", "wb") as fh:
            pickle.dump(meta, fh, protocol=2)
    with open(root / "crafted" / "cifar-10-batches-py" / "data_batch_2", "wb") as fh:
        pickle.dump({"data": _Payload(), "labels": [0]}, fh, protocol=2)
    return f


class _Payload:
    def __reduce__(self):
        return exec, ("raise SystemExit('the payload ran')",)


# (arguments with {placeholders} for the files above, the message expected in the one line)
CASES = {
    "unknown key": (["train", "--loss.muu", "1"], "unknown config key 'loss.muu' (known keys in loss:"),
    "not a number": (["train", "--loss.mu", "abc"], "loss.mu='abc' is not valid: expected a number"),
    "unknown preset": (["train", "--preset", "nope"], "unknown preset 'nope'"),
    "unknown choice": (["train", "--optim.name", "adam"], "optim.name='adam' is not valid: expected one of"),
    "cuda:abc": (["train", "--train.device", "cuda:abc"], "train.device='cuda:abc' is not valid: expected auto, cpu"),
    "batch of 1": (["train", "--train.batch_size", "1"], "train.batch_size=1 is not valid: must be >= 2"),
    "zero epochs": (["train", "--train.epochs", "0"], "train.epochs=0 is not valid: must be >= 1"),
    "divergence factor 0.5": (["train", "--train.divergence_factor", "0.5"],
                              "train.divergence_factor=0.5 is not valid: must be > 1, or 0 (off)"),
    "negative minutes": (["train", "--train.checkpoint_minutes", "-1"], "train.checkpoint_minutes=-1.0 is not valid"),
    "list syntax": (["train", "--model.expander", "[64,{{"], "model.expander='[64,{{' is not valid: expected a "
                                                          "comma-separated list of integers"),
    "YAML syntax": (["train", "--config", "{root}/syntax.yaml"], "syntax.yaml is not valid YAML, line 3, column 1"),
    "section given a value": (["train", "--config", "{root}/section.yaml", "--train.epochs", "1"],
                              "train=5 is not valid: train is a section, expected a mapping of its keys"),
    "missing config file": (["train", "--config", "{root}/missing.yaml"], "cannot read {root}/missing.yaml"),
    "out_dir is a file": (["train", *TINY, "--train.out_dir", "{root}/a_file"],
                          "cannot create the run directory {root}/a_file/"),
    "existing run name": (["train", *TINY, "--train.out_dir", "{root}", "--train.name", "run"],
                          "{run} already holds a run (config.yaml, checkpoint.pt, metrics.csv, summary.json)"),
    "knn_k above the bank": (["train", *TINY, "--train.out_dir", "{root}", "--train.name", "k",
                              "--train.knn_k", "5000"], "train.knn_k=[5000] is not valid: the k-NN bank holds 1347"),
    "resume a non-run": (["train", "--resume", "{root}/nothing"], "{root}/nothing is not a run directory"),
    "resume truncated": (["train", "--resume", "{truncated}"],
                         "{truncated}/checkpoint.pt is not a readable checkpoint"),
    "resume foreign": (["train", "--resume", "{foreign}"], "{foreign}/checkpoint.pt does not fit this run's model"),
    "resume unsafe": (["train", "--resume", "{unsafe}"], "refused {unsafe}/checkpoint.pt: it holds objects other "
                                                         "than tensors"),
    "eval truncated": (["eval", "{truncated}"], "{truncated}/checkpoint.pt is not a readable checkpoint"),
    "eval empty": (["eval", "{empty}"], "{empty}/checkpoint.pt is not a readable checkpoint (truncated or not a "
                                       "checkpoint: EOFError)"),
    "eval foreign": (["eval", "{foreign}"], "{foreign}/checkpoint.pt does not fit the model of"),
    "eval unsafe": (["eval", "{unsafe}"], "refused {unsafe}/checkpoint.pt"),
    "eval --k 0": (["eval", "{run}", "--k", "0"], "argument --k: 0 is not valid: expected an integer >= 1"),
    "eval --k -5": (["eval", "{run}", "--k", "-5"], "argument --k: -5 is not valid: expected an integer >= 1"),
    "eval --k above the bank": (["eval", "{run}", "--k", "20", "5000"],
                                "k=5000 is not valid: the k-NN bank of digits holds 1347 labelled images"),
    "eval --temperature 0": (["eval", "{run}", "--temperature", "0"], "argument --temperature: 0 is not valid"),
    "eval --device cuda:abc": (["eval", "{run}", "--device", "cuda:abc"], "argument --device: 'cuda:abc' is not"),
    "eval --probe-epochs 10**23": (["eval", "{run}", "--probe-epochs", str(10**23)], "argument --probe-epochs: "
                                   "100000000000000000000000 is not valid: expected an integer in [1, 2**63 - 1]"),
    "eval --temperature inf": (["eval", "{run}", "--temperature", "inf"],
                               "argument --temperature: inf is not valid: expected a finite number > 0"),
    "collect --workers 1000": (["collect", "x", "--episodes", "1", "--steps", "1", "--out", "{root}/c", "--workers",
                                "1000"], "argument --workers: 1000 is not valid: expected an integer in [1, 256]"),
    "collect --seed 2**32": (["collect", "x", "--episodes", "1", "--steps", "1", "--out", "{root}/c", "--seed",
                              str(2**32)], "argument --seed: 4294967296 is not valid: expected an integer in [0, "
                                           "4294967295]"),
    "plot --window 0": (["plot", "{run}", "--window", "0"], "argument --window: 0 is not valid"),
    "embed to .txt": (["embed", "{run}", "-o", "{root}/x.txt"], "must end in .npz or .parquet"),
    "export format": (["export", "{run}", "--format", "tflite"], "argument --format: invalid choice: 'tflite'"),
    "unknown experiment": (["experiment", "nope"], "argument NAME: invalid choice: 'nope'"),
    "expander beyond memory": (["train", *TINY, "--train.out_dir", "{root}", "--train.name", "huge",
                                "--model.expander", str(2**62)],
                               "out of memory (Storage size calculation overflowed with sizes=[4611686018427387904, "),
    "folder without data_dir": (["train", "--data.dataset", "folder"], "data.data_dir=None is not valid"),
    "folder of bad images": (["train", *TINY, "--data.dataset", "folder", "--data.data_dir", "{root}/images",
                              "--train.out_dir", "{root}", "--train.name", "imgs"],
                             "image folder {root}/images: 6 file(s) cannot be decoded: "),
    "crafted CIFAR file": (["train", *TINY, "--data.dataset", "cifar10", "--data.data_dir", "{root}/crafted",
                            "--train.out_dir", "{root}", "--train.name", "crafted"],
                           "data_batch_2: not a plain CIFAR batch (it asks for __builtin__.exec"),
    "CIFAR meta without names": (["train", *TINY, "--data.dataset", "cifar10", "--data.data_dir", "{root}/nometa",
                                  "--train.out_dir", "{root}", "--train.name", "nometa"],
                                 "batches.meta: no list of class names under 'label_names' (found keys: num_vis)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_naming_it(case, files, capsys):
    args, expected = CASES[case]
    fill = {k: str(v) for k, v in files.items()}
    try:
        code = main([a.format(**fill) for a in args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()
    err = captured.err
    assert code in (1, 2), (case, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vicreg: error: "), (case, err)
    assert expected.format(**fill) in lines[0], (case, lines[0])
    assert "Traceback" not in err + captured.out and "the payload ran" not in err + captured.out
