"""Backbone registry and the VICReg model: backbone -> head -> embedding -> expander -> projection.

Three outputs, named the same everywhere in the package:

- ``representation``: the backbone's output (e.g. 512-D for ResNet-18, 512-D for the VGG16 conv stack);
- ``embedding``: the head's output, E-D (the write-up's embedding, what it plots). With ``head="none"``
  there is no head and the embedding *is* the representation. **The embedding is what k-NN evaluation
  and the pictures use.**
- ``projection``: the expander's output, R-D; the VICReg loss is applied to it and nothing else.

Backbones are registered by name (``BACKBONES``); ``create_backbone(name, in_channels)`` builds one and
``register_backbone`` adds your own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from .config import ModelConfig

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "register_backbone",
    "create_backbone",
    "seed_head",
    "mlp_head",
    "expander",
    "VICReg",
    "ModelOutput",
    "build_model",
]


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


def create_backbone(name: str, in_channels: int = 3, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build a registered backbone; returns (module, output dimension)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r} (known backbones: {', '.join(sorted(BACKBONES))})")
    spec = BACKBONES[name]
    return spec.build(in_channels, pretrained), spec.out_dim


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
                   description="torchvision VGG16 conv stack (features), pooled and flattened to 512-D; the seed preset")
def vgg16(in_channels: int, pretrained: bool = False) -> nn.Module:
    import torchvision

    features = torchvision.models.vgg16(weights="DEFAULT" if pretrained else None).features
    features[0] = _with_in_channels(features[0], in_channels)
    # With 32x32 input the stack ends at (B, 512, 1, 1); larger inputs are average-pooled to 1x1.
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten())


# --------------------------------------------------------------------------------------------
# Heads and expander
# --------------------------------------------------------------------------------------------


def seed_head(in_dim: int, widths: list[int], embedding_dim: int, dropout: float) -> nn.Sequential:
    """The write-up's embedding head: Linear in->w0, ReLU, Dropout, Linear w0->w1, ReLU, BatchNorm1d(w1),
    Linear w1->E (in=512, w=(128, 32), E=50)."""
    w0, w1 = widths
    return nn.Sequential(
        nn.Linear(in_dim, w0), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(w0, w1), nn.ReLU(inplace=True), nn.BatchNorm1d(w1),
        nn.Linear(w1, embedding_dim),
    )


def mlp_head(in_dim: int, widths: list[int], out_dim: int) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU for each hidden width, then a final Linear to out_dim."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(in_dim, w), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
        in_dim = w
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def expander(in_dim: int, widths: list[int]) -> nn.Sequential:
    """The VICReg expander from a list of widths: [80, 80, 100] gives Linear E->80, BN, ReLU, Linear 80->80,
    BN, ReLU, Linear 80->100 (paper: 8192-8192-8192; CIFAR practice: 2048-2048-2048)."""
    return mlp_head(in_dim, widths[:-1], widths[-1])


class ModelOutput(NamedTuple):
    representation: Tensor  # (B, backbone dim)
    embedding: Tensor  # (B, E); equals representation when there is no head
    projection: Tensor  # (B, R), the loss's input


class VICReg(nn.Module):
    """images (B, C, H, W) float in [0, 1] -> ModelOutput(representation, embedding, projection).

    The model normalises its input itself (per-channel mean/std of the training set, stored as buffers),
    so a checkpoint carries everything needed to embed new images.
    """

    def __init__(self, backbone: nn.Module, backbone_dim: int, head: nn.Module | None, embedding_dim: int,
                 expander_widths: list[int], mean: list[float], std: list[float], freeze_backbone: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()
        self.expander = expander(embedding_dim, expander_widths)
        self.backbone_dim, self.embedding_dim = backbone_dim, embedding_dim
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # a frozen backbone keeps its batch-norm statistics fixed too
        return self

    def represent(self, x: Tensor) -> Tensor:
        x = (x - self.mean) / self.std
        if self.freeze_backbone:
            with torch.no_grad():
                return self.backbone(x)
        return self.backbone(x)

    def embed(self, x: Tensor) -> Tensor:
        """images -> embedding (B, E): the representation used for evaluation and plots."""
        return self.head(self.represent(x))

    def forward(self, x: Tensor) -> ModelOutput:
        r = self.represent(x)
        e = self.head(r)
        return ModelOutput(r, e, self.expander(e))


def build_model(cfg: ModelConfig, in_channels: int, mean: list[float], std: list[float]) -> VICReg:
    backbone, dim = create_backbone(cfg.backbone, in_channels, cfg.pretrained)
    if cfg.head == "none":
        head, e = None, dim
    elif cfg.head == "seed":
        head, e = seed_head(dim, cfg.head_widths, cfg.embedding_dim, cfg.dropout), cfg.embedding_dim
    else:
        head, e = mlp_head(dim, cfg.head_widths, cfg.embedding_dim), cfg.embedding_dim
    return VICReg(backbone, dim, head, e, cfg.expander, mean, std, cfg.freeze_backbone)
