"""Training throughput of VICReg: the reference way and ours, same model, same data, one process run.

Variants (``--variants``, comma-separated, in the order given):

    reference  the way the official code and most examples train: uint8 images as PIL images in a
               DataLoader with ``--workers`` worker processes, torchvision transforms per sample (the same
               recipe as ours: random resized crop, flip, colour jitter, grayscale, blur, solarisation as
               configured), one forward per view, fp32, NCHW, the preset's optimiser (LARS, AdamW or SGD)
               looping over the parameters.
    ours       ``vicreg train``'s defaults (vicreg.step.Step), printed first: both views in one forward with
               per-view batch norm (no concatenation), multi-tensor optimiser (foreach LARS, fused
               AdamW/SGD on CUDA), no host sync in the step, and on CUDA ``train.compile=auto``: the forward
               and loss compiled under CUDA graphs (compile_mode reduce-overhead). Eager on the CPU.
    plain      our data and augmentation (uint8 dataset resident on the device, batched per-sample
               augmentation there), bf16 autocast and channels_last on CUDA, but one forward per view, the
               optimiser looping over the parameters and no compilation: the "plain fast loop".
    eager      ours with train.compile=false (what the default was before compilation on CUDA).
    joint      ours with train.batchnorm=joint (BN statistics over both views together: other maths).
    compile    ours with train.compile=true, compile_mode "default" (no CUDA graphs).
    step       ours with train.compile_scope=step: forward, loss, backward and the optimiser update in one
               compiled region (opt-in until a GPU check has measured it).

Measured for each: two-view images per second (2 x batch x steps / seconds) over ``--steps`` steps
after ``--warmup`` untimed ones (compilation happens there), with the device synchronised at both ends;
milliseconds per step; peak device memory (CUDA). For ``ours``: the model FLOPs of one step (forward and
backward of both views, torch.utils.flop_counter), the achieved TFLOP/s and its share of the device's
dense bf16 peak; the time of the augmentation alone; on CUDA, how many times one step makes the host
wait for the device (torch.cuda.set_sync_debug_mode). ``--profile N`` prints torch.profiler's table of
N steps of ``ours``.

    python benchmarks/throughput.py --preset resnet18-cifar --batch-size 512             # 32x32 RGB
    python benchmarks/throughput.py --preset resnet18-fashion --batch-size 512           # 28x28 grey
    python benchmarks/throughput.py --preset resnet18-cifar --batch-size 64 --steps 5 --warmup 2 \\
        --variants ours,reference,plain --device cpu                                      # CPU, small

Data: ``--data synthetic`` (default; random uint8 images of the preset dataset's shape, which costs
the same to train on as real ones) or ``--data real`` (the preset's dataset through vicreg.data, e.g.
Fashion-MNIST from ``--data-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from vicreg.augment import TwoViews
from vicreg.backbones import input_size
from vicreg.config import Config, ViewAugment, build_config
from vicreg.data import load_dataset
from vicreg.data.dataset import channel_stats
from vicreg.device import resolve_device, synchronize
from vicreg.models import build_model
from vicreg.optim import LARS, param_groups, peak_lr
from vicreg.step import Step, make_loss_fn, plan_step

SHAPES = {"cifar10": (3, 32), "cifar100": (3, 32), "stl10": (3, 96), "fashion-mnist": (1, 28), "mnist": (1, 28),
          "digits": (1, 8)}

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets; matched in order
# against torch.cuda.get_device_name(). --peak-tflops overrides.
PEAK_BF16_TFLOPS = [("H200", 989.4), ("GH200", 989.4), ("H100 PCIe", 756.5), ("H100 NVL", 835.5), ("H100", 989.4),
                    ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0),
                    ("RTX 4090", 165.2), ("RTX 3090", 71.0), ("V100", 125.0)]

VARIANTS = {  # name -> train overrides on top of the preset (reference is built apart)
    "ours": {},
    "plain": {"train.stack_views": False, "train.compile": False},
    "eager": {"train.compile": False},
    "joint": {"train.batchnorm": "joint"},
    "compile": {"train.compile": True, "train.compile_mode": "default"},
    "step": {"train.compile": True, "train.compile_scope": "step"},
}


@dataclass
class Measured:
    variant: str
    images_per_s: float
    ms_per_step: float
    peak_memory_gb: float | None
    steps: int
    tflops: float | None = None  # model FLOPs per step / seconds per step
    fraction_of_peak: float | None = None  # of the device's dense bf16 peak


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def training_images(cfg: Config, source: str, n: int) -> torch.Tensor:
    """uint8 (N, C, H, W) on the CPU: the preset dataset's shape filled with noise, or the real images."""
    if source == "real":
        return load_dataset(cfg.data, log=lambda m: print("data:", m)).train.images[:n]
    if cfg.data.dataset not in SHAPES:
        sys.exit(f"--data synthetic does not know the shape of {cfg.data.dataset!r}; use --data real")
    c, s = SHAPES[cfg.data.dataset]
    return torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def torchvision_view(v: ViewAugment, size: int, channels: int):
    """The torchvision (PIL, one image at a time) transform of one view of our recipe."""
    import torchvision.transforms as T

    ops = [T.RandomResizedCrop(size, scale=v.crop_scale, ratio=v.crop_ratio, antialias=True)]
    if v.flip_p > 0:
        ops.append(T.RandomHorizontalFlip(v.flip_p))
    if v.rotation > 0:
        ops.append(T.RandomRotation(v.rotation))
    saturation, hue = (v.saturation, v.hue) if channels == 3 else (0.0, 0.0)
    if v.jitter_p > 0:
        ops.append(T.RandomApply([T.ColorJitter(v.brightness, v.contrast, saturation, hue)], p=v.jitter_p))
    if v.grayscale_p > 0 and channels == 3:
        ops.append(T.RandomGrayscale(v.grayscale_p))
    if v.blur_p > 0:
        kernel = 2 * max(1, round(3 * v.blur_sigma[1])) + 1
        ops.append(T.RandomApply([T.GaussianBlur(kernel, v.blur_sigma)], p=v.blur_p))
    if v.solarize_p > 0:
        ops.append(T.RandomSolarize(128, p=v.solarize_p))
    ops.append(T.ToTensor())
    return T.Compose(ops)


