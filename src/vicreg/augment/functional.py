"""The augmentations as batched functions of per-sample parameter tensors, each usable on its own.

``x`` is float32 (B, C, H, W) in [0, 1]; a parameter is a tensor (B,) (one value per sample) and ``mask`` a
boolean (B,) choosing the samples an operation touches, applied as an exact 0/1 blend (:func:`mask_weight`).
:func:`adjust_brightness`, :func:`adjust_contrast`, :func:`adjust_saturation`, :func:`adjust_hue`,
:func:`grayscale`, :func:`gaussian_blur` and :func:`solarize` return new tensors; the versions ending in ``_``
work in place. :func:`sample_crop_boxes`, :func:`affine_theta` and :func:`crop_flip_rotate` make the random
resized crop, flip and rotation one resampling. What each does, exactly, is in :mod:`vicreg.augment`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries this many boxes before its fallback
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def per_sample(v: Tensor, ndim: int = 4) -> Tensor:
    """(B,) -> (B, 1, ..., 1) with ``ndim`` dimensions, to broadcast a per-sample value over a batch."""
    return v.view((-1,) + (1,) * (ndim - 1))


def mask_weight(mask: Tensor, dtype: torch.dtype, ndim: int = 4) -> Tensor:
    """Boolean mask (B,) -> 0/1 weights (B, 1, ..., 1) for ``torch.lerp``.

    Per-sample selection is ``lerp(x, y, weight)``: lerp evaluates ``x + w * (y - x)`` for w < 0.5 and
    ``y - (y - x) * (1 - w)`` otherwise, so weights 0 and 1 return x and y bit for bit, like
    ``torch.where``, and it runs in place (``x.lerp_(y, w)``) and faster on CPU.
    """
    return per_sample(mask.to(dtype), ndim)


# --------------------------------------------------------------------------------------------
# Geometry: random resized crop, flip and rotation in one resampling
# --------------------------------------------------------------------------------------------


def _crop_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[float, float]:
    """torchvision's RandomResizedCrop fallback size (w, h): the whole image, aspect clamped to ``ratio``."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return float(width), width / ratio[0]
    if in_ratio > ratio[1]:
        return height * ratio[1], float(height)
    return float(width), float(height)


def sample_crop_boxes(u_scale: Tensor, u_ratio: Tensor, u_pos: Tensor, height: int, width: int,
                       scale: tuple[float, float], ratio: tuple[float, float]) -> Tensor:
    """Crop boxes (B, 4) = (x0, y0, w, h) in input pixels from uniforms u_scale, u_ratio (B, A), u_pos (B, 2).

    Attempt ``a`` has area ``H * W * scale`` and aspect ``w / h = ratio``; the first attempt that fits
    in the image is kept; if none does, torchvision's central fallback box. The position is uniform
    over the places where the box fits.
    """
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * u_scale)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    tol = 1.0 + 1e-6  # a box of exactly the image size must count as fitting despite rounding
    fits = (w <= width * tol) & (h <= height * tol)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none)
    any_fits = fits.any(dim=1)
    fw, fh = _crop_fallback(height, width, ratio)
    w = torch.where(any_fits, w.gather(1, first).squeeze(1), fw).clamp(max=float(width))
    h = torch.where(any_fits, h.gather(1, first).squeeze(1), fh).clamp(max=float(height))
    x0 = torch.where(any_fits, u_pos[:, 0] * (width - w), (width - w) / 2)
    y0 = torch.where(any_fits, u_pos[:, 1] * (height - h), (height - h) / 2)
    return torch.stack([x0, y0, w, h], dim=1)


