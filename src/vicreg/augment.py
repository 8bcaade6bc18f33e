"""Batched image augmentations with different random parameters for every sample, on CPU and GPU.

Everything here is pure tensor code over the whole batch: no Python loop over samples and no
host-device synchronisation (no ``.item()``, ``.cpu()``, boolean-mask indexing or data-dependent
branches) in :meth:`ViewTransform.apply`, so it can run under CUDA graphs or ``torch.compile``
(``torch.compile(view.apply, fullgraph=True)`` traces without graph breaks; Dynamo cannot take the
``torch.Generator`` argument of ``forward``, so sample the parameters outside a compiled region).
Which operations exist is decided once, in ``__init__``, from the configuration: an operation whose
probability or strength is 0 is skipped entirely, and one with probability 1 skips its mask. Which
samples an operation touches is decided per batch by per-sample masks, applied as exact 0/1 blends
(see :func:`_weight`) or identity factors.

Shapes: ``B`` batch, ``C`` channels (1 grey or 3 RGB), ``H x W`` input size, ``S`` = ``out_size``.

One view (:class:`ViewTransform`) applies, in this order:

1. **Random resized crop + horizontal flip + rotation**, fused into one affine map per sample and one
   bilinear :func:`torch.nn.functional.grid_sample` producing ``S x S`` (``align_corners=False``,
   ``padding_mode="border"``). The crop follows torchvision's ``RandomResizedCrop``: area fraction
   uniform in ``crop_scale``, aspect ratio ``w/h`` log-uniform in ``crop_ratio``, position uniform.
   torchvision tries up to 10 boxes and falls back to a central crop; here the 10 attempts are drawn
   at once for every sample, the first one that fits is kept (the same distribution as
   torchvision's), and a sample whose 10 attempts all fail gets torchvision's fallback (the whole
   image, its aspect ratio clamped to ``crop_ratio``, centred). Unlike torchvision the box is
   continuous (sub-pixel size and position, no rounding to whole pixels). The flip mirrors the crop;
   the rotation (uniform in ``[-rotation, rotation]`` degrees, positive = counter-clockwise, as
   ``torchvision.transforms.v2.functional.rotate``) turns the resized crop about its centre.
   Because the three are one resampling, the corners uncovered by a rotation show the image around
   the crop where there is image. Padding is "border" (the edge pixels repeat): bilinear samples
   near the image edge then match torchvision's resize (``padding_mode="zeros"`` would blend the
   outermost half pixel with black), and the corners of a rotation reaching beyond the image repeat
   its edge instead of torchvision's black fill (the same on a black background, as in the digits).
   There is no anti-aliasing: a crop more than about twice the output size aliases somewhat.
2. **Colour jitter** with probability ``jitter_p``: brightness (multiply by ``U[1-b, 1+b]``),
   contrast (blend with the per-image mean of the grey image, factor ``U[1-c, 1+c]``), saturation
   (blend with the grey image, factor ``U[1-s, 1+s]``), hue (rotate the HSV hue by ``U[-h, h]``
   turns, exact closed form of RGB -> HSV -> RGB), each followed by a clamp to [0, 1]. The order is
   fixed (brightness, contrast, saturation, hue); torchvision's ``ColorJitter`` draws a random order
   on every call.
3. **Grayscale** with probability ``grayscale_p`` (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B,
   repeated over the 3 channels; torchvision uses 0.2989 for R).
4. **Gaussian blur** with probability ``blur_p``: sigma ``U[blur_sigma]`` in output pixels, separable,
   kernel radius ``ceil(3 * max(blur_sigma))`` capped at ``(S - 1) // 2`` so the kernel is no wider
   than the image, reflect padding; the per-sample kernels run as two batched matrix products.
5. **Solarisation** with probability ``solarize_p``: ``x -> 1 - x`` where ``x >= 0.5``.

Saturation, hue and grayscale do nothing on grey (``C == 1``) images.

All randomness comes from the ``torch.Generator`` passed in (one ``torch.rand`` call per view, on the
generator's device), so the same generator state gives the same views (bit-identical on CPU), and a
run resumes exactly by saving and restoring ``generator.get_state()``.

The per-operation functions take per-sample parameter tensors of shape ``(B,)`` and are usable on
their own: :func:`adjust_brightness`, :func:`adjust_contrast`, :func:`adjust_saturation`,
:func:`adjust_hue`, :func:`grayscale`, :func:`gaussian_blur`, :func:`solarize` return new tensors;
the versions ending in ``_`` work in place.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AugmentConfig, ViewAugment

__all__ = [
    "ViewTransform",
    "TwoViews",
    "TemporalViews",
    "resize_images",
    "to_float",
    "crop_flip_rotate",
    "affine_theta",
    "affine_grid",
    "adjust_brightness",
    "adjust_brightness_",
    "adjust_contrast",
    "adjust_contrast_",
    "adjust_saturation",
    "adjust_saturation_",
    "adjust_hue",
    "adjust_hue_",
    "rgb_to_grey",
    "grayscale",
    "grayscale_",
    "blur_radius",
    "gaussian_blur",
    "solarize",
    "solarize_",
]

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries this many boxes before its fallback
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def to_float(images: Tensor) -> Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]; a floating-point input is only cast to float32."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def _per_sample(v: Tensor, ndim: int = 4) -> Tensor:
    """(B,) -> (B, 1, ..., 1) with ``ndim`` dimensions, to broadcast a per-sample value over a batch."""
    return v.view((-1,) + (1,) * (ndim - 1))


def _weight(mask: Tensor, dtype: torch.dtype, ndim: int = 4) -> Tensor:
    """Boolean mask (B,) -> 0/1 weights (B, 1, ..., 1) for ``torch.lerp``.

    Per-sample selection is ``lerp(x, y, weight)``: lerp evaluates ``x + w * (y - x)`` for w < 0.5 and
    ``y - (y - x) * (1 - w)`` otherwise, so weights 0 and 1 return x and y bit for bit, like
    ``torch.where``, and it runs in place (``x.lerp_(y, w)``) and faster on CPU.
    """
    return _per_sample(mask.to(dtype), ndim)


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


def _sample_crop_boxes(u_scale: Tensor, u_ratio: Tensor, u_pos: Tensor, height: int, width: int,
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
        a, b, c = (_per_sample(t, 3) for t in theta[:, k].unbind(dim=1))
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
    return r.mul(_LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).clamp_(0.0, 1.0).unsqueeze(1)


def adjust_brightness_(x: Tensor, factor: Tensor) -> Tensor:
    """x times factor, clamped to [0, 1]. Factor 1 leaves x unchanged bit for bit."""
    return x.mul_(_per_sample(factor.to(x.dtype))).clamp_(0.0, 1.0)


def adjust_contrast_(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor * x + (1 - factor) * mean, 0, 1)``, mean of the sample's grey image (torchvision's
    formula). Factor 1 leaves x unchanged bit for bit."""
    f = _per_sample(factor.to(x.dtype))
    mean = rgb_to_grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return x.mul_(f).add_((1.0 - f) * mean).clamp_(0.0, 1.0)