class PILTwoViews(torch.utils.data.Dataset):
    """The reference pipeline's dataset: item i -> two augmented float views of image i (via PIL)."""

    def __init__(self, images: torch.Tensor, cfg: Config, size: int):
        self.images = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8, as PIL wants
        c = images.shape[1]
        self.mode = "L" if c == 1 else "RGB"
        self.view_a = torchvision_view(cfg.augment.view_a, size, c)
        self.view_b = torchvision_view(cfg.augment.view_b, size, c)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        x = self.images[i]
        img = Image.fromarray(x[..., 0] if self.mode == "L" else x, mode=self.mode)
        return self.view_a(img), self.view_b(img)


# --------------------------------------------------------------------------------------------
# The timed loops
# --------------------------------------------------------------------------------------------


def timed(step, warmup: int, steps: int, device: torch.device) -> tuple[float, float | None]:
    """Run ``step()`` warmup + steps times; seconds of the last ``steps`` (device synchronised) and the
    peak device memory in GB over all of them (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return seconds, peak


def one_at_a_time_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The preset's optimiser updating one parameter at a time (the stock loop: foreach and fused off)."""
    o, bs = cfg.optim, cfg.train.batch_size
    if o.name == "lars":
        return LARS([p for p in model.parameters() if p.requires_grad], lr=peak_lr(o, bs),
                    weight_decay=o.weight_decay, momentum=o.momentum, eta=o.eta, foreach=False)
    groups = param_groups(model, o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=peak_lr(o, bs), betas=o.betas, foreach=False)
    return torch.optim.SGD(groups, lr=peak_lr(o, bs), momentum=o.momentum, foreach=False)


