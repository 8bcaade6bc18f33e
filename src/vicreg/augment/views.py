"""The view modules: :class:`ViewTransform` (one randomly augmented view, parameters drawn per sample),
:class:`TwoViews` (VICReg's pair of views of each image) and :class:`TemporalViews` (two frames of each clip, a
random number of frames apart). Pure batched tensor code with no host synchronisation in
:meth:`ViewTransform.apply`; what each operation does is in :mod:`vicreg.augment`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import AugmentConfig, ViewAugment
from ..image_ops import to_float
from .functional import (
    CROP_ATTEMPTS,
    adjust_brightness_,
    adjust_contrast_,
    adjust_hue_,
    adjust_saturation_,
    blur_radius,
    crop_flip_rotate,
    gaussian_blur,
    grayscale_,
    sample_crop_boxes,
    solarize_,
)


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
            "crop_box": sample_crop_boxes(u_scale, u_ratio, rest[:, 0:2], height, width, c.crop_scale, c.crop_ratio),
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
