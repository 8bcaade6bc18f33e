"""The ``vicreg`` command.

    vicreg train                              the offline demo (digits, small CNN, about a minute on CPU)
    vicreg train --preset resnet18-cifar      a preset (vicreg presets lists them)
    vicreg train --preset seed --loss.mu 1    any config field overridden as --section.key value
    vicreg train --config my.yaml             a YAML file of config sections (over the preset)
    vicreg train --resume runs/demo-...       continue a stopped run from its checkpoint
    vicreg presets                            the presets, recipes and backbones
    vicreg config [--preset NAME] [...]       print the resolved config as YAML without training
"""

from __future__ import annotations

import argparse
import sys

import yaml

from .config import ConfigError, build_config, config_to_dict, load_yaml, parse_overrides

RESUME_OVERRIDABLE = {"train.device", "train.progress", "train.compile", "train.log_every", "data.num_workers"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vicreg", description="VICReg self-supervised representation learning.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in (("train", "train a model (no arguments: the offline demo)"),
                        ("config", "print the resolved configuration as YAML")):
        sp = sub.add_parser(name, help=help_, description=help_ + ". Any config field can be overridden with "
                            "--section.key value, e.g. --loss.mu 1 --model.expander 512,512,512.")
        sp.add_argument("--preset", default=None, help="a preset name (default: demo); see `vicreg presets`")
        sp.add_argument("--config", default=None, metavar="FILE", help="YAML file of config sections")
        if name == "train":
            sp.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a stopped run")
    sub.add_parser("presets", help="list presets, augmentation recipes and backbones")
    return p


def _resolve(args, extra: list[str]):
    """--preset (else the YAML file's own preset, else demo) <- --config FILE <- --section.key overrides."""
    base = load_yaml(args.config) if args.config else {}
    preset = args.preset or base.pop("preset", None) or "demo"
    return build_config(preset, parse_overrides(extra), base)


def _cmd_presets() -> None:
    from .models import BACKBONES
    from .presets import PRESETS, RECIPES

    print("presets (vicreg train --preset NAME):")
    for name, p in PRESETS.items():
        d, m = p.get("data", {}), p.get("model", {})
        print(f"  {name:18s} {d.get('dataset', '?'):14s} {m.get('backbone', '?'):15s} "
              f"expander {m.get('expander')}, {p.get('train', {}).get('epochs')} epochs")
    print("augmentation recipes (--augment.recipe NAME):", ", ".join(RECIPES))
    print("backbones (--model.backbone NAME):")
    for spec in BACKBONES.values():
        print(f"  {spec.name:15s} {spec.description}")


def _cmd_train(args, extra: list[str]) -> int:
    from pathlib import Path

    from .config import with_overrides
    from .train import load_run_config, train

    if args.resume:
        if args.preset or args.config:
            raise ConfigError("--resume uses the run's own config.yaml: drop --preset/--config")
        overrides = parse_overrides(extra)
        bad = sorted(set(overrides) - RESUME_OVERRIDABLE)
        if bad:
            raise ConfigError(f"--resume cannot change {bad[0]} (only {', '.join(sorted(RESUME_OVERRIDABLE))})")
        cfg = with_overrides(load_run_config(args.resume), overrides)
        result = train(cfg, run_dir=Path(args.resume), resume=True)
    else:
        cfg = _resolve(args, extra)
        result = train(cfg)

    print(f"run directory: {result.run_dir}")
    if result.interrupted:
        print(f"interrupted at step {result.step}; resume with: vicreg train --resume {result.run_dir}")
        return 130
    fmt = lambda acc: "  ".join(f"k={k}: {v:.2f}%" for k, v in acc.items())  # noqa: E731
    print(f"trained {result.epochs_done:g} epochs in {result.seconds:.1f} s ({result.images_per_s:,.0f} two-view img/s)")
    print(f"k-NN top-1, learned embedding, test split: {fmt(result.knn)}")
    print(f"k-NN top-1, raw pixels,        test split: {fmt(result.knn_raw_pixels)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    if not argv:
        argv = ["train"]
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "presets":
            if extra:
                parser.error(f"unexpected arguments: {' '.join(extra)}")
            _cmd_presets()
            return 0
        if args.command == "config":
            print(yaml.safe_dump(config_to_dict(_resolve(args, extra)), sort_keys=False), end="")
            return 0
        if args.command == "train":
            return _cmd_train(args, extra)
        parser.print_help()
        return 2
    except ConfigError as e:
        print(f"vicreg: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        print(f"vicreg: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vicreg: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
