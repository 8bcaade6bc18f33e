"""Batched image augmentations with different random parameters for every sample, on CPU and GPU.

Everything here is pure tensor code over the whole batch: no Python loop over samples and no
host-device synchronisation (no ``.item()``, ``.cpu()``, boolean-mask indexing or data-dependent
branches) inside :meth:`ViewTransform.forward`, so it can run under CUDA graphs or ``torch.compile``.
Which operations exist is decided once, in ``__init__``, from the configuration (an operation whose
probability or strength is 0 is skipped entirely); which samples an operation touches is decided per
batch by per-sample boolean masks and ``torch.where``.

Shapes: ``B`` batch, ``C`` channels (1 grey or 3 RGB), ``H x W`` input size, ``S`` = ``out_size``.

One view (:class:`ViewTransform`) applies, in this order:

1. **Random resized crop + horizontal flip + rotation**, fused into one affine map per sample and one
   bilinear :func:`torch.nn.functional.grid_sample` producing ``S x S`` (``align_corners=False``,
   ``padding_mode="zeros"``). The crop follows torchvision's ``RandomResizedCrop``: area fraction
   uniform in ``crop_scale``, aspect ratio ``w/h`` log-uniform in ``crop_ratio``, position uniform.
   torchvision tries 10 times and falls back to a central crop; here the 10 attempts are drawn at
   once for every sample, the first one that fits is kept, and a sample whose 10 attempts all fail
   gets torchvision's fallback (the whole image, its aspect ratio clamped to ``crop_ratio``, centred).
   Unlike torchvision the crop box is continuous (sub-pixel size and position, no rounding). The flip
   mirrors the crop; the rotation (uniform in ``[-rotation, rotation]`` degrees, positive =
   counter-clockwise, as ``torchvision.transforms.v2.functional.rotate``) turns the resized crop about
   its centre. Because the three are one resampling, the corners uncovered by a rotation show the
   image around the crop where there is image, and zeros (black) only beyond the image border.
   There is no anti-aliasing: a crop more than about twice the output size aliases somewhat.
2. **Colour jitter** with probability ``jitter_p``: brightness (multiply by ``U[1-b, 1+b]``),
   contrast (blend with the per-image mean of the grey image, factor ``U[1-c, 1+c]``), saturation
   (blend with the grey image, factor ``U[1-s, 1+s]``), hue (rotate the HSV hue by ``U[-h, h]``
   turns), each followed by a clamp to [0, 1]. The order is fixed (brightness, contrast, saturation,
   hue); torchvision's ``ColorJitter`` draws a random order on every call.
3. **Grayscale** with probability ``grayscale_p`` (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B,
   repeated over the 3 channels; torchvision uses 0.2989 for R).
4. **Gaussian blur** with probability ``blur_p``: sigma ``U[blur_sigma]`` in output pixels, separable,
   kernel radius ``ceil(3 * max(blur_sigma))`` capped at ``(S - 1) // 2`` so the kernel is no wider
   than the image, reflect padding; the per-sample kernels run as one grouped convolution.
5. **Solarisation** with probability ``solarize_p``: ``x -> 1 - x`` where ``x >= 0.5``.

Saturation, hue and grayscale do nothing on grey (``C == 1``) images.

All randomness comes from the ``torch.Generator`` passed in (one ``torch.rand`` call per view, on the
generator's device), so the same generator state gives the same views (bit-identical on CPU), and a
run resumes exactly by saving and restoring ``generator.get_state()``.

The per-operation functions (:func:`adjust_brightness`, :func:`adjust_hue`, :func:`gaussian_blur`, ...)
take per-sample parameter tensors of shape ``(B,)`` and are usable on their own.
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
    "resize_images",
    "to_float",
    "crop_flip_rotate",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "rgb_to_grey",
    "grayscale",
    "gaussian_blur",
    "solarize",
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


def _per_sample(v: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast a per-sample value over an image batch."""
    return v.view(-1, 1, 1, 1)


