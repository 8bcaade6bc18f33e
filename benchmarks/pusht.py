"""The Push-T world model from nothing: collect episodes, train the frame encoder and its action-conditioned
predictor, then plan toward goals 5, 10, 25 and 50 steps ahead in the environment itself (``vicreg plan``: the world
model beside the pixel and state baselines, the oracle, random actions and replay, on the same 100 tasks), and
write every stage's seconds and every table to one JSON file, with the success-against-goal-distance figure and
each goal distance's pictures of the tasks beside it (its name with _success.png, _goal25_tasks.png, ...).

    python benchmarks/pusht.py --out pusht.json                 # the default sizes (2-core CPU: see docs/results.md)
    python benchmarks/pusht.py --quick --device cpu --out q.json   # tiny sizes: a dry run of the whole path

Needs Push-T: pip install "vicreg[envs]". Any PlanConfig field as --plan.key value (e.g. --plan.planner mppi).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vicreg.config import PredictorConfig, build_config, parse_overrides, plan_config
from vicreg.envs import collect
from vicreg.plots.env_planning import fig_success_by_goal
from vicreg.plots.style import save_figure
from vicreg.training import train
from vicreg.worldmodel import train_predictor
from vicreg.worldmodel.plan_command import format_plan_table, plan_run

ENV_ID = "gym_pusht/PushT-v0"
COLLECT = {"episodes": 400, "steps": 100}
QUICK_COLLECT = {"episodes": 10, "steps": 30}
QUICK_RUN = {"data.image_size": 24, "train.epochs": 1, "train.batch_size": 4, "train.diagnostics_samples": 16,
             "model.head_widths": [16], "model.expander": [32, 32]}
QUICK_PLAN = {"episodes": 4, "horizon": 2, "samples": 8, "elites": 2, "iterations": 1, "oracle_samples": 4}
PLAN = {"episodes": 100}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("pusht.json"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of the whole path")
    ap.add_argument("--workers", type=int, default=2, help="collection processes (default 2)")
    ap.add_argument("--goal-steps", type=int, nargs="+", default=[5, 10, 25, 50])
    ap.add_argument("--work", type=Path, default=None, help="where episodes and runs go (default: a temp folder)")
    args, extra = ap.parse_known_args(argv)
    plan_over = {k.removeprefix("plan."): v for k, v in parse_overrides(extra).items()}
    cfg = plan_config({**(QUICK_PLAN if args.quick else PLAN), "device": args.device, "workers": args.workers,
                       **plan_over})
    work = args.work or Path(tempfile.mkdtemp(prefix="vicreg-pusht-"))
    sizes = QUICK_COLLECT if args.quick else COLLECT
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    collected = collect(ENV_ID, work / "episodes", workers=args.workers, **sizes)
    seconds["collect"] = time.perf_counter() - t
    t = time.perf_counter()
    enc = build_config("pusht", {**(QUICK_RUN if args.quick else {}), "data.data_dir": str(work / "episodes"),
                                 "train.device": args.device, "train.out_dir": str(work / "runs"),
                                 "train.progress": False})
    run_dir = train(enc, echo=lambda _: None).run_dir
    seconds["encoder"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = PredictorConfig(epochs=2, width=32, context=2) if args.quick else PredictorConfig()
    train_predictor(run_dir, pred, device=args.device, log=lambda _: None)
    seconds["predictor"] = time.perf_counter() - t
    reports = {}
    for goal in args.goal_steps:
        t = time.perf_counter()
        reports[str(goal)] = plan_run(run_dir, replace(cfg, goal_steps=goal), log=lambda _: None)
        seconds[f"plan, goal {goal}"] = time.perf_counter() - t
        for figure in map(Path, reports[str(goal)]["figures"]):  # plan/ holds the last goal's: keep each one's
            shutil.copy(figure, args.out.with_name(f"{args.out.stem}_goal{goal}_{figure.name}"))
        print(format_plan_table(reports[str(goal)]))
    out = {"env_id": ENV_ID, "collection": collected.stats, "stage_seconds": seconds,
           "total_seconds": sum(seconds.values()), "by_goal_steps": reports, "run_dir": str(run_dir)}
    args.out.write_text(json.dumps(out, indent=2))
    by_goal = {int(k): {m: r["success_rate"] for m, r in rep["results"].items()} for k, rep in reports.items()}
    save_figure(fig_success_by_goal(by_goal, f"Push-T, {cfg.episodes} tasks per goal distance"),
                args.out.with_name(args.out.stem + "_success"), formats=("png",))
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
