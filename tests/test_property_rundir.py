"""Property tests of the run directory's readers (issue 23): every command that reads a run directory back
(``vicreg eval``, ``plot``, ``embed``, ``export``, ``train --resume``, ``train-predictor``, ``eval-predictor``,
``plan``, and ``vicreg.load_encoder`` of an exported folder), given one file of it damaged (truncated, emptied,
random bytes, another format, a hand edit, NaN weights), either works (damage that does not matter) or stops
with exactly one line ``vicreg: error: ...`` naming the damaged file, exit code 1 or 2: never a traceback, never
an output left behind by a command that failed.

One tiny image run (with its export) and one tiny world-model run (predictor, its evaluation and a plan) are
trained once per module; each example copies one of them to a fresh temporary folder, damages one file and runs
one command in-process. The longer search: ``pytest -m slow tests/test_property_rundir.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vicreg.cli import main, report_error
from vicreg.config import ConfigError
from vicreg.encoder import load_encoder

IMAGE_TRAIN = ["--preset", "demo", "--train.epochs", "1", "--data.limit_train", "64", "--data.limit_test", "32",
               "--train.batch_size", "32", "--model.expander", "16,16", "--train.knn_every", "0",
               "--train.knn_k", "5,10", "--train.diagnostics_samples", "32", "--train.progress", "false",
               "--train.device", "cpu"]
WORLD_TRAIN = ["--preset", "sprites-control", "--data.video.sequences", "24", "--data.video.test_sequences", "8",
               "--data.video.length", "8", "--data.video.canvas", "16", "--data.video.sprite_size", "6",
               "--data.video.distractors", "2", "--train.epochs", "1", "--train.batch_size", "8",
               "--train.knn_every", "0", "--train.progress", "false", "--train.diagnostics_samples", "64",
               "--train.knn_k", "5,20", "--model.head_widths", "16", "--model.embedding_dim", "8",
               "--model.expander", "32,32", "--train.device", "cpu"]
PLAN = ["--plan.episodes", "2", "--plan.steps", "2", "--plan.horizon", "2", "--plan.samples", "4",
        "--plan.iterations", "1", "--plan.elites", "2", "--plan.device", "cpu", "--methods", "world model", "pixels"]

# what each command reads back, as argv from (the run's copy, a fresh output folder)
COMMANDS = {
    "eval": lambda run, out: ["eval", str(run), "--k", "5", "--probe-epochs", "1", "--no-raw-pixels",
                              "--device", "cpu"],
    "plot": lambda run, out: ["plot", str(run), "--no-svg", "--tsne-points", "20", "--device", "cpu"],
    "embed": lambda run, out: ["embed", str(run), "-o", str(out / "x.npz"), "--device", "cpu"],
    "export": lambda run, out: ["export", str(run), "--out", str(out / "export")],
    "resume": lambda run, out: ["train", "--resume", str(run)],
    "train-predictor": lambda run, out: ["train-predictor", str(run), "--predictor.epochs", "1",
                                         "--predictor.context", "2", "--predictor.width", "16",
                                         "--predictor.batch_size", "32", "--device", "cpu"],
    "eval-predictor": lambda run, out: ["eval-predictor", str(run), "--horizons", "1", "2", "--sequences", "1",
                                        "--probe-frames", "16", "--device", "cpu"],
    "plan": lambda run, out: ["plan", str(run), *PLAN],
}
# (run, file in it) -> the commands that read it; "load_encoder" is vicreg.load_encoder of the run's path (a
# file under export/: of the exported folder)
READERS = {
    ("image", "config.yaml"): ("eval", "plot", "embed", "resume"),
    ("image", "run.json"): ("eval", "plot", "embed", "resume"),
    ("image", "checkpoint.pt"): ("eval", "plot", "embed", "export", "resume", "load_encoder"),
    ("image", "metrics.csv"): ("plot", "resume"),
    ("image", "knn.csv"): ("plot", "resume"),
    ("image", "diagnostics.jsonl"): ("plot", "resume"),
    ("image", "summary.json"): ("plot",),
    ("image", "export/encoder.json"): ("load_encoder",),
    ("image", "export/encoder.safetensors"): ("load_encoder",),
    ("world", "config.yaml"): ("train-predictor", "eval-predictor", "plan"),
    ("world", "checkpoint.pt"): ("train-predictor", "eval-predictor", "plan"),
    ("world", "predictor/predictor.pt"): ("eval-predictor", "plan"),
    ("world", "predictor/eval.json"): ("plot",),
    ("world", "plan/plan.json"): ("plot",),
    ("world", "plan/pixel_predictor.pt"): ("plan",),  # a cache: retrained when it cannot be used
}
TARGETS = [(run, name, command) for (run, name), commands in READERS.items() for command in commands]
# files without which the command cannot work at all: emptied, random or foreign, they must be refused
REQUIRED = {"config.yaml", "checkpoint.pt", "run.json", "export/encoder.json", "export/encoder.safetensors",
            "predictor/predictor.pt"}


def _quiet(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(argv)
    assert rc == 0, err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The two tiny runs, built once: {"image": ..., "world": ...}."""
    return build_runs(tmp_path_factory.mktemp("property_rundir"))


