"""Batched per-sample augmentations: parameter ranges, shapes, reproducibility, and each operation
against torchvision's functional reference (CPU, tiny shapes)."""

import dataclasses
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from vicreg.augment import (
    TwoViews,
    ViewTransform,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    affine_grid,
    crop_flip_rotate,
    gaussian_blur,
    grayscale,
    solarize,
)
from vicreg.config import AugmentConfig, ViewAugment
from vicreg.image_ops import resize_images
from vicreg.presets import RECIPES

B = 64

# every operation on, with probabilities strictly inside (0, 1) so masks must be mixed
ALL_ON = ViewAugment(crop_scale=(0.2, 0.9), crop_ratio=(0.5, 2.0), flip_p=0.5, rotation=30.0, jitter_p=0.5,
                     brightness=0.4, contrast=0.3, saturation=0.2, hue=0.1, grayscale_p=0.5, blur_p=0.5,
                     blur_sigma=(0.2, 1.5), solarize_p=0.5)
IDENTITY = ViewAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, rotation=0.0, jitter_p=0.0,
                       grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def images(b: int = B, c: int = 3, h: int = 16, w: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), generator=gen(seed), dtype=torch.uint8)


def view(recipe: str, which: str = "view_a") -> ViewAugment:
    return ViewAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in RECIPES[recipe][which].items()})


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def test_params_per_sample_and_in_range():
    h, w = 20, 24
    p = ViewTransform(ALL_ON, 16).sample_params(B, 3, h, w, gen())
    expected = {"crop_box", "flip", "angle", "jitter", "brightness", "contrast", "saturation", "hue",
                "grayscale", "blur", "sigma", "solarize"}
    assert set(p) == expected
    for key, v in p.items():
        assert v.shape[0] == B, key
        assert v.device.type == "cpu"
        if v.dtype == torch.bool:
            assert 0 < int(v.sum()) < B, f"{key}: mask should differ between samples"
        else:
            assert v.dtype == torch.float32
            assert len(torch.unique(v.flatten(1) if v.ndim > 1 else v, dim=0)) == B, f"{key}: not per sample"

    x0, y0, cw, ch = p["crop_box"].unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + cw <= w + 1e-4).all() and (y0 + ch <= h + 1e-4).all()
    area = cw * ch / (h * w)
    assert (area >= 0.2 - 1e-5).all() and (area <= 0.9 + 1e-5).all()  # ranges chosen so every box fits
    ratio = cw / ch
    assert (ratio >= 0.5 - 1e-5).all() and (ratio <= 2.0 + 1e-5).all()
    assert (p["angle"].abs() <= 30.0).all() and p["angle"].abs().max() > 15.0
    for key, s in (("brightness", 0.4), ("contrast", 0.3), ("saturation", 0.2)):
        assert (p[key] >= 1 - s).all() and (p[key] <= 1 + s).all()
    assert (p["hue"].abs() <= 0.1).all() and (p["hue"] < 0).any() and (p["hue"] > 0).any()
    assert (p["sigma"] >= 0.2).all() and (p["sigma"] <= 1.5).all()


