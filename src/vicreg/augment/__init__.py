"""Batched image augmentations with different random parameters for every sample, on CPU and GPU.

Everything here is pure tensor code over the whole batch: no Python loop over samples and no
host-device synchronisation (no ``.item()``, ``.cpu()``, boolean-mask indexing or data-dependent
branches) in :meth:`ViewTransform.apply`, so it can run under CUDA graphs or ``torch.compile``
(``torch.compile(view.apply, fullgraph=True)`` traces without graph breaks; Dynamo cannot take the
``torch.Generator`` argument of ``forward``, so sample the parameters outside a compiled region).
Which operations exist is decided once, in ``__init__``, from the configuration: an operation whose
probability or strength is 0 is skipped entirely, and one with probability 1 skips its mask. Which
samples an operation touches is decided per batch by per-sample masks, applied as exact 0/1 blends
(see :func:`vicreg.augment.functional.mask_weight`) or identity factors.

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

The package: ``functional`` (the operations as batched functions of per-sample parameter tensors of
shape ``(B,)``, usable on their own) and ``views`` (the modules). The functions :func:`adjust_brightness`,
:func:`adjust_contrast`, :func:`adjust_saturation`, :func:`adjust_hue`, :func:`grayscale`, :func:`gaussian_blur`
and :func:`solarize` return new tensors;
the versions ending in ``_`` work in place.
"""

from .functional import (
    adjust_brightness,
    adjust_brightness_,
    adjust_contrast,
    adjust_contrast_,
    adjust_hue,
    adjust_hue_,
    adjust_saturation,
    adjust_saturation_,
    affine_grid,
    affine_theta,
    blur_radius,
    crop_flip_rotate,
    gaussian_blur,
    grayscale,
    grayscale_,
    rgb_to_grey,
    solarize,
    solarize_,
)
from .views import TemporalViews, TwoViews, ViewTransform

__all__ = [
    "ViewTransform", "TwoViews", "TemporalViews", "crop_flip_rotate", "affine_theta", "affine_grid",
    "adjust_brightness", "adjust_brightness_", "adjust_contrast", "adjust_contrast_", "adjust_saturation",
    "adjust_saturation_", "adjust_hue", "adjust_hue_", "rgb_to_grey", "grayscale", "grayscale_", "blur_radius",
    "gaussian_blur", "solarize", "solarize_",
]
