"""``vicreg train``, ``vicreg config`` and ``vicreg presets``: a config from a preset, a YAML file and
``--section.key value`` overrides; training it (or resuming a run); printing it; listing what can be chosen."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from ..config import ConfigError, build_config_noted, config_to_dict, load_yaml, parse_overrides

RESUME_OVERRIDABLE = {"train.device", "train.progress", "train.compile", "train.compile_mode", "train.compile_scope",
                      "train.log_every", "data.num_workers"}


def add_train_commands(sub) -> None:
    """train, config and presets."""
    for name, help_, handler in (("train", "train a model (no arguments: the offline demo)", train_command),
                                 ("config", "print the resolved configuration as YAML", config_command)):
        sp = sub.add_parser(name, help=help_, description=help_ + ". Any config field can be overridden with "
                            "--section.key value, e.g. --loss.mu 1 --model.expander 512,512,512.")
        sp.add_argument("--preset", default=None, help="a preset name (default: demo); see `vicreg presets`")
        sp.add_argument("--config", default=None, metavar="FILE", help="YAML file of config sections")
        if name == "train":
            sp.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a stopped run")
        sp.set_defaults(handler=handler, takes_overrides=True)
    sub.add_parser("presets", help="list presets, augmentation recipes and backbones").set_defaults(
        handler=presets_command)


def resolve(args, overrides: list[str]):
    """--preset (else the YAML file's own preset, else demo) <- --config FILE <- --section.key overrides. The
    fields they set that the config does not use are said on stderr (``vicreg: note: ...``, once: by rank 0)."""
    base = load_yaml(args.config) if args.config is not None else {}  # --config '': a file that is not there
    preset = base.pop("preset", None)  # the file's preset is a preset to start from, never kept as a name
    preset = args.preset if args.preset is not None else preset or "demo"  # --preset '': an unknown preset
    cfg, notes = build_config_noted(preset, parse_overrides(overrides), base)
    if int(os.environ.get("RANK", "0") or 0) == 0:
        for note in notes:
            print(f"vicreg: note: {note}", file=sys.stderr)
    return cfg


def config_command(args) -> int:
    print(yaml.safe_dump(config_to_dict(resolve(args, args.overrides)), sort_keys=False), end="")
    return 0


def presets_command(args) -> int:
    from ..backbones import BACKBONES, TIMM_PREFIX
    from ..presets import PRESETS, RECIPES

    print("presets (vicreg train --preset NAME):")
    for name, p in PRESETS.items():
        d, m = p.get("data", {}), p.get("model", {})
        print(f"  {name:22s} {d.get('dataset', '?'):14s} {m.get('backbone', '?'):26s} "
              f"expander {m.get('expander')}, {p.get('train', {}).get('epochs')} epochs")
    print("augmentation recipes (--augment.recipe NAME):", ", ".join(RECIPES))
    print("backbones (--model.backbone NAME):")
    for spec in BACKBONES.values():
        print(f"  {spec.name:15s} {spec.description}")
    print(f"  {TIMM_PREFIX + 'NAME':15s} any timm model (pip install timm), without its classifier, for the dataset's "
          f"channels and image size;\n{'':17s} its arguments as --model.backbone_args.KEY VALUE, e.g. --model.backbone "
          f"timm:vit_tiny_patch16_224 --model.backbone_args.patch_size 4;\n{'':17s} "
          f"python -c \"import timm; print(timm.list_models('vit_*'))\" lists the models")
    return 0


def train_command(args) -> int:
    from ..distributed import rank, shutdown

    try:
        result = _train_or_resume(args)
        main_process = rank() == 0
    finally:
        shutdown()  # a data-parallel job (torchrun) leaves its process group here
    if not main_process:
        return 0  # rank 0 reports the job (an exit code other than 0 here would make torchrun stop it)
    return _print_result(result)


def _train_or_resume(args):
    from ..config import with_overrides
    from ..rundir import read_config
    from ..training import train

    if args.resume is None:
        return train(resolve(args, args.overrides))
    if not args.resume:  # not a new run in the working directory's runs/ (what it started before)
        raise ConfigError("--resume '' is not valid: give the run directory to continue")
    if args.preset is not None or args.config is not None:
        raise ConfigError("--resume uses the run's own config.yaml: drop --preset/--config")
    overrides = parse_overrides(args.overrides)
    bad = sorted(set(overrides) - RESUME_OVERRIDABLE)
    if bad:
        raise ConfigError(f"--resume cannot change {bad[0]} (only {', '.join(sorted(RESUME_OVERRIDABLE))})")
    cfg = with_overrides(read_config(args.resume), overrides)
    return train(cfg, run_dir=Path(args.resume), resume=True)


def _print_result(result) -> int:
    print(f"run directory: {result.run_dir}")
    if result.interrupted:
        print(f"interrupted at step {result.step}; resume with: {result.resume_command}")
        return 130
    def fmt(acc: dict[int, float]) -> str:
        return "  ".join(f"k={k}: {v:.2f}%" for k, v in acc.items())

    if result.start_epoch:  # a resumed run: this invocation's part, and the whole
        span = f"from epoch {result.start_epoch:.3g} to {result.epochs_done:g} (resumed; {result.epochs_done:g} in all)"
    else:
        span = f"{result.epochs_done:g} epochs"
    print(f"trained {span} in {result.seconds:.1f} s ({result.images_per_s:,.0f} two-view img/s)")
    if not result.knn:
        print("no k-NN accuracy: the dataset has no class labels")
        return 0
    print(f"k-NN top-1, learned embedding, test split: {fmt(result.knn)}")
    print(f"k-NN top-1, raw pixels,        test split: {fmt(result.knn_raw_pixels)}")
    return 0