def build_runs(root: Path) -> dict[str, Path]:
    """root/image (a demo run on 64 digits and its export/) and root/world (sprites with pushes, its predictor,
    the predictor's evaluation and a plan with the pixel baseline's cache)."""
    _quiet(["train", *IMAGE_TRAIN, "--train.out_dir", str(root), "--train.name", "image"])
    _quiet(["export", str(root / "image")])
    _quiet(["train", *WORLD_TRAIN, "--train.out_dir", str(root), "--train.name", "world"])
    world = root / "world"
    _quiet(COMMANDS["train-predictor"](world, root))
    _quiet(COMMANDS["eval-predictor"](world, root))
    _quiet(COMMANDS["plan"](world, root))
    return {"image": root / "image", "world": world}


# ------------------------------------------------------------------------------------------------------------
# damage
# ------------------------------------------------------------------------------------------------------------

def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    return buf.getvalue()


def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"w": torch.ones(2, 2)})


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
FOREIGN = {
    "png": lambda: PNG,
    "json list": lambda: b"[1, 2, 3]",
    "json string": lambda: b'"hello"',
    "compose yaml": lambda: b"version: '3'\nservices:\n  web:\n    image: nginx\n    ports: ['80:80']\n",
    "yaml list": lambda: b"- a\n- b\n",
    "csv": lambda: b"name,age\nann,3\nbob,x\n",
    "text": lambda: b"hello world\n",
    "nul": lambda: b"\x00" * 64,
    "utf-16": lambda: "step,loss\n1,2\n".encode("utf-16"),
    "gzip": lambda: gzip.compress(b'{"a": 1}'),
    "zip": _zip_bytes,
    "torch list": lambda: _torch_bytes([1, 2, 3]),
    "torch tensor": lambda: _torch_bytes(torch.ones(3)),
    "torch state dict": lambda: _torch_bytes({"w": torch.ones(2)}),
    "safetensors": _safetensors_bytes,
}
GARBAGE = {"a": [1, {"b": None}], "c": "d"}
# what an edit puts in place of a value (None: delete it)
VALUES = {
    "delete": None, "string": "abc", "list": [1, "x"], "mapping": {"x": 1}, "null": "NULL", "bool": True,
    "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge float": 1e308, "huge int": 10 ** 30, "negative": -7,
    "zero": 0, "garbage": GARBAGE, "unknown key": "UNKNOWN",
}
NON_FINITE = {"nan", "inf", "-inf"}


def _paths(tree, prefix=()) -> list[tuple]:
    """Every path into a tree of dicts and lists (tensors and scalars are leaves)."""
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


def _edit(tree, path: tuple, how: str):
    """``tree`` with the value at ``path`` replaced as ``how`` says (VALUES, or a tensor edit); returns the tree."""
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    old = parent[key]
    if how == "delete":
        del parent[key]
    elif how == "unknown key":
        if isinstance(old, dict) or isinstance(parent, dict):
            (old if isinstance(old, dict) else parent)["no_such_key"] = 1
        else:
            parent.append({"no_such_key": 1})
    elif isinstance(old, torch.Tensor) and how in ("nan", "inf", "-inf", "wrong shape", "wrong dtype"):
        if how == "wrong shape":
            parent[key] = torch.zeros(old.numel() + 3)
        elif how == "wrong dtype":
            parent[key] = old.to(torch.int64) if old.is_floating_point() else old.float()
        else:
            new = old.clone().float() if not old.is_floating_point() else old.clone()
            new.view(-1)[0] = float(how)
            parent[key] = new
    else:
        parent[key] = None if how == "null" else VALUES[how]
    return tree


def _tensor_paths(tree) -> list[tuple]:
    return [p for p in _paths(tree) if isinstance(_get(tree, p), torch.Tensor)]


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _yaml_or_json_edit(path: Path, draw) -> tuple[bytes, str, bool]:
    text = path.read_text()
    tree = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    paths = _paths(tree)
    where = draw(st.sampled_from(paths))
    how = draw(st.sampled_from(sorted(VALUES)))
    tree = _edit(tree, where, how)
    raw = yaml.safe_dump(tree, sort_keys=False) if path.suffix == ".yaml" else json.dumps(tree)
    # a config that can no longer be right: its run must be refused
    must_fail = path.name == "config.yaml" and (how in NON_FINITE | {"unknown key", "garbage", "mapping"})
    return raw.encode(), f"{'.'.join(map(str, where))} -> {how}", must_fail