def adjust_saturation_(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor * x + (1 - factor) * grey, 0, 1)`` (torchvision's formula); grey images unchanged."""
    if x.shape[1] == 1:
        return x
    f = _per_sample(factor.to(x.dtype))
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
    weight = None if mask is None else _weight(mask, x.dtype, 3)
    t = torch.empty_like(hue6)
    for c, channel in enumerate((r, g, b)):  # three channels, not a loop over samples
        torch.sub(hue6, _per_sample(offset[:, c], 3), out=t)
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
    return x.copy_(grey) if mask is None else x.lerp_(grey, _weight(mask, x.dtype))


def solarize_(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """x -> 1 - x where x >= 0.5 (torchvision's solarize, threshold 0.5) in the samples where ``mask``
    (all when None). Computed as ``min(x, 1 - x)``, the same bit for bit and cheaper than
    ``torch.where``; a sample left out gets ``min(x, 3 - x) = x``."""
    if mask is None:
        other = 1.0 - x
    else:
        other = _per_sample(3.0 - 2.0 * mask.to(x.dtype)) - x
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
    return y if mask is None else y.lerp_(x, _weight(~mask, x.dtype))


# --------------------------------------------------------------------------------------------
# One view
# --------------------------------------------------------------------------------------------


class ViewTransform(nn.Module):
    """Random augmentation of one view, every sample with its own parameters (see the module docstring).

    ``forward(images (B, C, H, W) uint8 or float in [0, 1], generator) -> float32 (B, C, S, S) in [0, 1]``
    with ``S = out_size``; C is 1 or 3. The module has no parameters or buffers; it runs on the device
    of its input, and its random numbers are drawn on the generator's device.
    """

    def __init__(self, cfg: ViewAugment, out_size: int):
        super().__init__()
        if out_size < 1:
            raise ValueError(f"out_size must be >= 1, got {out_size}")
        self.cfg = cfg
        self.out_size = int(out_size)
        # which operations exist, decided once from the configuration
        self.do_jitter = cfg.jitter_p > 0 and (cfg.brightness > 0 or cfg.contrast > 0 or cfg.saturation > 0
                                                or cfg.hue > 0)
        self.do_grayscale = cfg.grayscale_p > 0
        self.blur_radius = blur_radius(cfg.blur_sigma[1], self.out_size)
        self.do_blur = cfg.blur_p > 0 and self.blur_radius > 0
        self.do_solarize = cfg.solarize_p > 0

    def extra_repr(self) -> str:
        return f"out_size={self.out_size}, cfg={self.cfg}"

    # ---- randomness -------------------------------------------------------------------------

    def sample_params(self, batch: int, channels: int, height: int, width: int,
                      generator: torch.Generator) -> dict[str, Tensor]:
        """Per-sample parameters for a batch of ``batch`` images (channels, height, width), on
        ``generator.device``. Every key is always present (masks of a probability-0 operation are all
        False); every value has leading dimension ``batch``:

        - ``crop_box`` float (B, 4): ``(x0, y0, w, h)`` in input pixels, ``0 <= x0``, ``x0 + w <= W``,
          ``0 <= y0``, ``y0 + h <= H``; ``w * h / (H * W)`` in ``crop_scale`` and ``w / h`` in
          ``crop_ratio`` unless all 10 attempts failed (then torchvision's central fallback box).
        - ``flip`` bool (B,): mirror horizontally; True with probability ``flip_p``.
        - ``angle`` float (B,): rotation in degrees, in ``[-rotation, rotation]``.
        - ``jitter`` bool (B,): apply colour jitter; True with probability ``jitter_p``.
        - ``brightness``, ``contrast``, ``saturation`` float (B,): factors in ``[1 - b, 1 + b]``
          (``b`` the configured strength; used only where ``jitter``).
        - ``hue`` float (B,): hue shift in turns, in ``[-hue, hue]`` (used only where ``jitter``).
        - ``grayscale`` bool (B,): True with probability ``grayscale_p``.
        - ``blur`` bool (B,): True with probability ``blur_p``.
        - ``sigma`` float (B,): blur standard deviation in output pixels, in ``blur_sigma``.
        - ``solarize`` bool (B,): True with probability ``solarize_p``.

        All of them come from one ``torch.rand((batch, 2 * 10 + 13))`` call on ``generator``.
        ``channels`` does not change the draws (saturation, hue and grayscale are drawn for grey
        images too, and ignored).
        """
        del channels  # the same draws for grey and colour images
        c = self.cfg
        a = CROP_ATTEMPTS
        u = torch.rand((batch, 2 * a + 13), generator=generator, device=generator.device)
        u_scale, u_ratio, rest = u[:, :a], u[:, a:2 * a], u[:, 2 * a:]

        def uniform(col: int, lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * rest[:, col]

        return {
            "crop_box": _sample_crop_boxes(u_scale, u_ratio, rest[:, 0:2], height, width, c.crop_scale, c.crop_ratio),
            "flip": rest[:, 2] < c.flip_p,
            "angle": uniform(3, -c.rotation, c.rotation),
            "jitter": rest[:, 4] < c.jitter_p,
            "brightness": uniform(5, 1.0 - c.brightness, 1.0 + c.brightness),
            "contrast": uniform(6, 1.0 - c.contrast, 1.0 + c.contrast),
            "saturation": uniform(7, 1.0 - c.saturation, 1.0 + c.saturation),
            "hue": uniform(8, -c.hue, c.hue),
            "grayscale": rest[:, 9] < c.grayscale_p,
            "blur": rest[:, 10] < c.blur_p,
            "sigma": uniform(11, c.blur_sigma[0], c.blur_sigma[1]),
            "solarize": rest[:, 12] < c.solarize_p,
        }

    # ---- the operations ---------------------------------------------------------------------

    @staticmethod
    def _mask(params: dict[str, Tensor], key: str, p: float) -> Tensor | None:
        """The per-sample mask ``params[key]``, or None (every sample) when its probability p is 1."""
        return None if p >= 1.0 else params[key]

    def _color_jitter_(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Brightness, contrast, saturation, hue in place, in the samples where ``params["jitter"]``.
        The factors of the other samples are set to 1, which leaves them unchanged bit for bit; the
        hue shift is applied through the mask."""
        c, on = self.cfg, params["jitter"]
        colour = x.shape[1] == 3
        if c.brightness > 0:
            adjust_brightness_(x, torch.where(on, params["brightness"], 1.0))
        if c.contrast > 0:
            adjust_contrast_(x, torch.where(on, params["contrast"], 1.0))
        if colour and c.saturation > 0:
            adjust_saturation_(x, torch.where(on, params["saturation"], 1.0))
        if colour and c.hue > 0:
            adjust_hue_(x, params["hue"], self._mask(params, "jitter", c.jitter_p))
        return x

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """x float32 (B, C, H, W) in [0, 1] (not modified) and parameters from :meth:`sample_params`
        (on x's device) -> new float32 (B, C, out_size, out_size) in [0, 1]."""
        if x.shape[1] not in (1, 3):
            raise ValueError(f"expected 1 or 3 channels, got images of shape {tuple(x.shape)}")
        c = self.cfg
        x = crop_flip_rotate(x, params["crop_box"], params["flip"], params["angle"], self.out_size)
        # x is now a fresh tensor of our own: the colour operations work in place
        if self.do_jitter:
            self._color_jitter_(x, params)
        if self.do_grayscale:
            grayscale_(x, self._mask(params, "grayscale", c.grayscale_p))
        if self.do_blur:
            x = gaussian_blur(x, params["sigma"], self.blur_radius, self._mask(params, "blur", c.blur_p))
        if self.do_solarize:
            solarize_(x, self._mask(params, "solarize", c.solarize_p))
        return x

    def forward(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """images uint8 (B, C, H, W) (or float in [0, 1]) on any device -> float32 (B, C, S, S) in [0, 1]."""
        return self._augment(to_float(images), generator)

    def _augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, c, h, w = x.shape
        params = self.sample_params(b, c, h, w, generator)
        if generator.device != x.device:
            params = {k: v.to(x.device) for k, v in params.items()}
        return self.apply(x, params)


class TwoViews(nn.Module):
    """The two views of VICReg: ``forward(images (B, C, H, W), generator) -> (view_a, view_b)``, each
    float32 (B, C, S, S) in [0, 1], drawn independently with ``cfg.view_a`` and ``cfg.view_b``.

    The input is converted to float once; the draws are the same as calling ``view_a`` then
    ``view_b`` on the same generator.
    """

    def __init__(self, cfg: AugmentConfig, out_size: int):
        super().__init__()
        self.view_a = ViewTransform(cfg.view_a, out_size)
        self.view_b = ViewTransform(cfg.view_b, out_size)

    def forward(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = to_float(images)
        return self.view_a._augment(x, generator), self.view_b._augment(x, generator)


class TemporalViews(nn.Module):
    """Temporal views of video clips: ``forward(clips (B, T*C, H, W), generator) -> (view_a, view_b)``.

    A clip is a sequence's T frames stacked along the channel axis (frame t in channels ``t*C:(t+1)*C``).
    For every clip, independently: an offset ``d`` uniform in ``1..max_offset`` and a first frame ``t``
    uniform in ``0..T-1-d``; view a is frame ``t`` through ``cfg.view_a``, view b is frame ``t + d``
    through ``cfg.view_b``. Two moments of one scene are the positive pair, so the invariance term keeps
    what changes slowly (objects and where they are) and lets go of what changes from frame to frame.
    Like :class:`TwoViews`: pure batched tensor code, no host synchronisation.
    """

    def __init__(self, cfg: AugmentConfig, out_size: int, channels: int, max_offset: int):
        super().__init__()
        if max_offset < 1:
            raise ValueError(f"max_offset={max_offset} must be >= 1 (frames between the two views)")
        self.view_a = ViewTransform(cfg.view_a, out_size)
        self.view_b = ViewTransform(cfg.view_b, out_size)
        self.channels, self.max_offset = channels, max_offset

    def pick_frames(self, clips: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The two frames (B, C, H, W) of every clip, at random times t and t + d."""
        b, tc, h, w = clips.shape
        c = self.channels
        if tc % c or tc // c <= self.max_offset:
            raise ValueError(f"clips of {tc} channels do not hold more than max_offset={self.max_offset} frames "
                             f"of {c} channel(s)")
        frames = tc // c
        u = torch.rand((b, 2), generator=generator, device=generator.device).to(clips.device)
        d = 1 + (u[:, 0] * self.max_offset).long().clamp_(max=self.max_offset - 1)  # 1..max_offset
        t = (u[:, 1] * (frames - d)).long().clamp_(min=0)
        t = torch.minimum(t, frames - 1 - d)  # 0..T-1-d
        video = clips.view(b, frames, c, h, w)
        rows = torch.arange(b, device=clips.device)
        return video[rows, t], video[rows, t + d]

    def forward(self, clips: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        first, later = self.pick_frames(clips, generator)
        return self.view_a._augment(to_float(first), generator), self.view_b._augment(to_float(later), generator)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


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
