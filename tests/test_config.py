"""Config: presets are data, overrides are typed, bad keys and values give one-line errors."""

import pytest

from vicreg.config import Config, ConfigError, build_config, config_from_dict, config_to_dict, parse_overrides
from vicreg.presets import PRESETS, RECIPES


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds(name):
    cfg = build_config(name)
    assert cfg.preset == name
    assert cfg.augment.recipe in RECIPES


def test_seed_preset_is_the_writeup_model():
    m = build_config("seed").model
    assert (m.backbone, m.freeze_backbone, m.head, m.head_widths, m.embedding_dim, m.expander) == (
        "vgg16", True, "seed", [128, 32], 50, [80, 80, 100])


def test_overrides_are_typed():
    over = parse_overrides(["--loss.mu", "1", "--model.expander=512,256", "--train.compile", "--loss.eps", "1e-3",
                            "--train.knn-every", "3"])
    cfg = build_config("demo", over)
    assert cfg.loss.mu == 1.0 and isinstance(cfg.loss.mu, float)
    assert cfg.model.expander == [512, 256]
    assert cfg.train.compile is True
    assert cfg.loss.eps == pytest.approx(1e-3)
    assert cfg.train.knn_every == 3


def test_recipe_override_replaces_both_views_then_fields_apply():
    cfg = build_config("demo", parse_overrides(["--augment.recipe", "paper", "--augment.view_b.solarize_p", "0.5"]))
    assert cfg.augment.recipe == "paper"
    assert cfg.augment.view_a.blur_p == 1.0
    assert cfg.augment.view_b.solarize_p == 0.5