def _csv_edit(path: Path, draw) -> tuple[bytes, str, bool]:
    lines = path.read_text().splitlines()
    how = draw(st.sampled_from(["cell", "short row", "long row", "foreign header", "no header", "blank lines",
                                "duplicate rows"]))
    i = draw(st.integers(0, len(lines) - 1))
    cells = lines[i].split(",")
    if how == "cell":
        j = draw(st.integers(0, len(cells) - 1))
        cells[j] = draw(st.sampled_from(["abc", "", "nan", "inf", "-inf", "1e999", "1,5"]))
        lines[i] = ",".join(cells)
    elif how == "short row":
        lines[i] = ",".join(cells[:-1])
    elif how == "long row":
        lines[i] = ",".join(cells + ["7"])
    elif how == "foreign header":
        lines[0] = "a,b,c"
    elif how == "no header":
        lines = lines[1:]
    elif how == "blank lines":
        lines.insert(i, "")
    else:
        lines += lines[1:]
    return ("\n".join(lines) + "\n").encode(), f"{how} at line {i + 1}", False


def _jsonl_edit(path: Path, draw) -> tuple[bytes, str, bool]:
    lines = path.read_text().splitlines()
    i = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["garbage line", "list line", "number line", "nan", "no step", "field edit"]))
    if how == "garbage line":
        lines[i] = "{not json"
    elif how == "list line":
        lines[i] = "[1, 2]"
    elif how == "number line":
        lines[i] = "3"
    elif how == "nan":
        lines[i] = json.dumps({**json.loads(lines[i]), "step": math.nan})
    elif how == "no step":
        entry = json.loads(lines[i])
        entry.pop("step", None)
        lines[i] = json.dumps(entry)
    else:
        entry = json.loads(lines[i])
        where = draw(st.sampled_from(_paths(entry)))
        lines[i] = json.dumps(_edit(entry, where, draw(st.sampled_from(sorted(VALUES)))))
        how = f"field {'.'.join(map(str, where))}"
    return ("\n".join(lines) + "\n").encode(), f"{how} at line {i + 1}", False


def _torch_edit(path: Path, draw) -> tuple[bytes, str, bool]:
    tree = torch.load(path, weights_only=True)
    how = draw(st.sampled_from(["tensor", "tensor", "value"]))
    if how == "tensor":
        where = draw(st.sampled_from(_tensor_paths(tree)))
        what = draw(st.sampled_from(["nan", "inf", "wrong shape", "wrong dtype", "delete"]))
    else:
        where = draw(st.sampled_from(_paths(tree)))
        what = draw(st.sampled_from(sorted(VALUES)))
    old = _get(tree, where)
    tree = _edit(tree, where, what)
    # NaN weights of a model (not an optimiser's state, not a counter) must be refused
    must_fail = (what in NON_FINITE and where[0] == "model" and isinstance(old, torch.Tensor)
                 and old.is_floating_point() and path.name != "pixel_predictor.pt")  # a cache: trained again
    return _torch_bytes(tree), f"{'.'.join(map(str, where))} -> {what}", must_fail


def _safetensors_edit(path: Path, draw) -> tuple[bytes, str, bool]:
    from safetensors.torch import load_file, save

    tensors = load_file(str(path))
    where = draw(st.sampled_from(sorted(tensors)))
    what = draw(st.sampled_from(["nan", "inf", "wrong shape", "wrong dtype", "delete", "extra"]))
    if what == "extra":
        tensors["extra.weight"] = torch.ones(2)
    else:
        _edit(tensors, (where,), what)
    return save(tensors), f"{where} -> {what}", what in NON_FINITE and tensors[where].is_floating_point()


def damage(path: Path, draw) -> tuple[str, bool]:
    """Damage the file at ``path`` as drawn; returns (what was done, whether a reader must refuse it now)."""
    raw = path.read_bytes()
    editable = path.suffix in (".yaml", ".json", ".csv", ".jsonl", ".pt", ".safetensors")
    kind = draw(st.sampled_from(["truncate", "empty", "random", "foreign"] + ["edit"] * 3 * editable))
    required = any(str(path).endswith("/" + name) for name in REQUIRED)
    binary = path.suffix in (".pt", ".safetensors")
    if kind == "truncate":
        k = draw(st.integers(1, len(raw) - 1))
        new, what, must_fail = raw[:k], f"truncated to {k} of {len(raw)} bytes", required and binary
    elif kind == "empty":
        new, what, must_fail = b"", "emptied", required
    elif kind == "random":
        new = draw(st.binary(min_size=1, max_size=300))
        what, must_fail = f"{len(new)} random bytes", required and binary
    elif kind == "foreign":
        name = draw(st.sampled_from(sorted(FOREIGN)))
        new, what, must_fail = FOREIGN[name](), f"replaced by {name}", required
    else:
        edit = {".yaml": _yaml_or_json_edit, ".json": _yaml_or_json_edit, ".csv": _csv_edit, ".jsonl": _jsonl_edit,
                ".pt": _torch_edit, ".safetensors": _safetensors_edit}[path.suffix]
        new, what, must_fail = edit(path, draw)
    path.write_bytes(new)
    return what, must_fail