def affine_theta(crop_box: Tensor, flip: Tensor, angle: Tensor, height: int, width: int) -> Tensor:
    """Affine matrices (B, 2, 3) in the convention of :func:`torch.nn.functional.affine_grid`
    (``align_corners=False``).

    They map output coordinates in [-1, 1] to input coordinates in [-1, 1]: first the rotation by
    ``angle`` degrees about the output centre (counter-clockwise on screen), then the mirror where
    ``flip``, then the crop box ``(x0, y0, w, h)`` (input pixels) stretched over the output.
    """
    x0, y0, w, h = crop_box.unbind(dim=1)
    rad = angle * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    sign = 1.0 - 2.0 * flip.to(cos.dtype)  # -1 where flipped
    sx, sy = w / width, h / height  # half-extent of the crop in normalised input coordinates
    tx = (2.0 * x0 + w) / width - 1.0  # crop centre in normalised input coordinates
    ty = (2.0 * y0 + h) / height - 1.0
    row_x = torch.stack([sx * sign * cos, -sx * sign * sin, tx], dim=1)
    row_y = torch.stack([sy * sin, sy * cos, ty], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def affine_grid(theta: Tensor, size: int) -> Tensor:
    """Sampling grid (B, size, size, 2) of ``F.affine_grid(theta, (B, C, size, size), align_corners=False)``
    up to rounding, by broadcasting (affine_grid materialises a (B, size, size, 3) base grid and
    multiplies it with theta, several times slower on CPU)."""
    coords = (2.0 * torch.arange(size, dtype=theta.dtype, device=theta.device) + 1.0) / size - 1.0  # pixel centres
    u, v = coords.view(1, 1, size), coords.view(1, size, 1)  # output x along columns, y along rows
    grid = torch.empty((theta.shape[0], size, size, 2), dtype=theta.dtype, device=theta.device)
    for k in range(2):  # input x, then input y: a * u + b * v + c
        a, b, c = (per_sample(t, 3) for t in theta[:, k].unbind(dim=1))
        torch.add(a * u, b * v + c, out=grid[..., k])
    return grid


def crop_flip_rotate(x: Tensor, crop_box: Tensor, flip: Tensor, angle: Tensor, out_size: int) -> Tensor:
    """One bilinear resampling of x (B, C, H, W) through each sample's crop box (B, 4), flip (B,) and
    rotation (B,) degrees -> (B, C, out_size, out_size); points outside the image read the nearest
    edge pixel (``padding_mode="border"``)."""
    height, width = x.shape[-2:]
    grid = affine_grid(affine_theta(crop_box, flip, angle, height, width).to(x.dtype), out_size)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --------------------------------------------------------------------------------------------
# Colour. The functions ending in "_" work in place on x (B, C, H, W) float in [0, 1] and return it;
# the pipeline owns its working tensor and uses them. The plain names work on a copy.
# Per-sample factors and shifts have shape (B,).
# --------------------------------------------------------------------------------------------


def rgb_to_grey(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> new (B, 1, H, W) luma 0.299 R + 0.587 G + 0.114 B; a (B, 1, H, W) input is
    returned as is (not copied)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return r.mul(LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).clamp_(0.0, 1.0).unsqueeze(1)


def adjust_brightness_(x: Tensor, factor: Tensor) -> Tensor:
    """x times factor, clamped to [0, 1]. Factor 1 leaves x unchanged bit for bit."""
    return x.mul_(per_sample(factor.to(x.dtype))).clamp_(0.0, 1.0)


def adjust_contrast_(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor * x + (1 - factor) * mean, 0, 1)``, mean of the sample's grey image (torchvision's
    formula). Factor 1 leaves x unchanged bit for bit."""
    f = per_sample(factor.to(x.dtype))
    mean = rgb_to_grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return x.mul_(f).add_((1.0 - f) * mean).clamp_(0.0, 1.0)


def adjust_saturation_(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor * x + (1 - factor) * grey, 0, 1)`` (torchvision's formula); grey images unchanged."""
    if x.shape[1] == 1:
        return x
    f = per_sample(factor.to(x.dtype))
    grey = rgb_to_grey(x).mul_(1.0 - f)
    return x.mul_(f).add_(grey).clamp_(0.0, 1.0)


def adjust_hue_(x: Tensor, shift: Tensor, mask: Tensor | None = None) -> Tensor:
    """Rotate the HSV hue by ``shift`` turns (|shift| <= 0.5) in the samples where ``mask`` (all when
    None); grey images unchanged.

    The same as torchvision's ``adjust_hue`` (RGB -> HSV, ``h = (h + shift) mod 1``, HSV -> RGB) up to
    float rounding, without building the HSV image. Value ``v = max(R, G, B)`` and chroma
    ``v - min(R, G, B)`` are kept, and with the hue ``h6`` in sixths of a turn, HSV -> RGB in closed
    form is ``channel = v - chroma * clamp(2 - D, 0, 1)``, where ``D`` is the distance on the hue
    circle (period 6) from ``h6 + 6 shift`` to the hue where the channel is smallest (R 3: cyan,
    G 5: magenta, B 1: yellow). Branches are blends with 0/1 weights and folds with ``abs``, which
    are cheaper than ``torch.where`` and ``remainder`` on CPU.
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)  # (B, H, W) views
    vmax = torch.maximum(r, g)
    torch.maximum(vmax, b, out=vmax)
    chroma = torch.minimum(r, g)
    torch.minimum(chroma, b, out=chroma)
    torch.sub(vmax, chroma, out=chroma)
    # hue6 in (-1, 5]: (g - b) / chroma if R is the max, else 2 + (b - r) / chroma if G is, else
    # 4 + (r - g) / chroma; sign(vmax - c) is 0 where channel c is the max, else 1.
    hue6 = torch.sub(b, r).add_(chroma, alpha=2.0)
    hue6.lerp_(torch.sub(r, g).add_(chroma, alpha=4.0), torch.sub(vmax, g).sign_())
    hue6 = torch.sub(g, b).lerp_(hue6, torch.sub(vmax, r).sign_())
    hue6.div_(chroma.clamp(min=1e-12))  # where chroma is 0 the hue does not matter
    # t = h6 + 6 shift - centre with centres 3, 5, 7 (7 = 1 mod 6) keeps |t| < 12, where
    # D = 3 - |||t| - 6| - 3| folds t onto [0, 3]; no tensor from host data (CUDA-graph safe).
    centre = 3.0 + 2.0 * torch.arange(3, dtype=x.dtype, device=x.device)
    offset = centre - 6.0 * shift.to(x.dtype).unsqueeze(1)  # (B, 3)
    weight = None if mask is None else mask_weight(mask, x.dtype, 3)
    t = torch.empty_like(hue6)
    for c, channel in enumerate((r, g, b)):  # three channels, not a loop over samples
        torch.sub(hue6, per_sample(offset[:, c], 3), out=t)
        t.abs_().sub_(6.0).abs_().sub_(3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)  # clamp(2 - D, 0, 1)
        torch.addcmul(vmax, chroma, t, value=-1.0, out=t).clamp_(0.0, 1.0)
        if weight is None:
            channel.copy_(t)
        else:
            channel.lerp_(t, weight)
    return x


def grayscale_(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Replace the samples where ``mask`` (all when None) by their grey image, on all C channels;
    grey images unchanged."""
    if x.shape[1] == 1:
        return x
    grey = rgb_to_grey(x).expand_as(x)
    return x.copy_(grey) if mask is None else x.lerp_(grey, mask_weight(mask, x.dtype))


def solarize_(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """x -> 1 - x where x >= 0.5 (torchvision's solarize, threshold 0.5) in the samples where ``mask``
    (all when None). Computed as ``min(x, 1 - x)``, the same bit for bit and cheaper than
    ``torch.where``; a sample left out gets ``min(x, 3 - x) = x``."""
    if mask is None:
        other = 1.0 - x
    else:
        other = per_sample(3.0 - 2.0 * mask.to(x.dtype)) - x
    return torch.minimum(x, other, out=x)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Out-of-place :func:`adjust_brightness_`."""
    return adjust_brightness_(x.clone(), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Out-of-place :func:`adjust_contrast_`."""
    return adjust_contrast_(x.clone(), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Out-of-place :func:`adjust_saturation_`."""
    return adjust_saturation_(x.clone(), factor)


def adjust_hue(x: Tensor, shift: Tensor, mask: Tensor | None = None) -> Tensor:
    """Out-of-place :func:`adjust_hue_`."""
    return adjust_hue_(x.clone(), shift, mask)


def grayscale(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Out-of-place :func:`grayscale_`."""
    return grayscale_(x.clone(), mask)


def solarize(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Out-of-place :func:`solarize_`."""
    return solarize_(x.clone(), mask)


# --------------------------------------------------------------------------------------------
# Blur
# --------------------------------------------------------------------------------------------


def blur_radius(sigma_max: float, out_size: int) -> int:
    """Kernel radius ceil(3 * sigma_max), capped at (out_size - 1) // 2 so that 2 r + 1 <= out_size."""
    return max(0, min(math.ceil(3.0 * sigma_max), (out_size - 1) // 2))


def gaussian_kernels(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1-D Gaussian kernels (B, 2 radius + 1), one per sigma (B,).

    Weights below 1e-20 of the centre are set to 0: a small sigma would otherwise leave float32
    denormals in the tails, which slow matrix products on CPU by an order of magnitude.
    """
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (t / sigma.unsqueeze(1)) ** 2)
    k = k * (k >= 1e-20)
    return k / k.sum(dim=1, keepdim=True)


def blur_matrices(sigma: Tensor, radius: int, size: int) -> Tensor:
    """Per-sample 1-D blur along a side of ``size`` pixels as matrices (B, size, size), reflect padding
    folded in: ``(M @ v)[i] = sum_t kernel[t] * v[reflect(i + t)]``, t in [-radius, radius]."""
    if radius > size - 1:
        raise ValueError(f"blur radius {radius} needs images of at least {radius + 1} pixels, got {size}")
    i = torch.arange(size, device=sigma.device)
    t = torch.arange(-radius, radius + 1, device=sigma.device)
    src = (i.unsqueeze(0) + t.unsqueeze(1)).abs()  # (K, size); reflect below 0 ...
    src = torch.where(src > size - 1, 2 * (size - 1) - src, src)  # ... and above size - 1
    taps = (src.unsqueeze(-1) == i).to(sigma.dtype)  # (K, size, size): tap t of output i reads input src
    kernels = gaussian_kernels(sigma, radius)  # (B, K)
    return (kernels @ taps.view(2 * radius + 1, size * size)).view(-1, size, size)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int, mask: Tensor | None = None) -> Tensor:
    """Separable Gaussian blur of x (B, C, H, W) with per-sample sigma (B,) and kernel radius ``radius``
    (the same for all samples), reflect padding, as torchvision's ``gaussian_blur`` with kernel size
    ``2 radius + 1``; only in the samples where ``mask`` (all when None). Returns a new tensor.

    Each direction is one batched matrix product with per-sample banded matrices that include the
    padding: several times faster than a grouped convolution with B * C groups on CPU, and exact
    in the same way (float32 products; on GPU subject to ``torch.backends.cuda.matmul.allow_tf32``).
    """
    if radius == 0:
        return x.clone()
    b, c, h, w = x.shape
    sigma = sigma.to(x.dtype)
    cols = blur_matrices(sigma, radius, w)  # (B, W, W)
    rows = blur_matrices(sigma, radius, h)  # (B, H, H)
    y = torch.bmm(x.reshape(b, c * h, w), cols.transpose(1, 2))  # along W: (B, C*H, W)
    rows = rows.unsqueeze(1).expand(b, c, h, h).reshape(b * c, h, h)
    y = torch.bmm(rows, y.view(b * c, h, w)).view(b, c, h, w).clamp_(0.0, 1.0)  # along H
    return y if mask is None else y.lerp_(x, mask_weight(~mask, x.dtype))
