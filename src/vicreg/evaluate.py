"""Evaluation of a frozen representation: feature extraction and weighted k-NN accuracy.

Weighted k-NN as in the instance-discrimination literature (Wu et al. 2018; DINO): features are
L2-normalised, the k most cosine-similar training samples vote for their class with weight
exp(similarity / temperature), and the class with the largest total wins. Top-1 accuracy in percent.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import resize_images

__all__ = ["extract_features", "knn_accuracy", "raw_pixel_features"]


@torch.no_grad()
def extract_features(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], input_size: int,
                     autocast_dtype: torch.dtype | None = None, channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """Embeddings (model.embed) of every image of ``batches`` (uint8 on the device), resized to
    ``input_size`` without augmentation. Returns float32 features (N, E) and int64 labels (N,) on the device."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    for images, y in batches:
        x = resize_images(images, input_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            feats.append(model.embed(x).float())
        labels.append(y)
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def raw_pixel_features(batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Flattened raw pixels in [0, 1] (N, C*H*W) and labels: the baseline a representation must beat."""
    feats, labels = [], []
    for images, y in batches:
        feats.append(images.flatten(1).float() / 255)
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def knn_accuracy(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
                 ks: Iterable[int] = (20, 200), temperature: float = 0.1, chunk: int = 1024) -> dict[int, float]:
    """Weighted k-NN top-1 accuracy (%) for each k. Features (N, D), labels int64 (N,); unlabelled
    training samples (label -1) are ignored."""
    keep = train_labels >= 0
    bank = F.normalize(train_features[keep].float(), dim=1)  # (Ntr, D)
    bank_labels = train_labels[keep]
    ks = sorted(set(int(k) for k in ks))
    if bank.shape[0] == 0:
        raise ValueError("knn_accuracy needs labelled training features, got none")
    num_classes = int(bank_labels.max()) + 1
    k_max = min(ks[-1], bank.shape[0])
    correct = {k: 0 for k in ks}
    for start in range(0, test_features.shape[0], chunk):
        q = F.normalize(test_features[start:start + chunk].float(), dim=1)  # (B, D)
        y = test_labels[start:start + chunk]
        sim, idx = (q @ bank.T).topk(k_max, dim=1)  # (B, k_max), sorted by similarity
        weights = (sim / temperature).exp()
        neighbour_labels = bank_labels[idx]  # (B, k_max)
        for k in ks:
            kk = min(k, k_max)
            votes = torch.zeros(q.shape[0], num_classes, device=q.device)
            votes.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk])
            correct[k] += int((votes.argmax(dim=1) == y).sum())
    n = test_features.shape[0]
    return {k: 100.0 * correct[k] / n for k in ks}
