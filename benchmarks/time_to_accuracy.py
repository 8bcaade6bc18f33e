"""Time to accuracy: training seconds until the k-NN@20 top-1 on the test set first reaches each target.

Trains one run with ``vicreg.train`` (the same code as ``vicreg train``) and a k-NN evaluation of the
embedding after every epoch (``--knn-every``). The clock counts training only: it is paused, after
waiting for the device, while the k-NN evaluation, the collapse diagnostics and checkpoints run
(the ``train_seconds`` column of the run's knn.csv). Compilation and cuDNN autotuning in the first
steps are counted.

    python benchmarks/time_to_accuracy.py                                  # ResNet-18 on Fashion-MNIST
    python benchmarks/time_to_accuracy.py --preset seed --data.dataset fashion-mnist
    python benchmarks/time_to_accuracy.py --train.epochs 30 --train.compile     # any config override
    python benchmarks/time_to_accuracy.py --device cpu --data.limit_train 2048 --data.limit_test 1000 \\
        --train.epochs 3 --train.batch_size 128 --targets 50,60,70                # CPU, small

Prints, per target, the epoch and the training seconds at which it was first reached (or "not
reached" and the best value), and the run directory; ``--json`` writes the same to a file.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from vicreg.config import build_config, parse_overrides
from vicreg.rundir import KNN
from vicreg.training import train


def first_reached(knn_csv: Path, k: int, targets: list[float]) -> tuple[dict[float, dict | None], list[dict]]:
    """{target: the first knn.csv row (step, epoch, seconds, accuracy) at or above it, or None}, all rows."""
    with open(knn_csv, newline="") as f:
        rows = [{"step": int(r["step"]), "epoch": float(r["epoch"]), "seconds": float(r["train_seconds"]),
                 "accuracy": float(r[f"knn@{k}"])} for r in csv.DictReader(f)]
    return {t: next((r for r in rows if r["accuracy"] >= t), None) for t in targets}, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="resnet18-fashion")
    p.add_argument("--targets", default="88,89,90,91", help="k-NN top-1 targets in %%, comma-separated")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--knn-every", type=int, default=1, help="epochs between evaluations")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args, extra = p.parse_known_args(argv)
    targets = sorted(float(t) for t in args.targets.split(","))
    over = {"train.device": args.device, "train.knn_every": args.knn_every, "train.knn_k": [args.k],
            "train.checkpoint_every": 0, **parse_overrides(extra)}
    cfg = build_config(args.preset, over)
    run_dir = args.out or Path(tempfile.mkdtemp(prefix="vicreg-tta-")) / "run"
    result = train(cfg, run_dir=run_dir)
    reached, rows = first_reached(run_dir / KNN, args.k, targets)

    print()
    print(f"{args.preset}: {cfg.model.backbone} on {cfg.data.dataset}, batch {cfg.train.batch_size}, "
          f"{cfg.train.epochs} epochs, {result.images_per_s:,.0f} two-view img/s, {result.seconds:.1f} s of training")
    print(f"{'k-NN@' + str(args.k):>10} {'epoch':>7} {'train s':>9}")
    for t in targets:
        r = reached[t]
        if r is None:
            best = max(rows, key=lambda row: row["accuracy"])
            print(f"{t:>9.0f}% {'not reached (best ' + format(best['accuracy'], '.2f') + '% at epoch '}"
                  f"{best['epoch']:g})")
        else:
            print(f"{t:>9.0f}% {r['epoch']:>7g} {r['seconds']:>9.1f}")
    print(f"final k-NN@{args.k}: {rows[-1]['accuracy']:.2f}% after {rows[-1]['seconds']:.1f} s; run: {run_dir}")
    if args.json:
        args.json.write_text(json.dumps({
            "preset": args.preset, "config_overrides": {k: str(v) for k, v in over.items()},
            "images_per_s": result.images_per_s, "train_seconds": result.seconds,
            "targets": {str(t): reached[t] for t in targets}, "evaluations": rows, "run_dir": str(run_dir)}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
