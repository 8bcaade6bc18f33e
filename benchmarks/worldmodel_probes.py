"""What the sprites encoder keeps and drops, over several seeds: linear-probe R^2 of the digit's position and
velocity and of the leaves' centroid, from the embedding and from raw pixels, for each training set-up.

    python benchmarks/worldmodel_probes.py --seeds 0 1 2 3 4 --out runs/probes

Each (set-up, seed) trains ``vicreg train --preset sprites`` with the set-up's overrides, ``train.seed`` and
``data.video.seed`` set to the seed (other frames, other sprites, other leaves), then probes the test frames as
``vicreg eval-predictor`` does (ridge on the embeddings of an evenly spread 3,200 training frames). Prints a
table of mean +- std over the seeds, writes probes.json and probes.png in --out. A few minutes per run on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from vicreg.config import build_config, parse_overrides
from vicreg.loaded_run import load_run
from vicreg.plots.style import save_figure
from vicreg.plots.worldmodel import fig_probe_table
from vicreg.training import train
from vicreg.worldmodel.probes import probe_report
from vicreg.worldmodel.sequences import embed_sequences, load_sequences, spread

# set-up name -> overrides on the sprites preset (data, not code paths)
SETUPS: dict[str, dict] = {
    "preset": {},  # 64-D embedding, expander 256-256-256
    "linear-64": {"model.expander": [64]},  # the loss on a linear map of the 64-D embedding
    "linear-16": {"model.embedding_dim": 16, "model.expander": [16]},  # ... of a 16-D embedding
    "linear-8": {"model.embedding_dim": 8, "model.expander": [8]},
}
LABELS = {"preset": "sprites preset (64-D, expander 256x3)", "linear-64": "64-D, linear expander",
          "linear-16": "16-D, linear expander", "linear-8": "8-D, linear expander"}


def probe_one(setup: str, seed: int, out: Path, probe_frames: int, epochs: int | None, extra: dict) -> dict:
    overrides = {**extra, **SETUPS[setup], "train.seed": seed, "data.video.seed": seed, "train.out_dir": str(out),
                 "train.name": f"{setup}-seed{seed}", "train.knn_every": 0}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    cfg = build_config("sprites", overrides)
    t0 = time.perf_counter()
    result = train(cfg, echo=lambda _: None)
    run = load_run(result.run_dir, "cpu")
    train_all, test = load_sequences(run.cfg, "train"), load_sequences(run.cfg, "test")
    part = train_all.select(spread(len(train_all), probe_frames // train_all.frames.shape[1]))
    report = probe_report(embed_sequences(run, part), embed_sequences(run, test), part, test)
    print(f"{setup}, seed {seed}: " + ", ".join(f"{t} {r['embedding']:.3f} (pixels {r['raw pixels']:.3f})"
                                                 for t, r in report.items())
          + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    return report


def summarise(per_seed: list[dict]) -> dict:
    """{target: {source: {"mean", "std", "values"}}} over the seeds."""
    out: dict = {}
    for target in per_seed[0]:
        out[target] = {}
        for source in per_seed[0][target]:
            values = [r[target][source] for r in per_seed]
            out[target][source] = {"mean": statistics.fmean(values),
                                   "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--epochs", type=int, default=None, help="override the preset's 30 epochs (quick checks)")
    ap.add_argument("--probe-frames", type=int, default=3200)
    ap.add_argument("--out", type=Path, default=Path("runs/probes"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for every run, e.g. data.video.sequences=100 (quick checks)")
    args = ap.parse_args(argv)
    extra = parse_overrides([f"--{kv}" for kv in args.set])
    results = {s: summarise([probe_one(s, seed, args.out, args.probe_frames, args.epochs, extra)
                             for seed in args.seeds]) for s in args.setups}
    print(f"\nlinear-probe R^2 on the test frames, mean +- std over seeds {args.seeds}")
    print(f"{'set-up':<26}{'target':<13}{'embedding':>17}{'raw pixels':>17}")
    for setup, table in results.items():
        for target, r in table.items():
            e, p = r["embedding"], r["raw pixels"]
            print(f"{setup:<26}{target:<13}{e['mean']:>10.3f} +- {e['std']:.3f}{p['mean']:>10.3f} +- {p['std']:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probes.json").write_text(json.dumps({"seeds": args.seeds, "setups": results}, indent=2))
    labelled = {LABELS[name]: table for name, table in results.items()}
    for path in save_figure(fig_probe_table(labelled, len(args.seeds)), args.out / "probes", formats=("png",)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
