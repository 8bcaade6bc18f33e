"""Where work runs and in what precision: the one device resolver, autocast, host-device synchronisation
and CPU thread counts. Every module that needs a device asks :func:`resolve_device`."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .config import ConfigError

__all__ = ["resolve_device", "autocast_dtype", "synchronize", "cpu_threads", "small_cpu_work", "SMALL_CPU_WORK"]

SMALL_CPU_WORK = 1 << 17  # batch rows x model width up to which CPU work runs on one thread (see cpu_threads)


def resolve_device(name: str | torch.device = "auto", key: str = "train.device") -> torch.device:
    """``auto``: CUDA when available, else the CPU; anything else as torch names it. ``key`` is the config
    field the name came from, for the error (a ConfigError) when the name is not a device or CUDA is missing."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key}={str(name)!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={str(name)!r} is not valid: CUDA is not available on this machine (use auto or "
                          f"cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{key}={str(name)!r} is not valid: this machine has {torch.cuda.device_count()} GPU(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={str(name)!r} is not valid: MPS (Apple's GPU) is not available on this machine "
                          f"(use auto or cpu)")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; fp32 (no autocast) on CPU unless asked."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def cpu_threads(n: int, enabled: bool = True) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads when ``enabled``: small matrix products (a probe, a small
    predictor) are faster on one thread than split over several, and far faster when the cores are busy
    with other work."""
    if not enabled:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_cpu_work(device: torch.device, rows: int, width: int) -> bool:
    """Whether a batch of ``rows`` x ``width`` on ``device`` is small CPU work, best run on one thread."""
    return device.type == "cpu" and rows * width <= SMALL_CPU_WORK
