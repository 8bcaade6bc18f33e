"""Building a config: defaults <- preset <- YAML file <- ``--section.key value`` overrides, then checked.

Everything is checked once, at the edge (:func:`build_config`): an unknown key or a bad value raises
:class:`ConfigError` with a one-line message. The resolved configuration is saved as ``config.yaml`` beside every
run (:func:`save_yaml`).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from ..presets import PRESETS, RECIPES
from .checks import validate, validate_plan, validate_predictor
from .coercion import config_to_dict, from_dict, shown
from .schema import Config, ConfigError, PlanConfig, PredictorConfig
from .unused import unused_fields


def config_from_dict(data: dict) -> Config:
    """Build and validate a Config from a (possibly partial) nested dict."""
    cfg = from_dict(Config, data, "")
    validate(cfg)
    return cfg


def predictor_config(data: dict | None = None) -> PredictorConfig:
    """Build and validate a PredictorConfig from a (possibly partial) dict (e.g. dotted CLI overrides
    without their ``predictor.`` prefix, or a saved predictor/config.yaml)."""
    cfg = from_dict(PredictorConfig, dict(data or {}), "predictor.")
    validate_predictor(cfg)
    return cfg


def plan_config(data: dict | None = None) -> PlanConfig:
    """Build and validate a PlanConfig from a (possibly partial) dict (``--plan.key value`` overrides without
    their prefix)."""
    cfg = from_dict(PlanConfig, dict(data or {}), "plan.")
    validate_plan(cfg)
    return cfg


def _merge(base: dict, update: dict, path: str = "") -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(out.get(k), dict) and not isinstance(v, dict):  # a section given a value: never dropped
            raise ConfigError(f"{path}{k}={v!r} is not valid: {path}{k} is a section, expected a mapping of its "
                              f"keys ({', '.join(out[k])})")
        out[k] = _merge(out[k], v, f"{path}{k}.") if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--loss.mu", "1", "--model.expander=512,512"]`` -> ``{"loss.mu": 1, "model.expander": "512,512"}``.

    Values are read as YAML scalars (``1`` -> int, ``true`` -> bool, ``null`` -> None); a bare flag
    ``--train.compile`` means true.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}: config overrides look like --section.key value")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:
            raw = "true"
            i += 1
        key = key.replace("-", "_")
        try:
            value = yaml.safe_load(raw) if "," not in raw else raw
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def build_config(preset: str | None = None, overrides: dict[str, Any] | None = None,
                 base: dict | None = None) -> Config:
    """Defaults <- preset <- base (e.g. a YAML file) <- dotted overrides; validated."""
    return build_config_noted(preset, overrides, base)[0]


def build_config_noted(preset: str | None = None, overrides: dict[str, Any] | None = None,
                       base: dict | None = None) -> tuple[Config, list[str]]:
    """:func:`build_config`'s config, and one note for each field that ``base`` or ``overrides`` set (to a value
    other than the preset's) and the config does not use (:func:`vicreg.config.unused.unused_fields`)."""
    tree = config_to_dict(Config())
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (known presets: {', '.join(PRESETS)})")
        tree = _merge(tree, PRESETS[preset])
        tree["preset"] = preset
    preset_tree = copy.deepcopy(tree)
    if base:
        tree = _merge(tree, base)
    overrides = dict(overrides or {})
    recipe = overrides.pop("augment.recipe", None)
    if recipe is not None:
        if not isinstance(recipe, str) or recipe not in RECIPES:
            raise ConfigError(f"augment.recipe={shown(recipe)} is not valid: expected one of {', '.join(RECIPES)}")
        tree["augment"] = _merge(tree["augment"], {"recipe": recipe, **RECIPES[recipe]})
    for key, value in overrides.items():
        _set_path(tree, key, value)
    cfg = config_from_dict(tree)
    return cfg, unused_fields(cfg, from_dict(Config, preset_tree, ""))


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted overrides applied, validated."""
    tree = config_to_dict(cfg)
    for key, value in overrides.items():
        _set_path(tree, key, value)
    return config_from_dict(tree)


def save_yaml(cfg: Config, path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)


def yaml_error(path, e: yaml.YAMLError) -> str:
    """One line for a YAML file that does not parse: the file, where (line and column) and what."""
    mark = getattr(e, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]  # a reader's error: the character
    return f"{path} is not valid YAML{where}: {problem}"


def load_yaml(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(path, e)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path if str(path) else repr('')}: {e.strerror or e}") from None
    except ValueError as e:  # a path with a NUL byte
        raise ConfigError(f"cannot read {path!r}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping of config sections")
    return data
