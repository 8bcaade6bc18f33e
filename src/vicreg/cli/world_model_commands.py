"""``vicreg train-predictor``, ``eval-predictor`` and ``plan``: the world model on a video run's directory."""

from __future__ import annotations

from pathlib import Path

from ..config import PlanConfig, PredictorConfig, parse_overrides
from ..rundir import EVAL, PLAN, PLAN_REPORT, PREDICTOR
from .options import add_device, at_least, defaults


def add_world_model_commands(sub) -> None:
    """train-predictor, eval-predictor and plan."""
    tp = sub.add_parser("train-predictor", help="train the JEPA predictor on a video run's frozen embeddings",
                        description="Embed every frame of the run's video sequences (data.dataset sprites or "
                        "moving-mnist) with its encoder and train a predictor of the next frame's embedding from "
                        "the last --predictor.context ones (and the pushes, when the sequences have them). Any "
                        "PredictorConfig field as --predictor.key value, e.g. --predictor.model transformer "
                        "--predictor.epochs 50 --predictor.joint true. Fields and defaults: "
                        + defaults(PredictorConfig())
                        + ". Writes RUN_DIR/predictor/, replacing the predictor trained before.")
    tp.add_argument("run_dir", metavar="RUN_DIR")
    add_device(tp)
    tp.set_defaults(handler=train_predictor_command, takes_overrides=True)
    ep = sub.add_parser("eval-predictor", help="roll-out errors, probes and pictures of a trained predictor",
                        description="Autoregressive roll-out error of the predicted embedding at each horizon "
                        "against 'next = last' and linear extrapolation; linear-probe R^2 of positions, "
                        "velocities and distractors from the embedding and from raw pixels; the real next frames "
                        "beside the training frames nearest to the predictions. Writes RUN_DIR/predictor/eval.json "
                        "and pictures.")
    ep.add_argument("run_dir", metavar="RUN_DIR")
    ep.add_argument("--horizons", type=at_least(1), nargs="+", default=[1, 2, 4, 8],
                    help="roll-out horizons (default 1 2 4 8)")
    ep.add_argument("--sequences", type=at_least(1), default=4, help="test sequences in the picture (default 4)")
    ep.add_argument("--probe-frames", type=at_least(10), default=3200,
                    help="training frames (whole sequences, evenly spread) that train the probes (default 3200)")
    add_device(ep)
    ep.set_defaults(handler=eval_predictor_command)
    _add_plan_command(sub)


def _add_plan_command(sub) -> None:
    from ..worldmodel.env_plan import ENV_METHODS
    from ..worldmodel.plan_command import METHODS

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
                        + defaults(PlanConfig())
                        + ". Writes RUN_DIR/plan/.")
    pp.add_argument("run_dir", metavar="RUN_DIR")
    pp.add_argument("--methods", nargs="+", default=None, choices=list(dict.fromkeys([*METHODS, *ENV_METHODS])),
                    metavar="METHOD", help=f"what to compare (default: all of {', '.join(METHODS)}; in an "
                    f"environment: {', '.join(ENV_METHODS)}; quote 'world model')")
    pp.add_argument("--horizons", type=at_least(1), nargs="*", default=[],
                    help="also plan with the world model at these horizons (with the run's leaves): the "
                    "success-vs-horizon curve, e.g. --horizons 1 2 4 8")
    pp.set_defaults(handler=plan_command, takes_overrides=True)


def train_predictor_command(args) -> int:
    from ..worldmodel import load_predictor_config, train_predictor

    cfg = load_predictor_config(parse_overrides(args.overrides))
    result = train_predictor(args.run_dir, cfg, device=args.device)
    last = result.history[-1] if result.history else {}
    print("last epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if isinstance(v, float)))
    print(f"next: vicreg eval-predictor {args.run_dir}")
    return 0


def plan_command(args) -> int:
    from ..config import plan_config
    from ..worldmodel.plan_command import format_plan_table, plan_run

    cfg = plan_config({k.removeprefix("plan."): v for k, v in parse_overrides(args.overrides).items()})
    report = plan_run(args.run_dir, cfg, methods=args.methods, horizons=tuple(args.horizons))
    print(format_plan_table(report))
    for path in report.get("figures", []):
        print(f"wrote {path}")
    print(f"wrote {Path(args.run_dir) / PLAN / PLAN_REPORT} ({report['seconds']:.1f} s on {report['device']})")
    return 0


def eval_predictor_command(args) -> int:
    from ..worldmodel import evaluate_predictor, format_rollout_table

    report = evaluate_predictor(args.run_dir, device=args.device, horizons=tuple(args.horizons),
                                figure_sequences=args.sequences, probe_frames=args.probe_frames)
    print(format_rollout_table(report))
    for path in report.get("figures", []):
        print(f"wrote {path}")
    print(f"wrote {Path(args.run_dir) / PREDICTOR / EVAL} ({report['seconds']:.1f} s)")
    return 0