def test_crop_attempts_and_fallback_match_torchvision_rules():
    # ratio range far from the image's: no attempt fits -> torchvision's central fallback box
    cfg = dataclasses.replace(IDENTITY, crop_scale=(0.9, 1.0), crop_ratio=(3.0, 4.0))
    box = ViewTransform(cfg, 8).sample_params(16, 3, 10, 10, gen())["crop_box"]
    # in_ratio 1 < 3: w = W, h = W / 3, centred
    assert torch.allclose(box, torch.tensor([0.0, (10 - 10 / 3) / 2, 10.0, 10 / 3]).expand(16, 4), atol=1e-5)
    # scale 1 with a ratio range excluding 1 never fits either (area of the whole image, wrong shape)
    cfg = dataclasses.replace(IDENTITY, crop_scale=(1.0, 1.0), crop_ratio=(0.5, 0.6))
    box = ViewTransform(cfg, 8).sample_params(4, 3, 10, 20, gen())["crop_box"]
    # in_ratio 2 > 0.6: h = H, w = H * 0.6 = 6, centred
    assert torch.allclose(box, torch.tensor([[7.0, 0.0, 6.0, 10.0]] * 4), atol=1e-5)
    # a wide range where large boxes often fail: every box still fits and a fitting attempt was kept
    cfg = dataclasses.replace(IDENTITY, crop_scale=(0.08, 1.0), crop_ratio=(0.75, 4 / 3))
    box = ViewTransform(cfg, 8).sample_params(2000, 3, 32, 32, gen())["crop_box"]
    x0, y0, w, h = box.unbind(1)
    assert (x0 + w <= 32 + 1e-4).all() and (y0 + h <= 32 + 1e-4).all()
    ratio = w / h
    assert ((ratio >= 0.75 - 1e-5) & (ratio <= 4 / 3 + 1e-5)).all()
    # torchvision's rejection makes large areas rarer than uniform: mean area below 0.54
    assert 0.40 < float((w * h / 1024).mean()) < 0.53


# --------------------------------------------------------------------------------------------
# Whole views
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("recipe", ["paper", "cifar", "grey28", "digits"])
def test_two_views_shape_dtype_range(recipe, channels):
    cfg = AugmentConfig(recipe=recipe, view_a=view(recipe, "view_a"), view_b=view(recipe, "view_b"))
    xa, xb = TwoViews(cfg, 12)(images(16, channels, 14, 18), gen())
    for v in (xa, xb):
        assert v.shape == (16, channels, 12, 12)
        assert v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    assert not torch.equal(xa, xb)
    # samples get different parameters: no two outputs of a batch of distinct crops coincide
    assert (xa[1:] - xa[:1]).flatten(1).abs().amax(1).min() > 0


@pytest.mark.parametrize("channels", [1, 3])
def test_all_ops_output_range_and_float_input(channels):
    t = ViewTransform(ALL_ON, 10)
    x = images(B, channels, 12, 12)
    out = t(x, gen(3))
    assert out.shape == (B, channels, 10, 10) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # float input in [0, 1] gives the same result as uint8
    assert torch.equal(t(x.float() / 255, gen(3)), out)


def test_same_seed_same_output_different_seed_different():
    cfg = AugmentConfig(view_a=ALL_ON, view_b=view("paper", "view_b"))
    two = TwoViews(cfg, 12)
    x = images(32, 3, 16, 16)
    a1, b1 = two(x, gen(7))
    a2, b2 = two(x, gen(7))
    a3, b3 = two(x, gen(8))
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, a3) and not torch.equal(b1, b3)
    # resumable: the generator state after a batch continues the same stream
    g = gen(7)
    two(x, g)
    state = g.get_state()
    nxt = two(x, g)
    g2 = torch.Generator()
    g2.set_state(state)
    again = two(x, g2)
    assert torch.equal(nxt[0], again[0]) and torch.equal(nxt[1], again[1])
    # TwoViews draws exactly as view_a then view_b on one generator
    g3 = gen(7)
    assert torch.equal(two.view_a(x, g3), a1) and torch.equal(two.view_b(x, g3), b1)


def test_identity_crop_reproduces_input():
    x = images(8, 3, 16, 16)
    out = ViewTransform(IDENTITY, 16)(x, gen())
    assert (out - x.float() / 255).abs().max() < 1e-5


def test_flip_is_exact_mirror():
    cfg = dataclasses.replace(IDENTITY, flip_p=1.0)
    x = images(8, 3, 16, 16)
    out = ViewTransform(cfg, 16)(x, gen())
    assert (out - torch.flip(x.float() / 255, dims=[3])).abs().max() < 1e-5


