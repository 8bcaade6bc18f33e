"""Deterministic image conversions shared by data loading, augmentation, evaluation and the world model.

- :func:`to_float`: uint8 in [0, 255] -> float32 in [0, 1];
- :func:`resize_images`: the evaluation resize (float out, anti-aliased when shrinking);
- :func:`resize_uint8`: the same resize kept in uint8 (rounded), for image banks stored as bytes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["resize_images", "resize_uint8", "to_float"]


def to_float(images: Tensor) -> Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]; a floating-point input is only cast to float32."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def resize_images(images: Tensor, out_size: int) -> Tensor:
    """Deterministic resize for evaluation: uint8 or float (B, C, H, W) -> float32 (B, C, S, S) in [0, 1].

    Bilinear (``align_corners=False``), anti-aliased when shrinking; a non-square input is stretched
    to a square. When the size already matches, only the conversion to float in [0, 1] happens (a
    float32 input is then returned as is, not copied).
    """
    x = to_float(images)
    height, width = x.shape[-2:]
    if height == out_size and width == out_size:
        return x
    shrink = height > out_size or width > out_size
    y = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=shrink)
    return y.clamp_(0.0, 1.0)


def resize_uint8(images: Tensor, size: int) -> Tensor:
    """uint8 (B, C, h, w) -> uint8 (B, C, size, size): bilinear with antialias, rounded."""
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)
