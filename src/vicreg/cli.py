"""The ``vicreg`` command.

    vicreg --version                          the installed version
    vicreg train                              the offline demo (digits, small CNN, about a minute on CPU)
    vicreg train --preset resnet18-cifar      a preset (vicreg presets lists them)
    vicreg train --preset seed --loss.mu 1    any config field overridden as --section.key value
    vicreg train --config my.yaml             a YAML file of config sections (over the preset)
    vicreg train --resume runs/demo-...       continue a stopped run from its checkpoint
    vicreg presets                            the presets, recipes and backbones
    vicreg config [--preset NAME] [...]       print the resolved config as YAML without training
    vicreg eval RUN_DIR                       k-NN and linear probe per feature level -> RUN_DIR/eval.json
    vicreg plot RUN_DIR                       loss curves, k-NN, spectrum, t-SNE / 2-D scatter -> RUN_DIR/plots
    vicreg embed RUN_DIR -o test.npz          representation, embedding, projection and labels (.npz/.parquet)
    vicreg experiment collapse                rerun a write-up experiment (collapse, weights, dims,
                                              seed-vs-resnet) and write a Markdown + HTML report
    vicreg experiment sweep --set loss.nu=0,1,25   sweep any config field(s)
    vicreg train --preset sprites             a frame encoder on moving sprites (temporal views)
    vicreg train-predictor RUN_DIR            the JEPA predictor of the next frame's embedding
    vicreg eval-predictor RUN_DIR             its roll-out errors against baselines, probes, pictures
    vicreg plan RUN_DIR                       plan pushes toward goal frames with it, closed loop in the simulator
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import yaml

from . import __version__
from .config import (
    DEVICE_PATTERN,
    ConfigError,
    PlanConfig,
    PredictorConfig,
    build_config,
    config_to_dict,
    load_yaml,
    parse_overrides,
)
from .errors import FollowedRank0, JobStopped, NodeConfigError
from .rundir import EVAL, PLAN, PLAN_REPORT, PREDICTOR

RESUME_OVERRIDABLE = {"train.device", "train.progress", "train.compile", "train.compile_mode", "train.compile_scope",
                      "train.log_every",
                      "data.num_workers"}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (``vicreg: error: ...``), like every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"vicreg: error: {message} (see `{self.prog} --help`)\n")


def _at_least(low: int):
    """An argparse type: an integer >= low."""

    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not valid: expected an integer >= {low}")
        return value

    return integer


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not valid: expected a number > 0")
    return value


def _device(text: str) -> str:
    if re.fullmatch(DEVICE_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid: expected auto, cpu, cuda, cuda:N (N a GPU index) "
                                         f"or mps")
    return text


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vicreg", description="VICReg self-supervised representation learning.")
    p.add_argument("--version", action="version", version=f"vicreg {__version__}")
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
    _add_run_commands(sub)
    _add_world_model_commands(sub)
    _add_plan_command(sub)
    _add_experiment_command(sub)
    return p


def _add_run_commands(sub) -> None:
    """eval, plot and embed: commands on a trained run directory."""
    ev = sub.add_parser("eval", help="k-NN and linear-probe accuracy of a trained run",
                        description="Weighted k-NN (cosine) and a linear probe on the frozen representation, "
                        "embedding and expander output of a run's checkpoint, and on raw pixels; prints a table "
                        "and writes RUN_DIR/eval.json.")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--k", type=_at_least(1), nargs="+", default=[20, 200],
                    help="k values of the k-NN (default 20 200)")
    ev.add_argument("--temperature", type=_positive, default=0.1, help="k-NN vote temperature (default 0.1)")
    ev.add_argument("--probe-epochs", type=_at_least(1), default=30, help="epochs of the linear probe (default 30)")
    ev.add_argument("--no-raw-pixels", action="store_true", help="skip the raw-pixel baseline")
    ev.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda[:N] (default auto)")

    pl = sub.add_parser("plot", help="pictures of a trained run",
                        description="Loss curves, k-NN over training, singular-value spectrum and per-dimension "
                        "std, collapse over training, and the test embedding (2-D scatter when E = 2, else "
                        "t-SNE) as PNG (and SVG for line plots) in RUN_DIR/plots.")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, metavar="DIR", help="output folder (default RUN_DIR/plots)")
    pl.add_argument("--window", type=_at_least(1), default=200, help="batches per averaging window of the loss curves")
    pl.add_argument("--tsne-points", type=_at_least(2), default=10_000, help="test points in the t-SNE (default 10000)")
    pl.add_argument("--no-svg", action="store_true", help="PNG only")
    pl.add_argument("--device", type=_device, default="auto", help="device that embeds the test split (default auto)")

    em = sub.add_parser("embed", help="export representations, embeddings and labels",
                        description="Embed every image of a split with a run's checkpoint and write the "
                        "representation, embedding, projection and labels as .npz or .parquet.")
    em.add_argument("run_dir", metavar="RUN_DIR")
    em.add_argument("--split", default="test", choices=["train", "test"])
    em.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.npz or FILE.parquet")
    em.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda[:N] (default auto)")

    xp = sub.add_parser("export", help="the trained encoder as safetensors (+ JSON) or ONNX",
                        description="Write a run's encoder (backbone and head) to RUN_DIR/export (or --out): "
                        "encoder.safetensors and encoder.json (architecture and preprocessing; loaded by "
                        "vicreg.load_encoder without unpickling), and encoder.onnx with --format onnx, checked in "
                        "onnxruntime against PyTorch.")
    xp.add_argument("run_dir", metavar="RUN_DIR")
    xp.add_argument("--format", default="safetensors", choices=["safetensors", "onnx"])
    xp.add_argument("--out", default=None, metavar="DIR", help="output folder (default RUN_DIR/export)")
    xp.add_argument("--level", default="embedding", choices=["embedding", "representation"],
                    help="what the encoder outputs: the head's embedding (default) or the backbone's representation")


def _defaults(cfg) -> str:
    """'key=value, ...' of a config dataclass's fields: its defaults, for a command's description."""
    return ", ".join(f"{k}={v}" for k, v in config_to_dict(cfg).items())


def _add_world_model_commands(sub) -> None:
    tp = sub.add_parser("train-predictor", help="train the JEPA predictor on a video run's frozen embeddings",
                        description="Embed every frame of the run's video sequences (data.dataset sprites or "
                        "moving-mnist) with its encoder and train a predictor of the next frame's embedding from "
                        "the last --predictor.context ones (and the pushes, when the sequences have them). Any "
                        "PredictorConfig field as --predictor.key value, e.g. --predictor.model transformer "
                        "--predictor.epochs 50 --predictor.joint true. Fields and defaults: "
                        + _defaults(PredictorConfig())
                        + ". Writes RUN_DIR/predictor/, replacing the predictor trained before.")
    tp.add_argument("run_dir", metavar="RUN_DIR")
    tp.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda[:N] (default auto)")
    ep = sub.add_parser("eval-predictor", help="roll-out errors, probes and pictures of a trained predictor",
                        description="Autoregressive roll-out error of the predicted embedding at each horizon "
                        "against 'next = last' and linear extrapolation; linear-probe R^2 of positions, "
                        "velocities and distractors from the embedding and from raw pixels; the real next frames "
                        "beside the training frames nearest to the predictions. Writes RUN_DIR/predictor/eval.json "
                        "and pictures.")
    ep.add_argument("run_dir", metavar="RUN_DIR")
    ep.add_argument("--horizons", type=_at_least(1), nargs="+", default=[1, 2, 4, 8],
                    help="roll-out horizons (default 1 2 4 8)")
    ep.add_argument("--sequences", type=_at_least(1), default=4, help="test sequences in the picture (default 4)")
    ep.add_argument("--probe-frames", type=_at_least(10), default=3200,
                    help="training frames (whole sequences, evenly spread) that train the probes (default 3200)")
    ep.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda[:N] (default auto)")


def _add_plan_command(sub) -> None:
    from .worldmodel.plan_command import METHODS

    pp = sub.add_parser("plan", help="plan pushes toward goal frames with the world model, closed loop",
                        description="On a fixed, seeded set of episodes in the sprite simulator (a moving digit, "
                        "a goal frame showing it elsewhere), search the pushes whose predicted embeddings come "
                        "nearest to the goal frame's (model-predictive control: plan, execute the first pushes, "
                        "see the real frames, plan again), and score how many episodes end within "
                        "--plan.success_distance pixels of the goal. Against the same predictor trained on "
                        "pooled pixels, an oracle that plans with the true physics and state, and random "
                        "pushes; with the leaves on and off. Needs a run on pushed sprites (--preset "
                        "sprites-control) with a predictor (vicreg train-predictor). Any PlanConfig field as "
                        "--plan.key value: "
                        + _defaults(PlanConfig())
                        + ". Writes RUN_DIR/plan/.")
    pp.add_argument("run_dir", metavar="RUN_DIR")
    pp.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                    help=f"what to compare (default: all of {', '.join(METHODS)}; quote 'world model')")
    pp.add_argument("--horizons", type=_at_least(1), nargs="*", default=[],
                    help="also plan with the world model at these horizons (with the run's leaves): the "
                    "success-vs-horizon curve, e.g. --horizons 1 2 4 8")


def _add_experiment_command(sub) -> None:
    from .experiments import EXPERIMENTS

    ex = sub.add_parser("experiment", help="rerun a write-up experiment and write a report",
                        description="Run every configuration of an experiment with everything else held equal, "
                        "evaluate and plot each, and write report.md and a self-contained report.html. "
                        "Experiments: " + "; ".join(f"{e.name}: {e.title}" for e in EXPERIMENTS.values())
                        + "; sweep: any config field(s) via --set. Extra --section.key value overrides apply to "
                        "every run.")
    ex.add_argument("name", choices=[*EXPERIMENTS, "sweep"], metavar="NAME",
                    help=f"one of {', '.join([*EXPERIMENTS, 'sweep'])}")
    ex.add_argument("--dataset", default="digits", help="dataset of every run (default digits, offline)")
    ex.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                    help="sweep values of a config field (sweep only; repeat for a product)")
    ex.add_argument("--out", default="runs/experiments", metavar="DIR", help="parent folder (default runs/experiments)")
    ex.add_argument("--window", type=_at_least(1), default=200, help="batches per averaging window of the loss curves")
    ex.add_argument("--probe-epochs", type=_at_least(1), default=30, help="epochs of each linear probe (default 30)")
    ex.add_argument("--force", action="store_true", help="retrain runs that already finished")


def _resolve(args, extra: list[str]):
    """--preset (else the YAML file's own preset, else demo) <- --config FILE <- --section.key overrides."""
    base = load_yaml(args.config) if args.config else {}
    preset = args.preset or base.pop("preset", None) or "demo"
    return build_config(preset, parse_overrides(extra), base)


def _cmd_presets() -> None:
    from .backbones import BACKBONES
    from .presets import PRESETS, RECIPES

    print("presets (vicreg train --preset NAME):")
    for name, p in PRESETS.items():
        d, m = p.get("data", {}), p.get("model", {})
        print(f"  {name:22s} {d.get('dataset', '?'):14s} {m.get('backbone', '?'):15s} "
              f"expander {m.get('expander')}, {p.get('train', {}).get('epochs')} epochs")
    print("augmentation recipes (--augment.recipe NAME):", ", ".join(RECIPES))
    print("backbones (--model.backbone NAME):")
    for spec in BACKBONES.values():
        print(f"  {spec.name:15s} {spec.description}")


def _cmd_train(args, extra: list[str]) -> int:
    from .distributed import rank, shutdown

    try:
        result = _train_or_resume(args, extra)
        main_process = rank() == 0
    finally:
        shutdown()  # a data-parallel job (torchrun) leaves its process group here
    if not main_process:
        return 0  # rank 0 reports the job (an exit code other than 0 here would make torchrun stop it)
    return _print_result(result)


def _train_or_resume(args, extra: list[str]):
    from .config import with_overrides
    from .rundir import read_config
    from .training import train

    if args.resume:
        if args.preset or args.config:
            raise ConfigError("--resume uses the run's own config.yaml: drop --preset/--config")
        overrides = parse_overrides(extra)
        bad = sorted(set(overrides) - RESUME_OVERRIDABLE)
        if bad:
            raise ConfigError(f"--resume cannot change {bad[0]} (only {', '.join(sorted(RESUME_OVERRIDABLE))})")
        cfg = with_overrides(read_config(args.resume), overrides)
        result = train(cfg, run_dir=Path(args.resume), resume=True)
    else:
        cfg = _resolve(args, extra)
        result = train(cfg)
    return result


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
    print(f"k-NN top-1, learned embedding, test split: {fmt(result.knn)}")
    print(f"k-NN top-1, raw pixels,        test split: {fmt(result.knn_raw_pixels)}")
    return 0


def _cmd_eval(args) -> int:
    from .loaded_run import evaluate_run, format_eval_table

    print(f"evaluating {args.run_dir} (k-NN k={', '.join(map(str, args.k))}, linear probe {args.probe_epochs} epochs)")
    report = evaluate_run(args.run_dir, device=args.device, ks=tuple(args.k), temperature=args.temperature,
                          probe_epochs=args.probe_epochs, raw_pixels=not args.no_raw_pixels)
    print(format_eval_table(report))
    print(f"wrote {Path(args.run_dir) / EVAL} ({report['seconds']:.1f} s on {report['device']})")
    return 0


def _cmd_plot(args) -> int:
    from .loaded_run import embed_run
    from .plots import plot_run

    arrays = embed_run(args.run_dir, "test", device=args.device)
    paths = plot_run(args.run_dir, outputs=arrays, class_names=[str(c) for c in arrays["classes"]], out_dir=args.out,
                     window=args.window, tsne_points=args.tsne_points,
                     formats=("png",) if args.no_svg else ("png", "svg"))
    for path in paths:
        print(f"wrote {path}")
    return 0


def _cmd_export(args) -> int:
    from .encoder import EXPORT_JSON, export_encoder

    meta = export_encoder(args.run_dir, args.format, args.out, args.level)
    out = Path(args.out) if args.out else Path(args.run_dir) / "export"
    pre = meta["preprocess"]
    print(f"wrote {out / EXPORT_JSON}: {meta['level']} of {meta['model']['backbone']} at step {meta['step']}, input "
          f"(N, {pre['channels']}, {pre['size']}, {pre['size']}) floats in [0, 1]")
    for name, check in meta["check"].items():
        detail = (f"reads back equal ({check['tensors']} tensors)" if name == "safetensors" else
                  f"onnxruntime vs PyTorch max abs difference {check['onnxruntime_max_abs_diff']:.3g} "
                  f"(outputs up to {check['output_max_abs']:.3g})")
        print(f"wrote {out / check['file']}: {detail}")
    return 0


def _cmd_embed(args) -> int:
    from .loaded_run import embed_run, save_embeddings

    if not args.output.endswith((".npz", ".parquet")):
        raise ValueError(f"-o {args.output!r} must end in .npz or .parquet")
    arrays = embed_run(args.run_dir, args.split, device=args.device)
    path = save_embeddings(arrays, args.output)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items() if k != "classes")
    print(f"wrote {path}: {shapes}")
    return 0


