"""vicreg.image_ops: the conversions and deterministic resizes, against values worked out by hand."""

import torch

from vicreg.image_ops import resize_images, resize_uint8, to_float


def test_to_float_divides_bytes_by_255_and_only_casts_floats():
    x = to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
    # 51 / 255 = 0.2: IEEE division rounds correctly, so it is float32(0.2) exactly
    assert x.dtype == torch.float32 and torch.equal(x, torch.tensor([0.0, 0.2, 1.0]))
    half = torch.tensor([0.5, 2.0], dtype=torch.float64)
    assert torch.equal(to_float(half), torch.tensor([0.5, 2.0]))  # no scaling of a float input


def test_resize_images_averages_when_halving_and_passes_a_matching_float_through():
    x = torch.tensor([[[[0, 255], [255, 255]]]], dtype=torch.uint8)  # (1, 1, 2, 2)
    # 2 -> 1 with the anti-aliasing triangle: both input pixels of each axis weigh the same, so the mean
    assert torch.equal(resize_images(x, 1), torch.tensor([[[[0.75]]]]))
    same = torch.rand(2, 3, 5, 5)
    assert resize_images(same, 5) is same
    up = resize_images(torch.full((1, 1, 3, 7), 200, dtype=torch.uint8), 6)  # stretched to a square
    assert up.shape == (1, 1, 6, 6) and torch.allclose(up, torch.full_like(up, 200 / 255))


def test_resize_uint8_keeps_bytes_and_rounds():
    flat = resize_uint8(torch.full((2, 1, 8, 8), 77, dtype=torch.uint8), 4)
    assert flat.dtype == torch.uint8 and torch.equal(flat, torch.full((2, 1, 4, 4), 77, dtype=torch.uint8))
    x = torch.tensor([[[[10, 11], [11, 11]]]], dtype=torch.uint8)
    assert resize_uint8(x, 1).item() == 11  # mean 10.75 rounds to 11
    same = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).transpose(2, 3)
    out = resize_uint8(same, 4)
    assert out.is_contiguous() and torch.equal(out, same)
