"""The VICReg model: backbone -> head -> embedding -> expander -> projection.

Three outputs, named the same everywhere in the package:

- ``representation``: the backbone's output (e.g. 512-D for ResNet-18, 512-D for the VGG16 conv stack);
- ``embedding``: the head's output, E-D (the write-up's embedding, what it plots). With ``head="none"``
  there is no head and the embedding *is* the representation. **The embedding is what k-NN evaluation
  and the pictures use.**
- ``projection``: the expander's output, R-D; the VICReg loss is applied to it and nothing else.

Backbones come from the registry in :mod:`vicreg.backbones` (``BACKBONES``, ``register_backbone``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .backbones import create_backbone
from .config import ModelConfig

__all__ = [
    "seed_head",
    "mlp_head",
    "expander",
    "VICReg",
    "ModelOutput",
    "build_model",
]


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


def build_model(cfg: ModelConfig, in_channels: int, mean: list[float], std: list[float],
                image_size: int | None = None) -> VICReg:
    """The model of ``cfg`` for images of ``in_channels`` channels and side ``image_size`` (what a timm backbone is
    built for: a ViT's position embeddings fix it; registered backbones take any size from their minimum on)."""
    backbone, dim = create_backbone(cfg.backbone, in_channels, cfg.pretrained, image_size, cfg.backbone_args)
    if cfg.head == "none":
        head, e = None, dim
    elif cfg.head == "seed":
        head, e = seed_head(dim, cfg.head_widths, cfg.embedding_dim, cfg.dropout), cfg.embedding_dim
    else:
        head, e = mlp_head(dim, cfg.head_widths, cfg.embedding_dim), cfg.embedding_dim
    return VICReg(backbone, dim, head, e, cfg.expander, mean, std, cfg.freeze_backbone)
