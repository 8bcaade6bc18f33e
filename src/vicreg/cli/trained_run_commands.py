"""``vicreg eval``, ``plot``, ``embed`` and ``export``: the commands that look into a trained run directory."""

from __future__ import annotations

from pathlib import Path

from ..rundir import EVAL
from .options import add_device, at_least, positive


def add_trained_run_commands(sub) -> None:
    """eval, plot, embed and export: commands on a trained run directory."""
    ev = sub.add_parser("eval", help="k-NN and linear-probe accuracy of a trained run",
                        description="Weighted k-NN (cosine) and a linear probe on the frozen representation, "
                        "embedding and expander output of a run's checkpoint, and on raw pixels; prints a table "
                        "and writes RUN_DIR/eval.json.")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--k", type=at_least(1), nargs="+", default=[20, 200],
                    help="k values of the k-NN (default 20 200)")
    ev.add_argument("--temperature", type=positive, default=0.1, help="k-NN vote temperature (default 0.1)")
    ev.add_argument("--probe-epochs", type=at_least(1), default=30, help="epochs of the linear probe (default 30)")
    ev.add_argument("--no-raw-pixels", action="store_true", help="skip the raw-pixel baseline")
    add_device(ev)
    ev.set_defaults(handler=eval_command)

    pl = sub.add_parser("plot", help="pictures of a trained run",
                        description="Loss curves, k-NN over training, singular-value spectrum and per-dimension "
                        "std, collapse over training, and the test embedding (2-D scatter when E = 2, else "
                        "t-SNE) as PNG (and SVG for line plots) in RUN_DIR/plots.")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, metavar="DIR", help="output folder (default RUN_DIR/plots)")
    pl.add_argument("--window", type=at_least(1), default=200, help="batches per averaging window of the loss curves")
    pl.add_argument("--tsne-points", type=at_least(2), default=10_000, help="test points in the t-SNE (default 10000)")
    pl.add_argument("--no-svg", action="store_true", help="PNG only")
    add_device(pl, "device that embeds the test split")
    pl.set_defaults(handler=plot_command)

    em = sub.add_parser("embed", help="export representations, embeddings and labels",
                        description="Embed every image of a split with a run's checkpoint and write the "
                        "representation, embedding, projection and labels as .npz or .parquet.")
    em.add_argument("run_dir", metavar="RUN_DIR")
    em.add_argument("--split", default="test", choices=["train", "test"])
    em.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.npz or FILE.parquet")
    add_device(em)
    em.set_defaults(handler=embed_command)

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
    xp.set_defaults(handler=export_command)


def eval_command(args) -> int:
    from ..loaded_run import evaluate_run, format_eval_table

    print(f"evaluating {args.run_dir} (k-NN k={', '.join(map(str, args.k))}, linear probe {args.probe_epochs} epochs)")
    report = evaluate_run(args.run_dir, device=args.device, ks=tuple(args.k), temperature=args.temperature,
                          probe_epochs=args.probe_epochs, raw_pixels=not args.no_raw_pixels)
    print(format_eval_table(report))
    print(f"wrote {Path(args.run_dir) / EVAL} ({report['seconds']:.1f} s on {report['device']})")
    return 0


def plot_command(args) -> int:
    from ..loaded_run import embed_run
    from ..plots import plot_run

    arrays = embed_run(args.run_dir, "test", device=args.device)
    paths = plot_run(args.run_dir, outputs=arrays, class_names=[str(c) for c in arrays["classes"]], out_dir=args.out,
                     window=args.window, tsne_points=args.tsne_points,
                     formats=("png",) if args.no_svg else ("png", "svg"))
    for path in paths:
        print(f"wrote {path}")
    return 0


def export_command(args) -> int:
    from ..encoder import EXPORT_JSON, export_encoder

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


def embed_command(args) -> int:
    from ..loaded_run import embed_run, save_embeddings

    if not args.output.endswith((".npz", ".parquet")):
        raise ValueError(f"-o {args.output!r} must end in .npz or .parquet")
    arrays = embed_run(args.run_dir, args.split, device=args.device)
    path = save_embeddings(arrays, args.output)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items() if k != "classes")
    print(f"wrote {path}: {shapes}")
    return 0
