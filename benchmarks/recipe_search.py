"""Recipe search: which optimiser settings learn best in a preset's epoch budget (k-NN@20 on the test set).

Trains one run per variant with ``vicreg.train`` (the same code as ``vicreg train``), evaluates the
k-NN accuracy of the embedding after every epoch and prints a table: the final and best k-NN@20, the
training seconds (evaluation excluded) and the throughput; ``--json``/``--markdown`` write the same.
Every variant is a set of config overrides on top of the preset and the common ``--key value`` flags.

    # the default grid (LARS trust coefficient, learning rate, warm-up, crop scale) on the full preset (GPU)
    python benchmarks/recipe_search.py --preset resnet18-fashion
    # the same grid at reduced scale on 2 CPU cores (about 4 minutes a run)
    python benchmarks/recipe_search.py --preset resnet18-fashion --device cpu --data.limit_train 2048 \\
        --data.limit_test 1000 --train.epochs 3 --train.batch_size 128 --optim.warmup_epochs 1
    # the ViT preset's grid (learning rate, weight decay) at the same reduced scale
    python benchmarks/recipe_search.py --preset vit-tiny-fashion --device cpu --data.limit_train 2048 \\
        --data.limit_test 1000 --train.epochs 3 --train.batch_size 128 --optim.warmup_epochs 1
    # your own grid: the product of the listed values
    python benchmarks/recipe_search.py --set optim.eta=0.01,0.02,0.05 --set optim.lr=0.3,0.6

The grids are data (GRIDS below, one per preset): edit them, or pass ``--set`` (repeatable) to replace one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from vicreg.config import build_config, parse_overrides
from vicreg.rundir import read_knn, read_summary
from vicreg.training import train


def _crop(low: float) -> dict:
    return {"augment.view_a.crop_scale": [low, 1.0], "augment.view_b.crop_scale": [low, 1.0]}


# label -> overrides, one grid per preset (GRIDS; the ResNet grid for a preset not listed). The ResNet grid's first
# row is the recipe before its search (LARS eta 0.001, the paper's ImageNet value); then the trust coefficient,
# the learning rate and the crop scale one at a time around eta 0.02.
GRID: dict[str, dict] = {
    "eta 0.001 (before)": {"optim.eta": 0.001},
    "eta 0.005": {"optim.eta": 0.005},
    "eta 0.02": {"optim.eta": 0.02},
    "eta 0.05": {"optim.eta": 0.05},
    "eta 0.1": {"optim.eta": 0.1},
    "eta 0.02, lr 0.6": {"optim.eta": 0.02, "optim.lr": 0.6},
    "eta 0.02, crop 0.2": {"optim.eta": 0.02, **_crop(0.2)},
}

# The ViT's AdamW learning rate (x batch / 256) around the ViT SSL recipes' 5e-4 (DINO, MoCo v3: 1.5e-4 to 5e-4),
# and its weight decay (0.05 against the ResNet presets' 1e-4).
VIT_GRID: dict[str, dict] = {
    "lr 2.5e-4": {"optim.lr": 2.5e-4},
    "lr 5e-4 (preset)": {"optim.lr": 5e-4},
    "lr 1e-3": {"optim.lr": 1e-3},
    "lr 2e-3": {"optim.lr": 2e-3},
    "lr 1e-3, weight decay 1e-4": {"optim.lr": 1e-3, "optim.weight_decay": 1e-4},
}

GRIDS: dict[str, dict[str, dict]] = {"vit-tiny-fashion": VIT_GRID}


def grid_from_sets(items: list[str]) -> dict[str, dict]:
    """["optim.eta=0.01,0.02", "optim.lr=0.3,0.6"] -> {label: overrides} over the product of the values."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            sys.exit(f"--set {item!r} is not valid: expected key=v1,v2,... (e.g. optim.eta=0.01,0.02)")
        axes.append([(key.strip(), yaml.safe_load(v)) for v in values.split(",")])
    return {", ".join(f"{k}={v}" for k, v in combo): dict(combo) for combo in itertools.product(*axes)}


def knn_curve(run_dir: Path, k: int) -> list[dict]:
    knn = read_knn(run_dir)
    if knn is None:
        return []
    return [{"epoch": float(e), "seconds": float(s), "accuracy": float(a)}
            for e, s, a in zip(knn["epoch"], knn["train_seconds"], knn[f"knn@{k}"])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="resnet18-fashion")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2", help="replace the grid (repeat: product)")
    p.add_argument("--only", default=None, help="comma-separated labels of GRID to run (default: all)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="parent of the run directories (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="write the table to this JSON file")
    p.add_argument("--markdown", type=Path, default=None, help="write the table to this Markdown file")
    args, extra = p.parse_known_args(argv)
    grid = grid_from_sets(args.set) if args.set else dict(GRIDS.get(args.preset, GRID))
    if args.only:
        wanted = [s.strip() for s in args.only.split(",")]
        unknown = [w for w in wanted if w not in grid]
        if unknown:
            sys.exit(f"--only {', '.join(unknown)}: not in the grid ({'; '.join(grid)})")
        grid = {w: grid[w] for w in wanted}
    common = {"train.device": args.device, "train.knn_every": 1, "train.knn_k": [args.k],
              "train.checkpoint_every": 0, "train.progress": False, **parse_overrides(extra)}
    out = args.out or Path(tempfile.mkdtemp(prefix="vicreg-recipes-"))
    rows = []
    for i, (label, overrides) in enumerate(grid.items(), 1):
        cfg = build_config(args.preset, {**common, **overrides})
        run_dir = out / f"{i:02d}"
        print(f"[{i}/{len(grid)}] {label}: {run_dir}", flush=True)
        result = train(cfg, run_dir=run_dir, echo=lambda m: None)
        curve = knn_curve(run_dir, args.k)
        best = max(curve, key=lambda r: r["accuracy"])
        summary = read_summary(run_dir)
        row = {"variant": label, "overrides": overrides, "final": curve[-1]["accuracy"], "best": best["accuracy"],
               "best_epoch": best["epoch"], "train_seconds": result.seconds, "images_per_s": result.images_per_s,
               "raw_pixels": summary["knn_raw_pixels"].get(str(args.k)), "device": summary["device"], "curve": curve}
        rows.append(row)
        print(f"    k-NN@{args.k} final {row['final']:.2f} %, best {row['best']:.2f} % (epoch {best['epoch']:g}), "
              f"raw pixels {row['raw_pixels']:.2f} %, {row['train_seconds']:.0f} s", flush=True)

    cfg = build_config(args.preset, common)
    head = (f"{args.preset} ({cfg.model.backbone} on {cfg.data.dataset}), {cfg.train.epochs} epochs of batch "
            f"{cfg.train.batch_size}, device {rows[0]['device']}; k-NN@{args.k} on the test split")
    table = [f"| variant | final k-NN@{args.k} | best (epoch) | train s | img/s |", "|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['variant']} | {r['final']:.2f} | {r['best']:.2f} ({r['best_epoch']:g}) | "
                     f"{r['train_seconds']:.0f} | {r['images_per_s']:,.0f} |")
    table.append(f"| raw pixels | {rows[0]['raw_pixels']:.2f} | | | |")
    print()
    print(head)
    print("\n".join(table))
    if args.markdown:
        args.markdown.write_text(head + "\n\n" + "\n".join(table) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "common": {k: str(v) for k, v in common.items()},
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
