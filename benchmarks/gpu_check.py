"""The GPU check: what a session with a GPU should measure, in five to ten minutes, into one JSON file.

    make gpu-check                     # = python benchmarks/gpu_check.py --out gpu_check.json
    python benchmarks/gpu_check.py --quick --device cpu     # the same path on a CPU, tiny (a dry run)

Parts, each a subprocess with its own time limit (150, 3 x 180, 240 and 240 s), so that one failure or
overrun leaves the others' figures in the file (with its return code and the tail of its output); the
throughput part runs three presets, 180 s each at most:

1. ``pytest -m cuda``: the CUDA-only tests (per-view batch norm on the GPU, the compiled step under CUDA
   graphs for the forward and loss and for the whole update, the asynchronous metrics path, data on the GPU).
2. ``benchmarks/throughput.py``: the default step first, then the eager, whole-update and joint-BN variants,
   on ResNet-18 at 32x32x3 and 28x28x1, batch 512 (images/s, ms/step, share of the bf16 peak, compile time);
   the default and eager steps of the vit-tiny-fashion preset (timm's ViT-Tiny, 4x4 patches, 28x28x1).
3. ``benchmarks/time_to_accuracy.py``: the resnet18-fashion preset as it ships, training seconds to
   k-NN@20 of 88, 89, 90 and 91 % on the Fashion-MNIST test set (``--fashion-dir``: the IDX .gz files).
4. ``benchmarks/planning.py``: the sprites-control encoder and predictor trained on the device, then
   ``vicreg plan`` on 200 episodes (world model, oracle, random; leaves on and off; horizons 2, 4, 8).

The JSON holds the device, torch's version, each part's figures and the wall time of each part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, cmd: list[str], timeout: int, report: dict) -> None:
    """Run one part; record its return code, seconds and output tail in report[name]."""
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:  # keep what it printed before the limit, both streams
        def text(b: bytes | str | None) -> str:
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")

        rc, out = "timeout", text(e.stdout) + text(e.stderr)
    seconds = round(time.perf_counter() - start, 1)
    tail = out[-3000:]
    print(tail, flush=True)
    report.setdefault(name, {}).update({"rc": rc, "seconds": seconds, "output_tail": tail})


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--fashion-dir", default=None,
                   help="folder with Fashion-MNIST's IDX .gz files (default: .data/fashion-mnist, else Debian's)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a dry run of the whole check (e.g. on a CPU)")
    p.add_argument("--skip", default="",
                   help="comma-separated parts to leave out: tests, throughput, accuracy, planning")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    candidates = (ROOT / ".data/fashion-mnist", Path("/usr/share/datasets/fashion-mnist"))
    fashion = args.fashion_dir or next((d for d in candidates if d.is_dir()), None)
    import torch

    report: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                    "torch": torch.__version__, "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="vicreg-gpu-check-"))
    t0 = time.perf_counter()

    if "tests" not in skip:
        run("cuda_tests", [py, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider"], 150, report)

    if "throughput" not in skip:
        quick = ["--steps", "2", "--warmup", "1", "--images", "256", "--batch-size", "32",
                 "--model.expander", "64,64"] if args.quick else ["--steps", "30", "--warmup", "10",
                                                                 "--images", "20000", "--batch-size", "512"]
        # each compiled variant compiles once (tens of seconds): the default and the whole update on 32x32,
        # the default and joint batch norm on 28x28; eager as the before-and-after of compilation
        for name, preset, variants in (("throughput_32x32x3", "resnet18-cifar", "ours,eager,step"),
                                       ("throughput_28x28x1", "resnet18-fashion", "ours,joint,eager"),
                                       ("throughput_vit_28x28x1", "vit-tiny-fashion", "ours,eager")):
            out = tmp / f"{name}.json"
            run(name, [py, "benchmarks/throughput.py", "--preset", preset, "--device", args.device, "--variants",
                       variants, "--json", str(out), *quick], 180 if not args.quick else 300, report)
            report[name]["figures"] = load_json(out)

    if "accuracy" not in skip:
        if fashion is None:
            report["time_to_accuracy"] = {"rc": "skipped", "why": "no Fashion-MNIST folder (--fashion-dir)"}
        else:
            out = tmp / "tta.json"
            extra = (["--data.limit_train", "1024", "--data.limit_test", "500", "--train.epochs", "2",
                      "--train.batch_size", "64", "--model.expander", "64,64"] if args.quick else [])
            run("time_to_accuracy", [py, "benchmarks/time_to_accuracy.py", "--preset", "resnet18-fashion",
                                     "--device", args.device, "--targets", "88,89,90,91", "--data.data_dir",
                                     str(fashion), "--json", str(out), "--train.progress", "false", *extra],
                240 if not args.quick else 600, report)
            report["time_to_accuracy"]["figures"] = load_json(out)

    if "planning" not in skip:
        out = tmp / "planning.json"
        extra = ["--quick"] if args.quick else ["--methods", "world model", "oracle", "random", "--horizons", "2",
                                                "4", "8"]
        run("planning", [py, "benchmarks/planning.py", "--device", args.device, "--out", str(out), *extra],
            240 if not args.quick else 300, report)
        report["planning"]["figures"] = load_json(out)

    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out} ({report['total_seconds']} s)")
    failed = [k for k, v in report.items() if isinstance(v, dict) and v.get("rc") not in (0, "skipped", None)]
    if failed:
        print(f"parts that failed or ran out of time: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
