"""Typed configuration of a run: dataclasses, validation, YAML in and out, ``--a.b value`` overrides.

A run's configuration is one :class:`Config` made of sections (``data``, ``augment``, ``model``,
``loss``, ``optim``, ``train``). It is built in three layers, each overriding the one before:

1. the dataclass defaults (:mod:`.schema`),
2. a preset (plain data in :mod:`vicreg.presets`),
3. overrides from the command line or a YAML file (``--loss.mu 1``, ``--model.expander 512,512``).

Everything is checked once, at the edge (:func:`build_config`): an unknown key or a bad value raises
:class:`ConfigError` with a one-line message naming the key, the value and what is allowed.
The resolved configuration is saved as ``config.yaml`` beside every run.

The package: ``schema`` (the sections and their defaults), ``coercion`` (dicts to typed dataclasses and back),
``checks`` (range checks), ``build`` (presets, YAML files and overrides into a checked config), ``unused`` (the
fields a config sets but does not use, said as notes).
"""

from .build import (
    build_config,
    build_config_noted,
    config_from_dict,
    load_yaml,
    parse_overrides,
    plan_config,
    predictor_config,
    save_yaml,
    with_overrides,
    yaml_error,
)
from .checks import DEVICE_PATTERN
from .coercion import config_to_dict
from .schema import (
    AugmentConfig,
    Config,
    ConfigError,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    PlanConfig,
    PredictorConfig,
    TrainConfig,
    VideoConfig,
    ViewAugment,
)
from .unused import unused_fields

__all__ = [
    "ConfigError", "ViewAugment", "VideoConfig", "AugmentConfig", "DataConfig", "ModelConfig", "LossConfig",
    "OptimConfig", "TrainConfig", "Config", "PlanConfig", "PredictorConfig", "DEVICE_PATTERN", "plan_config",
    "predictor_config", "build_config", "config_from_dict", "config_to_dict", "parse_overrides", "with_overrides",
    "load_yaml", "yaml_error", "save_yaml", "build_config_noted", "unused_fields",
]
