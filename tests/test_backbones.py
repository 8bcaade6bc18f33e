"""The backbone registry: every backbone's output width, clear errors, input sizes, registering your own."""

import pytest
import torch
from torch import nn

from vicreg.backbones import BACKBONES, create_backbone, input_size, register_backbone

SIZES = {"small_cnn": 16, "resnet18_cifar": 16, "resnet18": 32, "resnet50": 32, "vgg16": 32}


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_backbone_outputs_its_dim(name, channels):
    net, dim = create_backbone(name, channels)
    size = max(SIZES.get(name, 32), BACKBONES[name].min_size)
    with torch.no_grad():
        out = net.eval()(torch.rand(2, channels, size, size))
    assert out.shape == (2, dim)


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown backbone 'vit' \\(known backbones: resnet18, resnet18_cifar"):
        create_backbone("vit")


def test_resnet18_cifar_stem():
    net, _ = create_backbone("resnet18_cifar", 1)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.in_channels == 1
    assert isinstance(net.maxpool, nn.Identity)


def test_input_size_is_raised_to_the_backbone_minimum_and_said():
    said = []
    assert input_size("vgg16", 8, None, said.append) == 32
    assert said == ["resizing 8x8 images to 32x32: backbone vgg16 needs at least 32x32"]
    assert input_size("small_cnn", 8, 16, said.append) == 16 and said[-1].endswith("(data.image_size)")
    assert input_size("small_cnn", 28, None, said.append) == 28 and len(said) == 2


def test_register_your_own_backbone():
    @register_backbone("tiny_test_net", out_dim=3, min_size=4, description="a test backbone")
    def tiny(in_channels: int, pretrained: bool = False) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(3))

    try:
        net, dim = create_backbone("tiny_test_net", 2)
        assert dim == 3 and net(torch.rand(5, 2, 4, 4)).shape == (5, 3)
        with pytest.raises(ValueError, match="backbone 'tiny_test_net' is already registered"):
            register_backbone("tiny_test_net", 3, 4, "again")(tiny)
    finally:
        del BACKBONES["tiny_test_net"]