def test_rotation_by_90_degrees_is_rot90_counter_clockwise():
    x = torch.rand(2, 3, 8, 8, generator=gen())
    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2)
    out = crop_flip_rotate(x, box, torch.tensor([False, False]), torch.tensor([90.0, 90.0]), 8)
    assert (out - torch.rot90(x, 1, dims=(2, 3))).abs().max() < 1e-5
    assert (out - TF.rotate(x, 90.0)).abs().max() < 1e-5


def test_affine_grid_matches_torch():
    theta = torch.randn(5, 2, 3, generator=gen())
    reference = torch.nn.functional.affine_grid(theta, [5, 1, 7, 7], align_corners=False)
    assert (affine_grid(theta, 7) - reference).abs().max() < 1e-5


def test_crop_box_selects_that_region():
    x = torch.rand(1, 1, 16, 16, generator=gen())
    box = torch.tensor([[4.0, 2.0, 8.0, 8.0]])  # x0, y0, w, h: an 8x8 window, output 8x8: exact copy
    out = crop_flip_rotate(x, box, torch.tensor([False]), torch.tensor([0.0]), 8)
    assert (out - x[:, :, 2:10, 4:12]).abs().max() < 1e-5


def test_upsampling_whole_image_matches_torchvision_resize():
    # border padding: edge samples repeat the edge pixel, as torch's bilinear resize does
    x = torch.rand(2, 3, 12, 12, generator=gen())
    box = torch.tensor([[0.0, 0.0, 12.0, 12.0]] * 2)
    out = crop_flip_rotate(x, box, torch.tensor([False, False]), torch.tensor([0.0, 0.0]), 20)
    ref = TF.resize(x, [20, 20], antialias=False)
    assert (out - ref).abs().max() < 1e-5


def test_constant_image_stays_constant_through_geometry():
    cfg = dataclasses.replace(IDENTITY, crop_scale=(0.08, 1.0), crop_ratio=(0.5, 2.0), flip_p=0.5, rotation=45.0)
    x = torch.full((16, 3, 10, 14), 153, dtype=torch.uint8)
    out = ViewTransform(cfg, 12)(x, gen())
    assert (out - 0.6).abs().max() < 1e-6  # no dark edges or corners


def test_probability_zero_ops_are_skipped_and_one_always_applied():
    x = images(16, 3, 8, 8)
    only_solarize = dataclasses.replace(IDENTITY, solarize_p=1.0)
    out = ViewTransform(only_solarize, 8)(x, gen())
    assert torch.equal(out, solarize(x.float() / 255))
    only_grey = dataclasses.replace(IDENTITY, grayscale_p=1.0)
    out = ViewTransform(only_grey, 8)(x, gen())
    assert (out[:, 0] == out[:, 1]).all() and (out[:, 1] == out[:, 2]).all()
    t = ViewTransform(IDENTITY, 8)
    assert not (t.do_jitter or t.do_grayscale or t.do_blur or t.do_solarize)


def test_masks_select_per_sample():
    cfg = dataclasses.replace(IDENTITY, solarize_p=0.5)
    t = ViewTransform(cfg, 8)
    x = torch.rand(32, 3, 8, 8, generator=gen())
    p = t.sample_params(32, 3, 8, 8, gen(5))
    out = t.apply(x, p)
    s = p["solarize"]
    assert 0 < int(s.sum()) < 32
    assert (out[s] - solarize(x[s])).abs().max() < 1e-5
    assert (out[~s] - x[~s]).abs().max() < 1e-5


