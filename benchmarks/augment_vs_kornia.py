"""Time vicreg's batched two-view augmentation against the same recipe built from kornia.augmentation.

Both get the same uint8 batch on the same device and return two float32 views in [0, 1] (the
conversion to float is timed for both). Each view draws its own parameters for every sample
(kornia: ``same_on_batch=False``). Reported: the median over ``--iters`` timed calls after
``--warmup`` untimed ones, in milliseconds per batch of two views, input images per second, and the
ratio kornia / vicreg.

    python3 benchmarks/augment_vs_kornia.py --recipe cifar --batch 256 --size 32 --channels 3
    python3 benchmarks/augment_vs_kornia.py --recipe grey28 --batch 256 --size 28 --channels 1
    python3 benchmarks/augment_vs_kornia.py --recipe paper --batch 256 --size 96 --device cuda

The kornia pipeline mirrors each ViewAugment: RandomResizedCrop(scale, ratio), RandomHorizontalFlip,
RandomRotation (when rotation > 0), ColorJitter(brightness, contrast, saturation, hue, p=jitter_p)
(kornia, like torchvision, draws a random order of the four per call), RandomGrayscale,
RandomGaussianBlur (same kernel size and sigma range as ours, reflect border), RandomSolarize
(threshold exactly 0.5, no addition). Operations with probability or strength 0 are left out of both,
and saturation, hue and grayscale are left out for grey images (no-ops in ours).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from vicreg.augment import TwoViews, blur_radius
from vicreg.config import AugmentConfig, ViewAugment
from vicreg.device import resolve_device
from vicreg.image_ops import to_float
from vicreg.presets import RECIPES


def view_config(recipe: str, which: str) -> ViewAugment:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in RECIPES[recipe][which].items()}
    return ViewAugment(**values)


def kornia_view(cfg: ViewAugment, out_size: int, channels: int) -> nn.Module:
    """The same random view built from kornia.augmentation (per-sample parameters)."""
    try:
        import kornia.augmentation as K
    except ImportError:
        sys.exit("kornia is not installed: pip install kornia (or pip install -e '.[bench]')")
    ops: list[nn.Module] = [K.RandomResizedCrop((out_size, out_size), scale=cfg.crop_scale, ratio=cfg.crop_ratio,
                                                same_on_batch=False)]
    if cfg.flip_p > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.flip_p, same_on_batch=False))
    if cfg.rotation > 0:
        ops.append(K.RandomRotation(degrees=cfg.rotation, p=1.0, same_on_batch=False))
    colour = channels == 3
    saturation, hue = (cfg.saturation, cfg.hue) if colour else (0.0, 0.0)
    if cfg.jitter_p > 0 and (cfg.brightness > 0 or cfg.contrast > 0 or saturation > 0 or hue > 0):
        ops.append(K.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=saturation, hue=hue,
                                 p=cfg.jitter_p, same_on_batch=False))
    if colour and cfg.grayscale_p > 0:
        ops.append(K.RandomGrayscale(p=cfg.grayscale_p, same_on_batch=False))
    radius = blur_radius(cfg.blur_sigma[1], out_size)
    if cfg.blur_p > 0 and radius > 0:
        ops.append(K.RandomGaussianBlur((2 * radius + 1, 2 * radius + 1), sigma=cfg.blur_sigma, p=cfg.blur_p,
                                        border_type="reflect", separable=True, same_on_batch=False))
    if cfg.solarize_p > 0:
        ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=cfg.solarize_p, same_on_batch=False))
    return nn.Sequential(*ops)


class KorniaTwoViews(nn.Module):
    def __init__(self, cfg: AugmentConfig, out_size: int, channels: int):
        super().__init__()
        self.view_a = kornia_view(cfg.view_a, out_size, channels)
        self.view_b = kornia_view(cfg.view_b, out_size, channels)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_float(images)
        return self.view_a(x), self.view_b(x)


def time_ms(fns: dict, iters: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median wall time in milliseconds of each fn() in ``fns``; the functions take turns in every
    iteration, so that a change in the machine's load affects them alike."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", choices=[r for r in RECIPES if r != "none"], default="cifar")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32, help="output side; also the input side unless --input-size")
    ap.add_argument("--input-size", type=int, default=None, help="input side (default: --size)")
    ap.add_argument("--channels", type=int, choices=[1, 3], default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    ap.add_argument("--skip-kornia", action="store_true", help="time only ours")
    args = ap.parse_args(argv)

    try:
        device = resolve_device(args.device, "--device")
    except ValueError as e:
        sys.exit(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    in_size = args.input_size or args.size
    cfg = AugmentConfig(recipe=args.recipe, view_a=view_config(args.recipe, "view_a"),
                        view_b=view_config(args.recipe, "view_b"))
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    images = torch.randint(0, 256, (args.batch, args.channels, in_size, in_size), dtype=torch.uint8,
                           generator=gen, device=device)

    ours = TwoViews(cfg, args.size).to(device)
    fns = {"vicreg": lambda: ours(images, gen)}
    if not args.skip_kornia:
        import kornia

        torch.manual_seed(0)
        theirs = KorniaTwoViews(cfg, args.size, args.channels).to(device)
        fns[f"kornia {kornia.__version__}"] = lambda: theirs(images)
    results = list(time_ms(fns, args.iters, args.warmup, device).items())

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"
    print(f"recipe {args.recipe}: batch {args.batch} x {args.channels}x{in_size}x{in_size} uint8 -> two views "
          f"{args.channels}x{args.size}x{args.size} float32 on {where}; torch {torch.__version__}; "
          f"median of {args.iters} after {args.warmup} warm-up")
    base = results[-1][1]
    print(f"{'':16s} {'ms/batch':>10s} {'images/s':>10s} {'kornia/this':>12s}")
    for name, ms in results:
        print(f"{name:16s} {ms:10.2f} {args.batch / ms * 1e3:10.0f} {base / ms:11.2f}x")


if __name__ == "__main__":
    main()