def run_reference(cfg: Config, images: torch.Tensor, size: int, device: torch.device, workers: int, warmup: int,
                  steps: int) -> Measured:
    bs = cfg.train.batch_size
    mean, std = channel_stats(images)
    model = build_model(cfg.model, images.shape[1], mean, std, size).to(device).train()
    optimizer = one_at_a_time_optimizer(cfg, model)
    loss_fn = make_loss_fn(model, cfg.loss, stack=False, amp=None, channels_last=False)
    loader = torch.utils.data.DataLoader(PILTwoViews(images, cfg, size), batch_size=bs, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            xa, xb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xa, xb = next(batches)
        xa, xb = xa.to(device, non_blocking=True), xb.to(device, non_blocking=True)
        terms = loss_fn(xa, xb)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()

    seconds, peak = timed(step, warmup, steps, device)
    return Measured("reference", 2 * bs * steps / seconds, 1000 * seconds / steps, peak, steps)


class Ours:
    """vicreg's training step under a config: resident uint8 data, GPU augmentation, vicreg.step.Step (or, for
    the plain loop, one forward per view and the optimiser one parameter at a time, uncompiled)."""

    def __init__(self, cfg: Config, images: torch.Tensor, size: int, device: torch.device):
        self.cfg, self.device, self.bs = cfg, device, cfg.train.batch_size
        mean, std = channel_stats(images)
        self.model = build_model(cfg.model, images.shape[1], mean, std, size).to(device).train()
        # stacked views: the step's own optimiser, at the peak learning rate as build_optimizer leaves it; the
        # plain loop updates one parameter at a time (ours uses multi-tensor kernels)
        optimizer = None if cfg.train.stack_views else one_at_a_time_optimizer(cfg, self.model)
        self.step_fn = Step(self.model, cfg, device, log=print, optimizer=optimizer)
        self.optimizer = self.step_fn.optimizer
        self.augment = TwoViews(cfg.augment, size).to(device)
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.images = images.to(device)
        self.order = torch.randperm(len(images), device=device)
        self.i = 0

    def batch(self) -> torch.Tensor:
        if (self.i + 1) * self.bs > len(self.order):
            self.order, self.i = torch.randperm(len(self.order), device=self.device), 0
        idx = self.order[self.i * self.bs:(self.i + 1) * self.bs]
        self.i += 1
        return self.images.index_select(0, idx)

    def step(self) -> torch.Tensor:
        return self.step_fn(self.batch(), self.augment, self.generator)

    def flops_per_step(self) -> int:
        """Model FLOPs of one step (forward + backward, both views), counted on the uncompiled model."""
        from torch.utils.flop_counter import FlopCounterMode

        plan, _ = plan_step(self.cfg, self.device)
        loss_fn = make_loss_fn(self.model, self.cfg.loss, stack=plan.stack, amp=plan.amp,
                               channels_last=plan.channels_last)
        xa, xb = self.augment(self.batch(), self.generator)
        with FlopCounterMode(display=False) as counter:
            loss_fn(xa, xb).loss.backward()
        self.model.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    def host_syncs(self) -> int | None:
        """How many times one step waits for the device (CUDA's sync debug mode); None on the CPU."""
        if self.device.type != "cuda":
            return None
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                self.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    def augment_ms(self, reps: int = 20) -> float:
        images = self.batch()
        for _ in range(3):
            self.augment(images, self.generator)
        synchronize(self.device)
        t0 = time.perf_counter()
        for _ in range(reps):
            self.augment(images, self.generator)
        synchronize(self.device)
        return 1000 * (time.perf_counter() - t0) / reps


def profile(ours: Ours, steps: int, out: Path | None) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ours.device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            ours.step()
        synchronize(ours.device)
    key = "self_cuda_time_total" if ours.device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    print(events.table(sort_by=key, row_limit=25))
    aten = [e for e in events if e.key.startswith("aten::")]
    total = sum(getattr(e, key) for e in events) or 1
    cat = next((getattr(e, key) for e in events if e.key == "aten::cat"), 0)
    summary = {"aten_ops_per_step": sum(e.count for e in aten) / steps, "distinct_aten_ops": len(aten),
               "cat_share": cat / total}
    print(f"profile: {summary['aten_ops_per_step']:.0f} aten op calls per step ({len(aten)} distinct), "
          f"aten::cat {100 * summary['cat_share']:.1f} % of the self {'CUDA' if 'cuda' in key else 'CPU'} time")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(out / "trace.json"))
        print(f"chrome trace: {out / 'trace.json'} (open in https://ui.perfetto.dev)")
    return summary