def test_masked_ops_are_exact_per_sample():
    """A mask picks, per sample, the unmasked result or the input, bit for bit (no blending error)."""
    x = torch.rand(8, 3, 10, 10, generator=gen())
    mask = torch.tensor([True, False, False, True, True, False, True, False])
    shift, sigma = torch.linspace(-0.4, 0.4, 8), torch.linspace(0.3, 1.5, 8)
    for masked, full in [
        (adjust_hue(x, shift, mask), adjust_hue(x, shift)),
        (grayscale(x, mask), grayscale(x)),
        (gaussian_blur(x, sigma, 3, mask), gaussian_blur(x, sigma, 3)),
        (solarize(x, mask), solarize(x)),
    ]:
        assert torch.equal(masked[mask], full[mask])
        assert torch.equal(masked[~mask], x[~mask])
    # identity factors leave samples untouched exactly (how jitter skips samples)
    ones = torch.ones(8)
    assert torch.equal(adjust_brightness(x, ones), x)
    assert torch.equal(adjust_contrast(x, ones), x)
    assert torch.equal(adjust_saturation(x, ones), x)


# --------------------------------------------------------------------------------------------
# Single operations against torchvision
# --------------------------------------------------------------------------------------------


def _rand(c: int = 3, b: int = 4, h: int = 10, w: int = 12) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=gen(11))


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_contrast_against_torchvision(channels):
    x = _rand(channels)
    factors = [0.6, 1.0, 1.3, 1.4]
    f = torch.tensor(factors)
    b, c = adjust_brightness(x, f), adjust_contrast(x, f)
    for i, k in enumerate(factors):
        assert (b[i] - TF.adjust_brightness(x[i], k)).abs().max() < 1e-6
        # luma 0.299 here, 0.2989 in torchvision: means differ by < 1e-4
        assert (c[i] - TF.adjust_contrast(x[i], k)).abs().max() < 2e-4
    assert torch.equal(adjust_brightness(x, torch.ones(4)), x)


def test_saturation_grayscale_against_torchvision():
    x = _rand()
    factors = [0.0, 0.8, 1.0, 1.2]
    s = adjust_saturation(x, torch.tensor(factors))
    for i, k in enumerate(factors):
        assert (s[i] - TF.adjust_saturation(x[i], k)).abs().max() < 2e-4
    g = grayscale(x)
    assert g.shape == x.shape
    assert (g - TF.rgb_to_grayscale(x, num_output_channels=3)).abs().max() < 2e-4
    assert (g[:, 0] - (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])).abs().max() < 1e-6
    # grey images: saturation and grayscale do nothing
    x1 = _rand(1)
    assert torch.equal(adjust_saturation(x1, torch.full((4,), 0.5)), x1)
    assert torch.equal(grayscale(x1), x1)


def test_hue_against_torchvision():
    x = _rand(b=6)
    # include pure greys and saturated primaries, where the hue formula has its edge cases
    x[0, :, 0, :3] = torch.tensor([[0.5, 1.0, 0.0], [0.5, 0.0, 1.0], [0.5, 0.0, 0.0]])
    shifts = [-0.5, -0.25, -0.03, 0.0, 0.1, 0.5]
    out = adjust_hue(x, torch.tensor(shifts))
    for i, h in enumerate(shifts):
        assert (out[i] - TF.adjust_hue(x[i], h)).abs().max() < 1e-5
    assert (out[3] - x[3]).abs().max() < 1e-5
    x1 = _rand(1)
    assert torch.equal(adjust_hue(x1, torch.full((4,), 0.3)), x1)


def test_solarize_exact():
    x = torch.linspace(0, 1, 101).view(1, 1, 1, 101)
    assert torch.equal(solarize(x), TF.solarize(x, 0.5))
    assert torch.equal(solarize(x), torch.where(x >= 0.5, 1 - x, x))
    # per-sample mask: exactly torch.where on the chosen samples, untouched elsewhere
    y = torch.rand(6, 3, 4, 4, generator=gen())
    mask = torch.tensor([True, False, True, True, False, False])
    assert torch.equal(solarize(y, mask), torch.where(mask.view(-1, 1, 1, 1) & (y >= 0.5), 1 - y, y))


@pytest.mark.parametrize("sigma,radius", [(0.5, 2), (1.2, 4), (2.0, 6)])
def test_blur_against_torchvision(sigma, radius):
    x = _rand(3, b=2, h=16, w=14)
    out = gaussian_blur(x, torch.full((2,), sigma), radius)
    ref = TF.gaussian_blur(x, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])
    assert (out - ref).abs().max() < 1e-5


