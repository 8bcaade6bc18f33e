"""Property-based tests of the command line (hypothesis): whatever the arguments, ``vicreg`` either succeeds or
says what is wrong in one line.

Drawn: overrides of every field of every config section (walked from the dataclasses of vicreg.config.schema, so
a new field is drawn without a change here) and the options of every sub-command (walked from
``vicreg.cli.build_parser()``), with valid values, wrong types, out-of-range, huge and non-finite numbers, empty
strings, path separators, control characters and odd unicode. Each invocation runs ``vicreg.cli.main`` in a fresh
folder (the working directory and HOME) and must

- return 0, or end with exactly one stderr line ``vicreg: error: ...`` (besides ``vicreg: note: ...`` lines) and
  an exit code of 1 or 2 (argparse's usage errors too), never raising;
- create nothing outside its folder, and leave no half-made folder behind after an error (an empty one, or a
  run directory without its config.yaml).

The wide search goes through ``vicreg config`` (the config is built and checked, nothing trains); ``vicreg
train`` runs on a tiny base (the demo preset, 1 epoch of 64 images) with drawn overrides on top, whose valid
values are kept cheap. The fast suite draws a few hundred examples, seeded; ``pytest -m slow
tests/test_property_cli.py`` searches longer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import tempfile
import types
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vicreg.backbones import BACKBONES
from vicreg.cli import build_parser, main
from vicreg.config import Config, PlanConfig, PredictorConfig
from vicreg.presets import PRESETS, RECIPES

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# What is drawn: the fields of the config dataclasses and the options of the sub-commands
# --------------------------------------------------------------------------------------------


def config_fields(cls: type, prefix: str = "") -> dict[str, typing.Any]:
    """Every leaf field of a config dataclass, dotted (``data.video.length``), with its type hint."""
    hints = typing.get_type_hints(cls)
    out: dict[str, typing.Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(config_fields(hint, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = hint
    return out


CONFIG_FIELDS = config_fields(Config)
PREDICTOR_FIELDS = config_fields(PredictorConfig, "predictor.")
PLAN_FIELDS = config_fields(PlanConfig, "plan.")


def subcommands() -> dict[str, typing.Any]:
    """name -> parser of every sub-command of ``vicreg``."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    return dict(sub.choices)


SUBCOMMANDS = subcommands()

# Values that parsers trip on: non-finite and huge numbers, empty and odd strings, path parts, control bytes.
HUGE = [str(10**30), str(-10**30), "1e30", "1.0e+30", "1e309", "-1e309", str(2**63), str(2**64), "9" * 400,
        str(2**63 - 1), str(2**62), str(2**32), str(2**32 - 1), "4096", "4097", "257"]
NON_FINITE = ["nan", "NaN", ".nan", "inf", "-inf", ".inf", "-.inf", "Infinity"]
ODD = ["", " ", "0", "-1", "-0.0", "1.5", "null", "~", "true", "yes", "[]", "[1", "{}", "{a: 1}", "[[1]]", "1,2",
       "1,,2", ",", "a=b", "-", ".", "..", "../x", "x/../..", "a/b", "a\\b", "/", "//", "..x", "x..", "nul\x00byte",
       "\x00", "\x1b[31m", "tab\there", "line\nbreak", "cr\rx", "é", "日本", "\u202e", "\ufeff", "\udcff",
       "a" * 300, "%s%n", "{0}", "$HOME", "~/x", "*", "-x", "CON", "runs"]
NASTY = st.sampled_from(HUGE + NON_FINITE + ODD) | st.text(max_size=12)


# the text fields' values, by the field's last name (else "x"): what they accept, and near misses
TEXTS = {"device": ["cpu", "auto", "cuda", "cuda:1", "mps", "cuda:x", "gpu"],
         "backbone": [*sorted(BACKBONES), "timm:resnet18", "timm:nope", "timm:"],
         "recipe": [*RECIPES, "custom"], "preset": [*PRESETS, "custom"], "name": ["run-1", "é", "a b", "x.y"],
         "out_dir": ["runs", "sub/dir", "x"], "data_dir": ["data", "missing", "a_file"]}