def device_peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or "CPU", None
    name = torch.cuda.get_device_name(device)
    return name, next((tf for key, tf in PEAK_BF16_TFLOPS if key in name), None)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="resnet18-cifar", help="model, loss, optimiser and augmentation of this preset")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--variants", default="ours,reference,plain,eager,joint",
                   help=f"comma-separated: reference, {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=50, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps first (compilation, cuDNN autotuning)")
    p.add_argument("--workers", type=int, default=min(10, os.cpu_count() or 1),
                   help="DataLoader workers of the reference way (the official code uses 10 per GPU)")
    p.add_argument("--data", choices=["synthetic", "real"], default="synthetic")
    p.add_argument("--data-dir", default=None, help="with --data real: where the dataset is")
    p.add_argument("--images", type=int, default=50_000, help="training images held (synthetic) or used (real)")
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not in the table")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="profile N steps of 'ours' and print the table")
    p.add_argument("--profile-dir", type=Path, default=None, help="also write a chrome trace there")
    p.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args, extra = p.parse_known_args(argv)  # the rest: config overrides for every variant (--model.expander 512,512)
    from vicreg.config import parse_overrides

    over = {"train.batch_size": args.batch_size, "train.device": args.device, **parse_overrides(extra)}
    if args.data_dir:
        over["data.data_dir"] = args.data_dir
    base = build_config(args.preset, over)
    device = resolve_device(args.device)
    images = training_images(base, args.data, args.images)
    if len(images) < args.batch_size:
        sys.exit(f"--images {len(images)} is smaller than --batch-size {args.batch_size}")
    size = input_size(base.model.backbone, int(images.shape[-1]), base.data.image_size, log=print)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name, peak = device_peak_tflops(device)
    peak = args.peak_tflops or peak
    print(f"{base.model.backbone}, {images.shape[1]}x{size}x{size} input, batch {args.batch_size} (x2 views), "
          f"{args.data} data ({len(images)} images), torch {torch.__version__}, device {device} ({name}), "
          f"{torch.get_num_threads()} CPU threads, {args.workers} loader workers for the reference")

    results: list[Measured] = []
    extra_figures: dict = {}
    flops = None  # model FLOPs of one step: the same for every variant (same model, batch and views)
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if variant == "reference":
            m = run_reference(base, images, size, device, args.workers, args.warmup, args.steps)
        elif variant in VARIANTS:
            from vicreg.config import with_overrides

            cfg = with_overrides(base, VARIANTS[variant])
            ours = Ours(cfg, images, size, device)
            seconds, mem = timed(ours.step, args.warmup, args.steps, device)
            m = Measured(variant, 2 * args.batch_size * args.steps / seconds, 1000 * seconds / args.steps, mem,
                         args.steps)
            if flops is None:
                flops = ours.flops_per_step()
            if variant == "ours":
                tflops = flops * args.steps / seconds / 1e12
                extra_figures = {"gflop_per_step": flops / 1e9, "tflops": tflops, "peak_tflops": peak,
                                 "fraction_of_peak": tflops / peak if peak else None,
                                 "compile_seconds": ours.step_fn.compile_seconds,
                                 "compile_fallback": ours.step_fn.fallback,
                                 "augment_ms": ours.augment_ms(), "host_syncs_per_step": ours.host_syncs()}
                if args.profile:
                    extra_figures["profile"] = profile(ours, args.profile, args.profile_dir)
            del ours
        else:
            sys.exit(f"unknown variant {variant!r}: expected reference or one of {', '.join(VARIANTS)}")
        results.append(m)
        mem = f"{m.peak_memory_gb:.2f} GB" if m.peak_memory_gb is not None else "n/a"
        print(f"  {m.variant:<10} {m.images_per_s:>10,.0f} two-view img/s  {m.ms_per_step:8.1f} ms/step  "
              f"peak memory {mem}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for r in results:
        if flops is not None:
            r.tflops = flops / (r.ms_per_step / 1000) / 1e12
            r.fraction_of_peak = r.tflops / peak if peak else None
    print()
    print(f"{'variant':<10} {'img/s':>10} {'ms/step':>9} {'peak mem':>9} {'x reference':>12} {'TFLOP/s':>8} "
          f"{'% peak':>7}")
    ref = next((r for r in results if r.variant == "reference"), None)
    for r in results:
        ratio = f"{r.images_per_s / ref.images_per_s:.2f}x" if ref else "-"
        mem = f"{r.peak_memory_gb:.2f} GB" if r.peak_memory_gb is not None else "n/a"
        tf = f"{r.tflops:.3g}" if r.tflops is not None else "-"
        share = f"{100 * r.fraction_of_peak:.1f}" if r.fraction_of_peak is not None else "n/a"
        print(f"{r.variant:<10} {r.images_per_s:>10,.0f} {r.ms_per_step:>9.1f} {mem:>9} {ratio:>12} {tf:>8} {share:>7}")
    if extra_figures:
        f = extra_figures
        ours_ms = next(r.ms_per_step for r in results if r.variant == "ours")
        line = (f"ours: {f['gflop_per_step']:.1f} GFLOP per step (forward + backward, both views) -> "
                f"{f['tflops']:.1f} TFLOP/s")
        line += (f" = {100 * f['fraction_of_peak']:.1f} % of the {f['peak_tflops']:g} TFLOP/s dense bf16 peak"
                 if f["fraction_of_peak"] else " (device peak unknown: pass --peak-tflops)")
        print(line)
        print(f"ours: augmentation of both views {f['augment_ms']:.2f} ms of the {ours_ms:.1f} ms step "
              f"({100 * f['augment_ms'] / ours_ms:.0f} %)")
        if f["host_syncs_per_step"] is not None:
            print(f"ours: host synchronisations in one step: {f['host_syncs_per_step']}")
    if args.json:
        payload = {"device": name, "torch": torch.__version__, "preset": args.preset, "batch_size": args.batch_size,
                   "input": [int(images.shape[1]), size, size], "data": args.data,
                   "results": [asdict(r) for r in results], **extra_figures}
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
