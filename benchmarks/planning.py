"""Planning with the world model from nothing: train the sprites-control encoder, its predictor, then plan
toward goal frames (``vicreg plan``), and write every stage's seconds and the table to one JSON file.

    python benchmarks/planning.py --out planning.json                  # the README's figures (2-core CPU: ~15 min)
    python benchmarks/planning.py --quick --device cpu --out p.json    # tiny sizes: a dry run

Any PlanConfig field as --plan.key value (e.g. --plan.episodes 50 --plan.planner mppi); --methods and
--horizons as for ``vicreg plan``. Part of ``make gpu-check``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vicreg.config import PredictorConfig, build_config, parse_overrides, plan_config
from vicreg.training import train
from vicreg.worldmodel import train_predictor
from vicreg.worldmodel.plan_command import METHODS, format_plan_table, plan_run

QUICK_RUN = {"data.video.sequences": 24, "data.video.test_sequences": 8, "data.video.length": 8,
             "train.epochs": 1, "train.batch_size": 16, "train.knn_every": 0, "train.diagnostics_samples": 64,
             "train.knn_k": [5, 20], "model.head_widths": [16], "model.expander": [32, 32]}
QUICK_PLAN = {"episodes": 8, "steps": 4, "horizon": 2, "samples": 8, "elites": 2, "iterations": 1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("planning.json"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of the whole path")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--horizons", type=int, nargs="*", default=[1, 2, 4, 8, 12])
    ap.add_argument("--runs", type=Path, default=None, help="where the encoder run goes (default: a temp folder)")
    args, extra = ap.parse_known_args(argv)
    plan_over = {k.removeprefix("plan."): v for k, v in parse_overrides(extra).items()}
    cfg = plan_config({**(QUICK_PLAN if args.quick else {}), "device": args.device, **plan_over})
    runs = args.runs or Path(tempfile.mkdtemp(prefix="vicreg-planning-"))
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    enc = build_config("sprites-control", {**(QUICK_RUN if args.quick else {}), "train.device": args.device,
                                           "train.out_dir": str(runs), "train.progress": False})
    run_dir = train(enc, echo=lambda _: None).run_dir
    seconds["encoder"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = PredictorConfig(epochs=2, width=32, context=2) if args.quick else PredictorConfig()
    train_predictor(run_dir, pred, device=args.device, log=lambda _: None)
    seconds["predictor"] = time.perf_counter() - t
    t = time.perf_counter()
    report = plan_run(run_dir, cfg, methods=args.methods, horizons=args.horizons if not args.quick else [1, 2],
                      log=print)
    seconds["plan"] = time.perf_counter() - t
    print(format_plan_table(report))
    args.out.write_text(json.dumps({**report, "stage_seconds": seconds, "run_dir": str(run_dir)}, indent=2))
    print(f"wrote {args.out}: encoder {seconds['encoder']:.1f} s, predictor {seconds['predictor']:.1f} s, "
          f"planning {seconds['plan']:.1f} s on {report['device']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