def test_yaml_round_trip(tmp_path):
    from vicreg.config import load_yaml, save_yaml

    cfg = build_config("resnet18-fashion", {"loss.nu": 0.5})
    save_yaml(cfg, tmp_path / "c.yaml")
    assert config_from_dict(load_yaml(tmp_path / "c.yaml")) == cfg
    assert config_from_dict(config_to_dict(Config())) == Config()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss.muu": 1},
         "unknown config key 'loss.muu' (known keys in loss: lam, mu, nu, eps, gamma, variance_reduction)"),
        ({"nope.x": 1}, "unknown config key 'nope'"),
        ({"loss.mu": "abc"}, "loss.mu='abc' is not valid: expected a number"),
        ({"loss.mu": -1}, "loss.mu=-1.0 is not valid: a loss weight must be >= 0"),
        ({"optim.name": "adam"}, "optim.name='adam' is not valid: expected one of 'lars', 'adamw', 'sgd'"),
        ({"train.batch_size": 1}, "train.batch_size=1 is not valid: must be >= 2"),
        ({"train.epochs": 2.5}, "train.epochs=2.5 is not valid: expected an integer"),
        ({"model.backbone": "resnet7"}, "model.backbone='resnet7' is not valid: expected one of"),
        ({"augment.view_a.flip_p": 2}, "augment.view_a.flip_p=2.0 is not valid: a probability must be in [0, 1]"),
        ({"augment.recipe": "fancy"}, "augment.recipe='fancy' is not valid: expected one of paper"),
        ({"data.dataset": "imagenet"}, "data.dataset='imagenet' is not valid: expected one of 'digits'"),
        ({"train.compile": "yes"}, "train.compile='yes' is not valid: expected true or false or one of 'auto'"),
        ({"train.compile_scope": "all"}, "train.compile_scope='all' is not valid: expected one of 'loss', 'step'"),
    ],
)
def test_bad_values_give_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        build_config("demo", overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_compile_is_auto_unless_set_and_takes_booleans_from_flags_and_yaml():
    assert build_config("demo").train.compile == "auto" and build_config("demo").train.compile_mode == "auto"
    assert build_config("demo", parse_overrides(["--train.compile"])).train.compile is True
    assert build_config("demo", parse_overrides(["--train.compile", "false"])).train.compile is False
    assert build_config("demo", {"train.compile": "auto", "train.compile_scope": "step"}).train.compile_scope == "step"


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'big' \\(known presets: demo, seed"):
        build_config("big")


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="unexpected argument 'mu'"):
        parse_overrides(["mu", "1"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss.mu": "nan"}, "loss.mu=nan is not valid: expected a finite number"),
        (parse_overrides(["--loss.mu", ".inf"]), "loss.mu=inf is not valid: expected a finite number"),
        ({"optim.lr": float("-inf")}, "optim.lr=-inf is not valid: expected a finite number"),
        ({"augment.view_a.crop_scale": "0.5,nan"}, "augment.view_a.crop_scale=nan is not valid: expected a finite"),
        ({"loss.mu": 10**400}, f"loss.mu={'1' + '0' * 59}...(401 characters) is not valid: expected a finite number"),
        ({"train.epochs": 10**30}, "train.epochs=1000000000000000000000000000000 is not valid: expected an integer "
                                   "between -(2**63 - 1) and 2**63 - 1"),
        ({"data.limit_train": 1e30}, "data.limit_train=1000000000000000019884624838656 is not valid: expected an "
                                     "integer between"),
        ({"train.seed": 10**30}, "train.seed=1000000000000000000000000000000 is not valid: expected an integer"),
        ({"train.seed": -1}, "train.seed=-1 is not valid: a seed must be in [0, 2**32 - 1]"),
        ({"data.split_seed": 2**32}, "data.split_seed=4294967296 is not valid: a seed must be in [0, 2**32 - 1]"),
        ({"data.video.seed": -3}, "data.video.seed=-3 is not valid: a seed must be in [0, 2**32 - 1]"),
        ({"train.out_dir": "runs\x00x"}, "train.out_dir='runs\\x00x' is not valid: a path cannot hold a NUL byte"),
        ({"data.data_dir": "\x00"}, "data.data_dir='\\x00' is not valid: a path cannot hold a NUL byte"),
        ({"data": "x"}, "data='x' is not valid: data is a section, expected a mapping of its keys (dataset, data_dir"),
        ({"data.video": 3}, "data.video=3 is not valid: data.video is a section, expected a mapping of its keys"),
        (parse_overrides(["--augment.recipe", "[]"]), "augment.recipe=[] is not valid: expected one of paper, cifar"),
        ({"augment.recipe": {"a": 1}}, "augment.recipe={'a': 1} is not valid: expected one of paper"),
        ({"data.image_size": 4097}, "data.image_size=4097 is not valid: must be in [8, 4096] or null"),
        ({"data.dataset": "sprites", "data.video.canvas": 10**12},
         "data.video.canvas=1000000000000 is not valid: must be larger than data.video.sprite_size=12 and at most "
         "4096"),
        ({"data.num_workers": 10**8}, "data.num_workers=100000000 is not valid: must be in [0, 256]"),
    ],
)
def test_non_finite_huge_and_unrepresentable_values_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        build_config("demo", overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_largest_integer_a_field_holds():
    assert build_config("demo", {"train.epochs": 2**63 - 1}).train.epochs == 2**63 - 1
    assert build_config("demo", {"train.seed": 2**32 - 1}).train.seed == 2**32 - 1
    assert build_config("demo", {"loss.mu": 10**30}).loss.mu == 1e30


RUN_NAME_RULE = ("is not valid: a run name is one folder name: not empty, not '.', not starting with '..', without /, "
                 "\\ or control characters, at most 255 bytes (the run directory is train.out_dir/train.name; null: "
                 "<preset>-<date>-<time>)")


@pytest.mark.parametrize("name", ["a/b", "../x", "..", ".", "", "..x", "a\\b", "/abs", "x\x00", "two\nlines",
                                  "tab\tname", "bidi\u202ename", "x" * 256, "é" * 128])
def test_a_run_name_is_one_folder_name(name):
    with pytest.raises(ConfigError) as e:
        build_config("demo", {"train.name": name})
    assert str(e.value) == f"train.name={name!r} {RUN_NAME_RULE}" or len(repr(name)) > 60


@pytest.mark.parametrize("name", ["run", "my run-1", "x.y", "x..y", "é" * 127, "日本", "-x", "x" * 255])
def test_run_names_that_are_allowed(name):
    assert build_config("demo", {"train.name": name}).train.name == name


def test_a_preset_name_kept_in_a_config_is_a_plain_name():
    with pytest.raises(ConfigError, match="^preset='../../x' is not valid: a preset's name starts run directory names: "
                                          "it is one folder name: not empty"):
        config_from_dict({"preset": "../../x"})


def test_a_config_file_that_is_not_text_or_holds_a_nul_is_one_line(tmp_path):
    from vicreg.config import load_yaml

    (tmp_path / "latin1.yaml").write_bytes(b"train:\n  name: caf\xe9\n")
    (tmp_path / "nul.yaml").write_bytes(b"train:\n  epochs: 1\x00\n")
    for name, message in (("latin1.yaml", "is not UTF-8 text (byte 0xe9 at offset 18)"),
                          ("nul.yaml", "is not valid YAML: unacceptable character #x0000: special characters are not "
                                       "allowed")):
        with pytest.raises(ConfigError) as e:
            load_yaml(tmp_path / name)
        assert str(e.value) == f"{tmp_path / name} {message}"
    with pytest.raises(ConfigError, match="^cannot read 'a\\\\x00b': embedded null byte$"):
        load_yaml("a\x00b")


def test_fields_a_config_does_not_use_are_named_with_the_reason():
    from vicreg.config import Config, OptimConfig, TrainConfig, unused_fields

    cfg = Config(optim=OptimConfig(name="adamw", momentum=0.5, eta=0.01, betas=(0.8, 0.9)),
                 train=TrainConfig(compile=False, compile_mode="max-autotune", compile_scope="step"))
    cfg.model.embedding_dim, cfg.model.head_widths, cfg.model.dropout = 64, [32], 0.3
    cfg.data.video.length, cfg.data.frame_skip = 8, 2
    assert unused_fields(cfg) == [
        "model.embedding_dim=64 is not used: model.head is 'none'",
        "model.head_widths=[32] is not used: model.head is 'none'",
        "model.dropout=0.3 is not used: only the seed head has dropout (model.head is 'none')",
        "data.video.length=8 is not used: data.video is for data.dataset 'sprites', not 'digits'",
        "data.frame_skip=2 is not used: frames are skipped in collected episodes (data.dataset 'episodes'), not in "
        "'digits'",
        "optim.momentum=0.5 is not used: optim.name is 'adamw' (momentum is for lars and sgd)",
        "optim.eta=0.01 is not used: optim.name is 'adamw' (eta is the trust coefficient of lars)",
        "train.compile_mode='max-autotune' is not used: train.compile is false",
        "train.compile_scope='step' is not used: train.compile is false",
    ]
    assert unused_fields(Config()) == []  # the defaults say nothing, also where they are not used
    assert unused_fields(cfg, baseline=cfg) == []  # nor what the baseline (the preset) set


def test_notes_name_only_what_the_file_or_the_overrides_changed_from_the_preset():
    from vicreg.config import build_config_noted

    cfg, notes = build_config_noted("seed", {"model.head": "none"})  # the preset's head widths: not the user's
    assert cfg.model.head_widths == [128, 32] and notes == []
    _, notes = build_config_noted("seed", {"model.head": "none", "model.embedding_dim": 64, "optim.betas": "0.8,0.9"},
                                  base={"model": {"dropout": 0.5}})
    assert notes == ["model.embedding_dim=64 is not used: model.head is 'none'",
                     "model.dropout=0.5 is not used: only the seed head has dropout (model.head is 'none')"]
    _, notes = build_config_noted("sprites", {"data.video.push": 2, "data.video.distractor_size": 3,
                                              "data.placement": "stream", "data.max_device_fraction": 0.9,
                                              "optim.name": "sgd", "optim.betas": "0.5,0.5", "data.test_fraction": 0.5})
    assert notes == ["data.video.push=2.0 is not used: data.video.controlled is false (nothing is pushed)",
                     "data.test_fraction=0.5 is not used: 'sprites' has a test split of its own",
                     "data.max_device_fraction=0.9 is not used: data.placement is 'stream', not 'auto'",
                     "optim.betas=[0.5, 0.5] is not used: optim.name is 'sgd' (betas are for adamw)"]
    _, notes = build_config_noted("demo", {"data.dataset": "cifar10", "data.split_seed": 3, "data.decode": "device",
                                           "train.stack_views": False, "train.batchnorm": "joint"})
    assert notes == ["data.split_seed=3 is not used: 'cifar10' is not split at random",
                     "data.decode='device' is not used: it is for an image folder (data.dataset 'folder'), not "
                     "'cifar10'",
                     "train.batchnorm='joint' is not used: train.stack_views is false (each view has its own forward "
                     "pass)"]


def test_the_world_models_counts_of_processes_and_layers_are_bounded():
    from vicreg.config import plan_config, predictor_config

    with pytest.raises(ConfigError, match=r"^plan.workers=1000000 is not valid: must be in \[1, 256\]$"):
        plan_config({"workers": 10**6})
    with pytest.raises(ConfigError, match=r"^predictor.layers=100000 is not valid: must be in \[1, 1024\]$"):
        predictor_config({"layers": 100000})
    with pytest.raises(ConfigError, match=r"^predictor.seed=-1 is not valid: a seed must be in \[0, 2\*\*32 - 1\]$"):
        predictor_config({"seed": -1})
    assert plan_config({"workers": 256}).workers == 256 and predictor_config({"layers": 1024}).layers == 1024