def _valid_scalar(key: str, hint: typing.Any, cheap: bool) -> st.SearchStrategy:
    """A value of the field's type (``hint``), mostly in range: small integers and floats, its choices."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return st.sampled_from([str(a).lower() if isinstance(a, bool) else str(a) for a in args])
    if origin in (typing.Union, types.UnionType):
        return st.one_of([st.just("null") if a is type(None) else _valid_scalar(key, a, cheap) for a in args])
    if origin in (list, tuple):
        n = (len(args), len(args)) if origin is tuple else (0, 3)
        item = _valid_scalar(key, args[0], cheap)
        return st.lists(item, min_size=n[0], max_size=n[1]).map(",".join)
    if hint is bool:
        return st.sampled_from(["true", "false"])
    if hint is int:
        return st.integers(-2, 64).map(str) if cheap else st.integers(-2, 10**6).map(str)
    if hint is float:
        return st.floats(-1.0, 100.0, allow_nan=False).map(repr)
    return st.sampled_from(TEXTS.get(key.rsplit(".", 1)[-1], ["x"]))


# train: valid values of the fields that set the size of the work stay tiny (everything else is drawn in full)
CHEAP = {
    "train.epochs": ["1"], "train.batch_size": ["16", "32"], "data.limit_train": ["32", "64"],
    "data.limit_test": ["16", "32"], "data.num_workers": ["0"], "train.compile": ["false", "auto"],
    "data.image_size": ["8", "16", "null"], "model.expander": ["16,16", "8"], "data.video.sequences": ["4"],
    "data.video.test_sequences": ["2"], "data.video.length": ["4"], "data.video.canvas": ["16"],
    "train.diagnostics_samples": ["16"], "train.knn_k": ["1", "5"], "model.pretrained": ["false"],
    "model.backbone": ["small_cnn"], "data.dataset": ["digits"], "data.placement": ["auto", "device"],
    "model.head_widths": ["8", "4,4"], "model.embedding_dim": ["4", "null"], "train.device": ["cpu", "auto"],
}


def value_for(key: str, hint: typing.Any, cheap: bool = False) -> st.SearchStrategy:
    """A value as typed on the command line: valid for the field (tiny ones when ``cheap``) or nasty. The cheap
    search draws no huge numbers for the CHEAP fields, where the config accepts them and they only make the work
    longer (2**62 epochs train for ever; the wide search through ``vicreg config`` draws them)."""
    if cheap and key in CHEAP:
        nasty = st.sampled_from(NON_FINITE + ODD) | st.text(max_size=8)
        return st.sampled_from(CHEAP[key]) | nasty
    return _valid_scalar(key, hint, cheap) | NASTY


def override(fields: dict[str, typing.Any], cheap: bool = False) -> st.SearchStrategy:
    """``[--key, value]`` or ``[--key=value]`` or ``[--key]`` (a bare flag) of a field, or of a key that is not
    one (a typo, a section, a field's sub-key)."""
    keys = list(fields)

    def one(key: str) -> st.SearchStrategy:
        spelled = st.sampled_from([key, key.replace("_", "-")])
        value = value_for(key, fields.get(key, str), cheap)
        return st.one_of(
            st.tuples(spelled, value).map(lambda kv: [f"--{kv[0]}", kv[1]]),
            st.tuples(spelled, value).map(lambda kv: [f"--{kv[0]}={kv[1]}"]),
            spelled.map(lambda k: [f"--{k}"]),
        )

    sections = sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    bad_keys = st.sampled_from([*sections, f"{keys[0]}.x", f"{keys[-1]}x", "nope.x", "x" * 60, ""])
    return st.integers(0, 11).flatmap(lambda i: bad_keys if i == 0 else st.sampled_from(keys)).flatmap(one)


def overrides(fields, cheap: bool = False, most: int = 4) -> st.SearchStrategy:
    return st.lists(override(fields, cheap), max_size=most).map(lambda xs: [a for x in xs for a in x])


def yaml_text(fields: dict[str, typing.Any]) -> st.SearchStrategy:
    """A config file: sections of drawn keys and values, or not a mapping of sections at all."""
    def nest(pairs) -> str:
        tree: dict = {}
        for key, raw in pairs:
            node = tree
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
            try:
                node[leaf] = yaml.safe_load(raw) if "," not in raw else raw
            except yaml.YAMLError:
                node[leaf] = raw
        return yaml.safe_dump(tree, allow_unicode=True)

    pairs = st.lists(st.sampled_from(list(fields)).flatmap(lambda k: st.tuples(st.just(k), value_for(k, fields[k]))),
                     max_size=4)
    broken = ["", "train: 5\n", "- 1\n", "train:\n  epochs: [1\n", "\x00", "preset: x\n", "preset: ../../x\n",
              "data: {video: 3}\n"]
    return pairs.map(nest) | st.sampled_from(broken)


# paths given to commands, relative to the example's folder (made by _fixtures)
PATHS = ["run", "missing", "a_file", "empty", "bad_yaml", "config_only", "config.yaml", "runs", "."]


def _fixtures(work: Path, box: Path) -> None:
    """Things a drawn path may name: a finished tiny run (a copy), nothing, a file, an empty folder, a run folder
    with a broken config.yaml, and one with a valid config.yaml but nothing else."""
    shutil.copytree(box / "tiny_run", work / "run")
    (work / "a_file").write_text("not a folder")
    (work / "empty").mkdir()
    (work / "bad_yaml").mkdir()
    (work / "bad_yaml" / "config.yaml").write_text("train: [1\n")
    (work / "config_only").mkdir()
    (work / "config_only" / "config.yaml").write_text("preset: demo\ntrain:\n  epochs: 1\n")


# what a path option names, by its dest (else one of PATHS): mostly things that are there
NAMED = {"run_dir": ["run"] * 9 + PATHS, "resume": ["run"] * 3 + PATHS,
         "output": ["out.npz", "out.parquet", "run/x.npz", "missing/x.npz", "out.txt", "a_file/x.npz"],
         "config": ["run/config.yaml", "config_only/config.yaml", "bad_yaml/config.yaml", "missing.yaml", "a_file"],
         "env_id": ["CartPole-v1", "nope/Nope-v0", "vicreg/Nope-v0", "gym_pusht/PushT"],
         "set": ["loss.nu=0,1", "train.name=../x,y", "nope=1", "loss.mu=nan,1", "=", "loss.mu", "loss.mu=",
                 "model.expander=[8,8]", "data=1", "loss.nu=0,1,0"]}


def option_value(parser, action) -> st.SearchStrategy:
    """A value for one action of a sub-command's parser: its choices, a number, a path, or something nasty."""
    if action.dest in NAMED:
        good = st.sampled_from(NAMED[action.dest])
    elif action.choices:
        good = st.sampled_from(list(action.choices))
    elif action.dest == "device":
        good = st.sampled_from(["cpu", "auto", "cuda", "cuda:1", "mps"])
    elif isinstance(action.default, (int, list)) or action.required and action.type is not None:
        good = st.integers(1, 4).map(str) | st.sampled_from(["0", "-1", "1.5", str(2**63)])  # small: real work
    elif isinstance(action.default, float):
        good = st.floats(-1.0, 10.0, allow_nan=False).map(repr)
    else:
        good = st.sampled_from(PATHS) | st.sampled_from(["out", "out.npz", "out.parquet", "CartPole-v1"])
    nasty = st.sampled_from(NON_FINITE + ODD) | st.text(max_size=8)
    return st.integers(0, 7).flatmap(lambda i: nasty if i == 0 else good)  # one in 8 nasty


def command_args(name: str) -> st.SearchStrategy:
    """The sub-command's positionals and a draw of its options (walked from its parser), in a drawn order."""
    parser = SUBCOMMANDS[name]
    parts = []
    for action in parser._actions:
        if action.dest == "help":
            continue
        if not action.option_strings:  # a positional: always there (or it is a usage error anyway)
            parts.append(option_value(parser, action).map(lambda v: [v]))
            continue
        flag = st.sampled_from(action.option_strings)
        if action.nargs == 0:
            one = flag.map(lambda f: [f])
        elif action.nargs in ("+", "*"):
            one = st.tuples(flag, st.lists(option_value(parser, action), max_size=3)).map(lambda t: [t[0], *t[1]])
        else:
            one = st.tuples(flag, option_value(parser, action)).map(list)
        parts.append(one if action.required else st.one_of(st.just([]), one))
    return st.tuples(*parts).flatmap(st.permutations).map(lambda xs: [a for x in xs for a in x])


# --------------------------------------------------------------------------------------------
# Running one invocation, and what must hold afterwards
# --------------------------------------------------------------------------------------------


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def invoke(argv: list[str], work: Path) -> tuple[int, str, str]:
    """``vicreg.cli.main(argv)`` run with ``work`` as the working directory and HOME; (exit code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    cwd, home = os.getcwd(), os.environ.get("HOME")
    os.chdir(work)
    os.environ["HOME"] = str(work / "home")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: usage errors, --help
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(cwd)
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home
    return code, out.getvalue(), err.getvalue()


def check_invocation(argv: list[str], box: Path, after=None) -> tuple[int, str]:
    """Run ``argv`` in a fresh folder under ``box`` and check the contract; ``after(stdout, folder)`` checks a
    success further. The folder is removed afterwards (thousands of examples, a run copied into each). Returns
    (code, stdout)."""
    work = Path(tempfile.mkdtemp(dir=box))
    try:
        code, out = _check(argv, work, box)
        if code == 0 and after is not None:
            after(out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return code, out


def _check(argv: list[str], work: Path, box: Path) -> tuple[int, str]:
    _fixtures(work, box)
    around, repo = set(os.listdir(box)), set(os.listdir(ROOT))
    before = _tree(work)
    code, out, err = invoke(argv, work)
    event(f"{argv[0]}: exit {code}" + (f" ({err.split(':')[2].split('=')[0].strip()[:40]})" if code else ""))
    shown = f"argv={argv!r}\nexit {code}\nstderr:\n{err}"
    assert set(os.listdir(box)) == around, f"created beside its folder: {shown}"
    assert set(os.listdir(ROOT)) == repo, f"created in the repository: {shown}"
    assert "Traceback" not in out + err, shown
    lines = [line for line in err.splitlines() if line.strip()]
    for line in lines:  # a note names a field the config does not use
        if line.startswith("vicreg: note: "):
            assert line[len("vicreg: note: "):].split("=")[0] in CONFIG_FIELDS and " is not used: " in line, shown
    if code != 0:
        assert code in (1, 2), shown
        assert lines and lines[-1].startswith("vicreg: error: "), shown
        assert all(line.startswith("vicreg: note: ") for line in lines[:-1]), shown
        assert err.endswith("\n") and err.count("\n") == len(lines), shown
        new = _tree(work) - before
        for path in sorted(new):
            if path.is_dir() and path.parent != work / "home":
                assert any(path.iterdir()), f"left an empty folder {path.relative_to(work)}: {shown}"
                if any((path / f).exists() for f in ("run.json", "run.lock", "log.txt")):
                    assert (path / "config.yaml").exists(), f"half-made run directory {path}: {shown}"
    return code, out


TINY = ["--train.epochs", "1", "--data.limit_train", "64", "--data.limit_test", "32", "--train.batch_size", "32",
        "--model.expander", "16,16", "--train.knn_every", "0", "--train.knn_k", "5", "--train.progress", "false",
        "--train.diagnostics_samples", "32", "--data.image_size", "8"]


@pytest.fixture(scope="module")
def box():
    """The folder the examples' folders are made in, holding a finished tiny run they copy. Its own temporary
    folder, not pytest's: another pytest session starting on the machine removes all but its three newest."""
    box = Path(tempfile.mkdtemp(prefix="vicreg-property-cli-"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["train", *TINY, "--train.out_dir", str(box), "--train.name", "tiny_run"]) == 0
        yield box
    finally:
        shutil.rmtree(box, ignore_errors=True)


# The longer searches (-m slow) at the size the whole suite affords (CI: under 10 minutes on 2 cores);
# VICREG_SEARCH_SCALE=4 pytest -m slow tests/test_property_*.py draws four times as many examples.
SEARCH_SCALE = float(os.environ.get("VICREG_SEARCH_SCALE", "1"))
COMMON = dict(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              print_blob=False)


def check_config_command(box: Path, preset: list[str], config: str | None, drawn: list[str]) -> None:
    argv = ["config", *preset]
    if config is not None:
        (box / "drawn.yaml").write_text(config, encoding="utf-8", errors="surrogatepass")
        argv += ["--config", str(box / "drawn.yaml")]
    code, out = check_invocation([*argv, *drawn], box)
    if code == 0:  # what is printed builds the same config again
        (box / "printed.yaml").write_text(out)
        assert check_invocation(["config", "--config", str(box / "printed.yaml")], box)[1] == out


PRESET_ARGS = st.one_of(st.just([]), st.sampled_from([*PRESETS, "nope", "", "../demo"]).map(lambda p: ["--preset", p]))
CONFIG_FILE = st.one_of(st.none(), yaml_text(CONFIG_FIELDS))


@settings(max_examples=150, **COMMON)
@given(preset=PRESET_ARGS, config=CONFIG_FILE, drawn=overrides(CONFIG_FIELDS))
def test_config_command_builds_or_refuses_in_one_line(box, preset, config, drawn):
    check_config_command(box, preset, config, drawn)


def check_train(box: Path, drawn: list[str]) -> None:
    def finished(out: str, work: Path) -> None:  # the run directory it names is whole, inside the folder
        run = Path(out.split("run directory: ", 1)[1].splitlines()[0])
        run = run if run.is_absolute() else work / run
        assert work in run.resolve().parents and (run / "config.yaml").exists() and (run / "summary.json").exists()

    check_invocation(["train", *TINY, "--train.out_dir", "runs", *drawn], box, finished)


@settings(max_examples=25, **COMMON)
@given(drawn=overrides(CONFIG_FIELDS, cheap=True, most=3))
def test_train_trains_or_refuses_in_one_line(box, drawn):
    check_train(box, drawn)


POISON = ["--train.epochs", "0"]  # an experiment trains 6 runs (40 s): its options are checked, its runs refused


def any_command(cheap_train: bool = True) -> st.SearchStrategy:
    """A sub-command with its drawn options, and config overrides where it takes them."""
    def with_overrides(name: str) -> st.SearchStrategy:
        parser = SUBCOMMANDS[name]
        fields = {"train-predictor": PREDICTOR_FIELDS, "plan": PLAN_FIELDS}.get(name, CONFIG_FIELDS)
        extra = overrides(fields, cheap=True, most=2) if parser.get_default("takes_overrides") else st.just([])
        def argv(drawn) -> list[str]:
            args, more = drawn
            if name == "experiment":  # the poison last, where no drawn override can lift it
                return [name, *args, *more, *POISON]
            base = TINY if name == "train" and "--resume" not in args else []
            return [name, *args, *base, *more]

        return st.tuples(command_args(name), extra).map(argv)

    return st.sampled_from(sorted(SUBCOMMANDS)).flatmap(with_overrides)


@settings(max_examples=60, **COMMON)
@given(argv=any_command())
def test_every_subcommand_runs_or_refuses_in_one_line(box, argv):
    check_invocation(argv, box)


@pytest.mark.slow
@settings(max_examples=round(300 * SEARCH_SCALE), **COMMON)
@given(preset=PRESET_ARGS, config=CONFIG_FILE, drawn=overrides(CONFIG_FIELDS, most=6))
def test_config_command_longer_search(box, preset, config, drawn):
    check_config_command(box, preset, config, drawn)


@pytest.mark.slow
@settings(max_examples=round(12 * SEARCH_SCALE), **COMMON)
@given(drawn=overrides(CONFIG_FIELDS, cheap=True, most=3))
def test_train_longer_search(box, drawn):
    check_train(box, drawn)


@pytest.mark.slow
@settings(max_examples=round(100 * SEARCH_SCALE), **COMMON)
@given(argv=any_command())
def test_every_subcommand_longer_search(box, argv):
    check_invocation(argv, box)
