"""Experiments as data: configs held equal but for the variant, sweeps, and a tiny experiment end to end."""

import base64

import pytest

from vicreg.cli import main
from vicreg.config import ConfigError, config_to_dict
from vicreg.experiments import EXPERIMENTS, experiment_configs, parse_sweep, sweep_experiment

TINY = ["--train.epochs", "1", "--train.batch_size", "64", "--data.image_size", "8", "--model.expander", "16,16",
        "--train.knn_k", "5,20"]


def flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", list(EXPERIMENTS))
@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist", "cifar10"])
def test_runs_of_an_experiment_differ_only_in_their_variant(name, dataset, tmp_path):
    experiment = EXPERIMENTS[name]
    configs = experiment_configs(experiment, dataset, out_dir=tmp_path)
    assert [v.label for v, _ in configs] == [v.label for v in experiment.variants]
    flat = [flatten(config_to_dict(cfg)) for _, cfg in configs]
    varied = set().union(*(v.overrides for v, _ in configs)) | {"train.name"}
    for f in flat[1:]:
        differing = {k for k in f if f[k] != flat[0][k]}
        assert differing <= varied, differing - varied
    assert len({f["train.name"] for f in flat}) == len(flat)  # one run directory each
    assert all(f["data.dataset"] == dataset for f in flat)


def test_experiment_weights_match_the_write_up():
    labels = {v.label: v.overrides for v in EXPERIMENTS["weights"].variants}
    assert labels["(25, 25, 1), E=2"] == {"loss.lam": 25, "loss.mu": 25, "loss.nu": 1, "model.embedding_dim": 2}
    assert labels["(1, 1, 1), E=50"]["loss.lam"] == 1 and labels["nu = 0, E=50"]["loss.nu"] == 0
    collapse = {v.label: v.overrides for v in EXPERIMENTS["collapse"].variants}
    assert (collapse["invariance only, E=2"]["loss.mu"], collapse["invariance only, E=2"]["loss.nu"]) == (0, 0)
    assert [v.overrides["model.embedding_dim"] for v in EXPERIMENTS["dims"].variants] == [2, 8, 50, 128]


def test_parse_sweep_gives_the_product_of_values():
    variants = parse_sweep(["loss.nu=0,1,25", "model.embedding-dim=2,50"])
    assert len(variants) == 6
    assert variants[0].label == "loss.nu=0, model.embedding_dim=2"
    assert variants[-1].overrides == {"loss.nu": 25, "model.embedding_dim": 50}
    with pytest.raises(ConfigError, match="expected key=v1,v2"):
        parse_sweep(["loss.nu"])
    with pytest.raises(ConfigError, match="at least one --set"):
        parse_sweep([])


def test_a_sweep_value_that_is_not_a_scalar_or_is_listed_twice_is_one_line():
    with pytest.raises(ConfigError) as e:  # was a yaml ParserError traceback
        parse_sweep(["model.expander=[8,8]"])
    assert str(e.value) == ("--set 'model.expander=[8,8]' is not valid: the values are YAML scalars split at commas "
                            "(a list such as [8,8] cannot be one of them)")
    with pytest.raises(ConfigError) as e:  # two runs of one name: the second reused the first
        parse_sweep(["loss.nu=0,1,0"])
    assert str(e.value) == "--set 'loss.nu=0,1,0' is not valid: a value is listed twice (each one is a run)"


def test_bad_values_name_the_run_and_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"run 'loss.mu=-1'.*loss.mu"):
        experiment_configs(sweep_experiment(["loss.mu=-1"]), "digits", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="--dataset 'imagenet' is not valid"):
        experiment_configs(EXPERIMENTS["dims"], "imagenet", out_dir=tmp_path)


@pytest.mark.slow
def test_sweep_end_to_end_writes_a_report_listing_every_run(tmp_path, capsys):
    argv = ["experiment", "sweep", "--set", "loss.nu=0,1", "--out", str(tmp_path), "--probe-epochs", "2", *TINY,
            "--data.limit_train", "384", "--data.limit_test", "160"]  # 6 steps a run; t-SNE of 160 points
    assert main(argv) == 0
    folder = tmp_path / "sweep-digits"
    md = (folder / "report.md").read_text()
    for label in ("loss.nu=0", "loss.nu=1"):
        assert f"| {label} |" in md  # one table row per run
        assert (folder / label.replace(".", "-").replace("=", "-") / "summary.json").exists()
    html = (folder / "report.html").read_text()
    images = html.count("data:image/png;base64,")
    assert images == md.count("![") >= 3  # every figure embedded, none linked
    payload = html.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="compare' not in html
    # a second call reuses the finished runs instead of training again
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == 2


def test_set_is_only_for_sweep(capsys):
    assert main(["experiment", "dims", "--set", "loss.nu=0,1"]) == 2
    assert "--set is for `vicreg experiment sweep`" in capsys.readouterr().err


def test_a_run_is_reused_or_resumed_only_under_the_same_config(tmp_path):
    from vicreg.config import save_yaml, with_overrides
    from vicreg.rundir import is_finished, same_config

    (_, cfg), = experiment_configs(sweep_experiment(["loss.nu=0"]), "digits", out_dir=tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert not same_config(run_dir, cfg)
    save_yaml(cfg, run_dir / "config.yaml")
    assert same_config(run_dir, cfg) and not is_finished(run_dir, cfg)  # no summary.json yet
    assert same_config(run_dir, with_overrides(cfg, {"train.progress": False}))
    assert not same_config(run_dir, with_overrides(cfg, {"train.epochs": 3}))
    (run_dir / "summary.json").write_text("{}")
    assert is_finished(run_dir, cfg)