def _select(mask: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Per sample, ``y`` where mask (B,) is True, else ``x`` (both (B, C, H, W) or broadcastable).

    ``torch.lerp`` with weights 0 and 1 returns its end points exactly (it evaluates ``x + 0 * (y - x)``
    below weight 0.5 and ``y - (y - x) * 0`` above), so this equals ``torch.where`` bit for bit,
    and is about three times faster on CPU.
    """
    return torch.lerp(x, y, _per_sample(mask.to(x.dtype)))


def _blend(x: Tensor, y: Tensor, factor: Tensor) -> Tensor:
    """``clamp(factor * x + (1 - factor) * y, 0, 1)`` with a per-sample ``factor`` (B,), as torchvision;
    ``y`` broadcasts against x (a grey image (B, 1, H, W) or a mean (B, 1, 1, 1))."""
    f = _per_sample(factor.to(x.dtype))
    return torch.addcmul((1.0 - f) * y, f, x).clamp_(0.0, 1.0)


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
    """Affine matrices (B, 2, 3) for :func:`torch.nn.functional.affine_grid` (``align_corners=False``).

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


def crop_flip_rotate(x: Tensor, crop_box: Tensor, flip: Tensor, angle: Tensor, out_size: int) -> Tensor:
    """One bilinear resampling of x (B, C, H, W) through each sample's crop box, flip and rotation
    -> (B, C, out_size, out_size); points outside the image read 0."""
    b, c, height, width = x.shape
    theta = affine_theta(crop_box, flip, angle, height, width).to(x.dtype)
    grid = F.affine_grid(theta, [b, c, out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# --------------------------------------------------------------------------------------------
# Colour
# --------------------------------------------------------------------------------------------


def rgb_to_grey(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma 0.299 R + 0.587 G + 0.114 B; a (B, 1, H, W) input is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return r.mul(_LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).clamp_(0.0, 1.0).unsqueeze(1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """x (B, C, H, W) times factor (B,), clamped to [0, 1]."""
    return (x * _per_sample(factor.to(x.dtype))).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend x (B, C, H, W) with the mean of its grey image (one value per sample), factor (B,)."""
    mean = rgb_to_grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend x (B, 3, H, W) with its grey image, factor (B,); grey input is returned unchanged."""
    if x.shape[1] == 1:
        return x
    return _blend(x, rgb_to_grey(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue of x (B, 3, H, W) in [0, 1] by shift (B,) turns; grey input is returned unchanged.

    The same as torchvision's ``adjust_hue`` (RGB -> HSV, ``h = (h + shift) mod 1``, HSV -> RGB) up to
    float rounding, without building the HSV image: value ``v = max(R, G, B)`` and chroma
    ``max - min`` are kept, and output channel ``n`` (5 for R, 3 for G, 1 for B) is
    ``v - chroma * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6`` (the closed form of
    HSV -> RGB). Branches are blends with 0/1 weights, which are cheaper than ``torch.where`` on CPU.
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    vmax = torch.maximum(torch.maximum(r, g), b)
    chroma = vmax - torch.minimum(torch.minimum(r, g), b)
    inv = 1.0 / chroma.clamp(min=1e-12)  # where chroma is 0 the hue does not matter
    # hue in sixths of a turn: (g - b) / chroma if R is the max, else 2 + (b - r) / chroma if G is,
    # else 4 + (r - g) / chroma. sign(vmax - c) is 0 where channel c is the max, else 1.
    hue6 = torch.lerp(
        (g - b) * inv,
        torch.lerp((b - r) * inv + 2.0, (r - g) * inv + 4.0, torch.sign(vmax - g)),
        torch.sign(vmax - r),
    )
    hue6 = hue6 + 6.0 * shift.to(x.dtype).view(-1, 1, 1)
    n = (5.0 - 2.0 * torch.arange(3, dtype=x.dtype, device=x.device)).view(1, 3, 1, 1)  # R 5, G 3, B 1
    k = hue6.unsqueeze(1) + n  # (B, 3, H, W)
    k = k - 6.0 * torch.floor(k * (1.0 / 6.0))  # k mod 6
    ramp = (2.0 - (k - 2.0).abs_()).clamp_(0.0, 1.0)  # clamp(min(k, 4 - k), 0, 1) for k in [0, 6)
    return torch.addcmul(vmax.unsqueeze(1), chroma.unsqueeze(1), ramp, value=-1.0).clamp_(0.0, 1.0)


def grayscale(x: Tensor) -> Tensor:
    """Grey version of x (B, C, H, W), keeping C channels (a grey input is returned as is)."""
    if x.shape[1] == 1:
        return x
    return rgb_to_grey(x).expand_as(x)


# --------------------------------------------------------------------------------------------
# Blur and solarisation
# --------------------------------------------------------------------------------------------


def blur_radius(sigma_max: float, out_size: int) -> int:
    """Kernel radius ceil(3 * sigma_max), capped at (out_size - 1) // 2 so that 2 r + 1 <= out_size."""
    return max(0, min(math.ceil(3.0 * sigma_max), (out_size - 1) // 2))


def gaussian_kernels(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1-D Gaussian kernels (B, 2 radius + 1), one per sigma (B,)."""
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (t / sigma.unsqueeze(1)) ** 2)
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


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Separable Gaussian blur of x (B, C, H, W) with per-sample sigma (B,) and kernel radius ``radius``
    (the same for all samples), reflect padding, like torchvision's ``gaussian_blur`` with kernel size
    ``2 radius + 1``. Each direction is one batched matrix product with per-sample banded matrices
    (several times faster than a grouped convolution with B * C groups on CPU)."""
    if radius == 0:
        return x
    height, width = x.shape[-2:]
    sigma = sigma.to(x.dtype)
    rows = blur_matrices(sigma, radius, height).unsqueeze(1)  # (B, 1, H, H)
    cols = blur_matrices(sigma, radius, width).unsqueeze(1)  # (B, 1, W, W)
    return torch.matmul(rows, torch.matmul(x, cols.transpose(-1, -2))).clamp_(0.0, 1.0)


def solarize(x: Tensor) -> Tensor:
    """x -> 1 - x where x >= 0.5 (torchvision's solarize with threshold 0.5), as min(x, 1 - x), which
    is the same thing bit for bit and cheaper than ``torch.where`` on CPU."""
    return torch.minimum(x, 1.0 - x)


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

    def _color_jitter(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Brightness, contrast, saturation, hue where ``p["jitter"]``; factors of other samples are
        set to the identity (exact: factor 1 gives back x bit for bit), and hue is selected by mask."""
        c, on = self.cfg, p["jitter"]
        colour = x.shape[1] == 3
        if c.brightness > 0:
            x = adjust_brightness(x, torch.where(on, p["brightness"], 1.0))
        if c.contrast > 0:
            x = adjust_contrast(x, torch.where(on, p["contrast"], 1.0))
        if colour and c.saturation > 0:
            x = adjust_saturation(x, torch.where(on, p["saturation"], 1.0))
        if colour and c.hue > 0:
            x = self._maybe(on, c.jitter_p, adjust_hue(x, p["hue"]), x)
        return x

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """x float32 (B, C, H, W) in [0, 1] and parameters from :meth:`sample_params` (on x's device)
        -> float32 (B, C, out_size, out_size) in [0, 1]."""
        if x.shape[1] not in (1, 3):
            raise ValueError(f"expected 1 or 3 channels, got images of shape {tuple(x.shape)}")
        x = crop_flip_rotate(x, params["crop_box"], params["flip"], params["angle"], self.out_size)
        if self.do_jitter:
            x = self._color_jitter(x, params)
        if self.do_grayscale and x.shape[1] == 3:
            x = self._maybe(params["grayscale"], self.cfg.grayscale_p, rgb_to_grey(x).expand_as(x), x)
        if self.do_blur:
            x = self._maybe(params["blur"], self.cfg.blur_p, gaussian_blur(x, params["sigma"], self.blur_radius), x)
        if self.do_solarize:
            x = self._maybe(params["solarize"], self.cfg.solarize_p, solarize(x), x)
        return x

    @staticmethod
    def _maybe(mask: Tensor, p: float, y: Tensor, x: Tensor) -> Tensor:
        """y where mask (B,), else x; just y when the operation's probability p is 1 (mask all True)."""
        return y if p >= 1.0 else _select(mask, y, x)

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


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def resize_images(images: Tensor, out_size: int) -> Tensor:
    """Deterministic resize for evaluation: uint8 or float (B, C, H, W) -> float32 (B, C, S, S) in [0, 1].

    Bilinear (``align_corners=False``), anti-aliased when shrinking; a non-square input is stretched
    to a square. When the size already matches, only the conversion to float in [0, 1] happens.
    """
    x = to_float(images)
    height, width = x.shape[-2:]
    if height == out_size and width == out_size:
        return x
    shrink = height > out_size or width > out_size
    y = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=shrink)
    return y.clamp_(0.0, 1.0)
