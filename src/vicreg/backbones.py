"""The backbone registry: name -> constructor, output width and smallest input side; and any timm model.

``BACKBONES`` maps each name to a :class:`BackboneSpec`; ``create_backbone(name, in_channels)`` builds one
and the ``register_backbone`` decorator adds your own (as timm's registry does). A name ``timm:NAME`` is any
model of timm (:mod:`vicreg.timm_backbone`), Vision Transformers included. Nothing here knows the config:
vicreg.config validates ``model.backbone`` with :func:`backbone_problem`, vicreg.models builds the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .errors import first_line
from .timm_backbone import TIMM_PREFIX, build_timm, check_timm_name, is_timm

__all__ = ["BACKBONES", "BackboneSpec", "register_backbone", "create_backbone", "backbone_problem", "input_size",
           "TIMM_PREFIX", "is_timm"]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable[[int, bool], nn.Module]  # (in_channels, pretrained) -> module mapping images to (B, out_dim)
    out_dim: int
    min_size: int  # smallest input side the backbone accepts; smaller images are resized up to it
    description: str


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, out_dim: int, min_size: int, description: str):
    """Decorator: register ``build(in_channels, pretrained) -> nn.Module`` under ``name``."""

    def wrap(build):
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        BACKBONES[name] = BackboneSpec(name, build, out_dim, min_size, description)
        return build

    return wrap


def backbone_problem(name: str) -> str | None:
    """None for a registered name or a model timm knows (``timm:NAME``), else what is wrong, in words."""
    if is_timm(name):
        return check_timm_name(name)
    if name in BACKBONES:
        return None
    return f"expected one of {', '.join(sorted(BACKBONES))}, or timm:NAME (any timm model)"


def create_backbone(name: str, in_channels: int = 3, pretrained: bool = False, image_size: int | None = None,
                    args: dict | None = None) -> tuple[nn.Module, int]:
    """Build a registered backbone or a timm one; returns (module, output dimension). ``image_size`` (the side of
    the images it will see) and ``args`` (keyword arguments) are for timm models; registered ones take any size
    from their minimum on and no arguments."""
    if is_timm(name):
        return build_timm(name, in_channels, pretrained, image_size, args)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r} (known backbones: {', '.join(sorted(BACKBONES))})")
    if args:
        raise ValueError(f"model.backbone_args={args} is not valid for {name}: only timm backbones take arguments")
    spec = BACKBONES[name]
    try:
        return spec.build(in_channels, pretrained), spec.out_dim
    except (OSError, RuntimeError) as e:  # torchvision's download: offline, or a broken file in the cache
        if not pretrained:
            raise
        raise OSError(f"cannot load the pretrained weights of {name} ({type(e).__name__}: {first_line(e)}): put "
                      f"them in {torch.hub.get_dir()}/checkpoints from a machine online, or use "
                      f"--model.pretrained false") from None


# --------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register_backbone("small_cnn", out_dim=512, min_size=8,
                   description="4-conv CNN for fast CPU runs, pooled to 2x2 (keeps the layout), 512-D")
def small_cnn(in_channels: int, pretrained: bool = False) -> nn.Module:
    if pretrained:
        raise ValueError("small_cnn has no pretrained weights (use model.pretrained=false)")
    return nn.Sequential(
        *_conv_bn_relu(in_channels, 32),  # (B, 32, H, W)
        *_conv_bn_relu(32, 64, stride=2),  # (B, 64, H/2, W/2)
        *_conv_bn_relu(64, 128, stride=2),  # (B, 128, H/4, W/4)
        *_conv_bn_relu(128, 128),
        nn.AdaptiveAvgPool2d(2),  # (B, 128, 2, 2): where a stroke is matters for digits and letters
        nn.Flatten(),  # (B, 512)
    )


def _with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` itself, or a copy taking ``in_channels`` inputs whose weights are the mean over the original
    input channels (so pretrained RGB filters still respond to grey images)."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight.mean(dim=1, keepdim=True).expand_as(new.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _torchvision_resnet(arch: str, pretrained: bool) -> nn.Module:
    import torchvision

    weights = "DEFAULT" if pretrained else None
    net = getattr(torchvision.models, arch)(weights=weights)
    net.fc = nn.Identity()
    return net


@register_backbone("resnet18_cifar", out_dim=512, min_size=8,
                   description="ResNet-18 with the CIFAR stem (3x3 conv stride 1, no max-pool), 512-D")
def resnet18_cifar(in_channels: int, pretrained: bool = False) -> nn.Module:
    net = _torchvision_resnet("resnet18", pretrained)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net


@register_backbone("resnet18", out_dim=512, min_size=32, description="ResNet-18, ImageNet stem, 512-D")
def resnet18(in_channels: int, pretrained: bool = False) -> nn.Module:
    net = _torchvision_resnet("resnet18", pretrained)
    net.conv1 = _with_in_channels(net.conv1, in_channels)
    return net


@register_backbone("resnet50", out_dim=2048, min_size=32, description="ResNet-50, ImageNet stem, 2048-D")
def resnet50(in_channels: int, pretrained: bool = False) -> nn.Module:
    net = _torchvision_resnet("resnet50", pretrained)
    net.conv1 = _with_in_channels(net.conv1, in_channels)
    return net


@register_backbone("vgg16", out_dim=512, min_size=32,
                   description="torchvision VGG16 conv stack (features), pooled and flattened to 512-D; "
                               "the seed preset")
def vgg16(in_channels: int, pretrained: bool = False) -> nn.Module:
    import torchvision

    features = torchvision.models.vgg16(weights="DEFAULT" if pretrained else None).features
    features[0] = _with_in_channels(features[0], in_channels)
    # With 32x32 input the stack ends at (B, 512, 1, 1); larger inputs are average-pooled to 1x1.
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def input_size(backbone: str, native: int, requested: int | None = None,
               log: Callable[[str], None] = print) -> int:
    """The side of the images fed to ``backbone``: ``requested`` (data.image_size) or the ``native`` size,
    raised to the backbone's minimum (said in the log)."""
    size = requested or native
    min_size = 8 if is_timm(backbone) else BACKBONES[backbone].min_size  # timm: the model's own check, when built
    if size < min_size:
        log(f"resizing {size}x{size} images to {min_size}x{min_size}: backbone {backbone} needs at least "
            f"{min_size}x{min_size}")
        size = min_size
    elif size != native:
        log(f"resizing {native}x{native} images to {size}x{size} (data.image_size)")
    return size