# ------------------------------------------------------------------------------------------------------------
# running a command on the damaged copy
# ------------------------------------------------------------------------------------------------------------

class _TrainingStarted(Exception):
    """A resumed run got past reading its files and started to train: stopped there (training itself is tested
    elsewhere; a hand-edited config may ask for many more epochs)."""


def _no_training(*args, **kwargs):
    raise _TrainingStarted


def _load_encoder(path: Path) -> int:
    """vicreg.load_encoder as the command line would report it: 0, or its error in one line (exit 1 or 2)."""
    try:
        encoder, pre = load_encoder(path)
    except ConfigError as e:
        return report_error(e, 2)
    except (OSError, ValueError) as e:
        return report_error(e, 1)
    with torch.no_grad():  # what it loaded computes finite embeddings
        out = encoder(torch.rand(2, pre.channels, pre.size, pre.size, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(out).all(), f"load_encoder({path}) loaded an encoder with non-finite outputs"
    return 0


def run_command(command: str, run: Path, out: Path, damaged: Path) -> tuple[int, str]:
    """(exit code, stderr) of ``command`` on the run's copy ``run``."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), \
            mock.patch("vicreg.training.loop.train_epoch", _no_training):
        if command == "load_encoder":
            rc = _load_encoder(run / "export" if damaged.parent.name == "export" else run)
        else:
            try:
                rc = main(COMMANDS[command](run, out))
            except _TrainingStarted:
                rc = 0
    return rc, err.getvalue()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in root.rglob("*")}


def _refuse_constant(name: str):
    raise AssertionError(f"non-finite number {name} written")


def check_outcome(rc: int, err: str, damaged: Path, root: Path, before: dict, must_fail: bool) -> None:
    """The property: exit 0 (and finite JSON written), or one line naming the damaged file and nothing new."""
    assert "Traceback" not in err
    after = _snapshot(root)
    if rc == 0:
        # damage that does not matter: a row or line cut short at the end of metrics.csv, knn.csv or
        # diagnostics.jsonl (what a kill leaves: skipped), a hand edit of a value the command does not use or that
        # is still valid, a deleted config key (its default), NaN in metrics.csv (a gap in the loss curve), a
        # damaged plan/pixel_predictor.pt (a cache: said and trained again); what it wrote must still be finite
        assert not must_fail, f"the damage was not noticed (stderr: {err!r})"
        assert "vicreg: error" not in err
        for name, stamp in after.items():
            if name.endswith(".json") and before.get(name) != stamp:
                json.loads((root / name).read_text(), parse_constant=_refuse_constant)
        return
    lines = err.strip().splitlines()
    assert rc in (1, 2) and len(lines) == 1, f"exit {rc}, stderr {err!r}"
    assert lines[0].startswith("vicreg: error: ") and str(damaged) in lines[0], lines[0]
    new = sorted(set(after) - set(before))
    assert not new, f"a failed command left {new} behind"


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("tb", "*.png", "*.svg"))
    return dest


def check_one(runs: dict[str, Path], data) -> None:
    run_name, name, command = data.draw(st.sampled_from(TARGETS), label="target")
    with tempfile.TemporaryDirectory(prefix="vicreg-prop-") as tmp:
        root = Path(tmp)
        run = _copy(runs[run_name], root / run_name)
        (root / "out").mkdir()
        damaged = run / name
        what, must_fail = damage(damaged, data.draw)
        data.draw(st.just(f"{name}: {what}; {command}"), label="damage")
        before = _snapshot(root)
        rc, err = run_command(command, run, root / "out", damaged)
        check_outcome(rc, err, damaged, root, before, must_fail)


# The longer searches (-m slow) at the size the whole suite affords (CI: under 10 minutes on 2 cores);
# VICREG_SEARCH_SCALE=4 pytest -m slow tests/test_property_*.py draws four times as many examples.
SEARCH_SCALE = float(os.environ.get("VICREG_SEARCH_SCALE", "1"))
SETTINGS = dict(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=50, **SETTINGS)
@given(data=st.data())
def test_damaged_run_files_are_refused_in_one_line_naming_the_file(runs, data):
    check_one(runs, data)


@pytest.mark.slow
@settings(max_examples=round(60 * SEARCH_SCALE), **SETTINGS)
@given(data=st.data())
def test_damaged_run_files_longer_search(runs, data):
    check_one(runs, data)