def test_blur_per_sample_sigma():
    x = _rand(1, b=3, h=12, w=12)
    sigmas = [0.3, 1.0, 2.0]
    out = gaussian_blur(x, torch.tensor(sigmas), 5)
    for i, s in enumerate(sigmas):
        ref = TF.gaussian_blur(x[i], kernel_size=[11, 11], sigma=[s, s])
        assert (out[i] - ref).abs().max() < 1e-5
    # more blur, less variance
    var = out.flatten(1).var(1)
    assert var[0] > var[1] > var[2]


def test_blur_radius_capped_to_image():
    cfg = dataclasses.replace(IDENTITY, blur_p=1.0, blur_sigma=(1.0, 2.0))
    assert ViewTransform(cfg, 32).blur_radius == 6
    assert ViewTransform(cfg, 8).blur_radius == 3
    out = ViewTransform(cfg, 8)(images(4, 3, 8, 8), gen())
    assert out.shape == (4, 3, 8, 8) and float(out.max()) <= 1.0


# --------------------------------------------------------------------------------------------
# Evaluation resize
# --------------------------------------------------------------------------------------------


def test_resize_images():
    x = images(3, 3, 16, 16)
    same = resize_images(x, 16)
    assert same.dtype == torch.float32 and torch.equal(same, x.float() / 255)
    small = resize_images(x, 8)
    assert small.shape == (3, 3, 8, 8) and small.dtype == torch.float32
    ref = torch.nn.functional.interpolate(x.float() / 255, size=(8, 8), mode="bilinear", antialias=True)
    assert (small - ref).abs().max() < 1e-6
    # a 2x shrink with antialias averages 2x2 blocks of a constant image exactly
    const = torch.full((1, 1, 16, 16), 51, dtype=torch.uint8)
    assert torch.allclose(resize_images(const, 8), torch.full((1, 1, 8, 8), 0.2))
    big = resize_images(images(2, 1, 8, 8), 20)
    assert big.shape == (2, 1, 20, 20) and 0.0 <= float(big.min()) and float(big.max()) <= 1.0
    assert resize_images(images(2, 3, 10, 14), 12).shape == (2, 3, 12, 12)
    # the mean brightness survives an upsampling
    assert math.isclose(float(big.mean()), float(images(2, 1, 8, 8).float().mean() / 255), abs_tol=0.02)


def test_temporal_views_pick_two_frames_of_one_clip_up_to_the_offset_apart():
    from vicreg.augment import TemporalViews
    from vicreg.config import build_config

    cfg = build_config("sprites")
    frames, b = 6, 400
    # frame t of clip i is filled with the value 10 * (i % 20) + t
    values = (10 * (torch.arange(b) % 20)).view(b, 1) + torch.arange(frames).view(1, frames)
    clips = values.view(b, frames, 1, 1).expand(b, frames, 4, 4).to(torch.uint8).contiguous()
    views = TemporalViews(cfg.augment, 4, channels=1, max_offset=3)
    first, later = views.pick_frames(clips, torch.Generator().manual_seed(0))
    t0, t1 = first[:, 0, 0, 0].long() % 10, later[:, 0, 0, 0].long() % 10
    assert torch.equal(first[:, 0, 0, 0].long() // 10, later[:, 0, 0, 0].long() // 10)  # the same clip
    d = t1 - t0
    assert set(d.tolist()) == {1, 2, 3} and t1.max() <= frames - 1 and t0.min() >= 0
    xa, xb = views(clips, torch.Generator().manual_seed(0))
    assert xa.shape == xb.shape == (b, 1, 4, 4) and xa.dtype == torch.float32
    with pytest.raises(ValueError, match="max_offset=3"):
        views(clips[:, :3], torch.Generator())
