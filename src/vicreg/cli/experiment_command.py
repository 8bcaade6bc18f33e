"""``vicreg experiment``: a write-up experiment, or a sweep of any config fields, run and reported."""

from __future__ import annotations

from ..config import ConfigError, parse_overrides
from .options import at_least


def add_experiment_command(sub) -> None:
    from ..experiments import EXPERIMENTS

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
    ex.add_argument("--window", type=at_least(1), default=200, help="batches per averaging window of the loss curves")
    ex.add_argument("--probe-epochs", type=at_least(1), default=30, help="epochs of each linear probe (default 30)")
    ex.add_argument("--force", action="store_true", help="retrain runs that already finished")
    ex.set_defaults(handler=experiment_command, takes_overrides=True)


def experiment_command(args) -> int:
    from ..experiments import EXPERIMENTS, run_experiment, sweep_experiment

    if args.name == "sweep":
        experiment = sweep_experiment(args.set)
    elif args.set:
        raise ConfigError(f"--set is for `vicreg experiment sweep`; experiment {args.name} has fixed runs "
                          "(use --section.key value to change every run)")
    else:
        experiment = EXPERIMENTS[args.name]
    run_experiment(experiment, dataset=args.dataset, overrides=parse_overrides(args.overrides), out_dir=args.out,
                   probe_epochs=args.probe_epochs, window=args.window, force=args.force)
    return 0