def _cmd_experiment(args, extra: list[str]) -> int:
    from .experiments import EXPERIMENTS, run_experiment, sweep_experiment

    if args.name == "sweep":
        experiment = sweep_experiment(args.set)
    elif args.set:
        raise ConfigError(f"--set is for `vicreg experiment sweep`; experiment {args.name} has fixed runs "
                          "(use --section.key value to change every run)")
    else:
        experiment = EXPERIMENTS[args.name]
    run_experiment(experiment, dataset=args.dataset, overrides=parse_overrides(extra), out_dir=args.out,
                   probe_epochs=args.probe_epochs, window=args.window, force=args.force)
    return 0


def _cmd_train_predictor(args, extra: list[str]) -> int:
    from .worldmodel import load_predictor_config, train_predictor

    cfg = load_predictor_config(parse_overrides(extra))
    result = train_predictor(args.run_dir, cfg, device=args.device)
    last = result.history[-1] if result.history else {}
    print("last epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float)))
    print(f"next: vicreg eval-predictor {args.run_dir}")
    return 0


def _cmd_plan(args, extra: list[str]) -> int:
    from .config import plan_config
    from .worldmodel.plan_command import format_plan_table, plan_run

    cfg = plan_config({k.removeprefix("plan."): v for k, v in parse_overrides(extra).items()})
    report = plan_run(args.run_dir, cfg, methods=args.methods, horizons=tuple(args.horizons))
    print(format_plan_table(report))
    for path in report["figures"]:
        print(f"wrote {path}")
    print(f"wrote {Path(args.run_dir) / PLAN / PLAN_REPORT} ({report['seconds']:.1f} s on {report['device']})")
    return 0


def _cmd_eval_predictor(args) -> int:
    from .worldmodel import evaluate_predictor, format_rollout_table

    report = evaluate_predictor(args.run_dir, device=args.device, horizons=tuple(args.horizons),
                                figure_sequences=args.sequences, probe_frames=args.probe_frames)
    print(format_rollout_table(report))
    for path in report["figures"]:
        print(f"wrote {path}")
    print(f"wrote {Path(args.run_dir) / PREDICTOR / EVAL} ({report['seconds']:.1f} s)")
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
        if args.command == "experiment":
            return _cmd_experiment(args, extra)
        if args.command == "train-predictor":
            return _cmd_train_predictor(args, extra)
        if args.command == "plan":
            return _cmd_plan(args, extra)
        if extra:
            parser.error(f"unexpected arguments: {' '.join(extra)}")
        if args.command in ("eval", "plot", "embed", "export", "eval-predictor"):
            return {"eval": _cmd_eval, "plot": _cmd_plot, "embed": _cmd_embed, "export": _cmd_export,
                    "eval-predictor": _cmd_eval_predictor}[args.command](args)
        parser.print_help()
        return 2
    except ConfigError as e:
        return _report(e, 2)
    except (OSError, ValueError, FloatingPointError, JobStopped, FollowedRank0) as e:
        return _report(e, 1)
    except KeyboardInterrupt:
        print("vicreg: aborted", file=sys.stderr)
        return 130


def _report(e: Exception, code: int) -> int:
    """The error in one line on stderr; returns the exit code. In a data-parallel job, what is the same on
    every process (a bad config, a world size, a failure rank 0 found) is said by rank 0 alone (by local rank
    0 for what is the same on a node), and the others exit with 0, so that torchrun waits for rank 0 to say
    it; the other ranks say only what is their own (their lost peers, their files), prefixed with their rank."""
    rank = int(os.environ.get("RANK", "0") or 0)
    if isinstance(e, NodeConfigError):
        if int(os.environ.get("LOCAL_RANK", "0") or 0):
            return 0
    elif rank and isinstance(e, (ConfigError, FollowedRank0)):
        return 0
    prefix = f"rank {rank}: " if rank and not str(e).startswith(f"rank {rank}:") else ""
    print(f"vicreg: error: {prefix}{e}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
