"""The containers every loader returns: a :class:`Split` (uint8 images in memory, or a source to stream
from) and an :class:`ImageDataset` of three splits; plus the subsets the training loop takes of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

Log = Callable[[str], None]


@dataclass(eq=False)
class Split:
    """One split: labels always, and either all images in memory or a ``source`` to stream from."""

    labels: torch.Tensor  # int64 (N,), CPU; -1 where unknown (unlabeled images)
    images: torch.Tensor | None  # uint8 (N, C, H, W), CPU, when held in memory
    source: Dataset | None = None  # when streamed: item i -> (uint8 (C, H, W) tensor, int label)
    # device copies made by data.batches.Batches, shared by every Batches over this split (e.g. train and bank)
    device_copies: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.images is None and self.source is None:
            raise ValueError("a Split needs images or a source")
        n = len(self.labels)
        if self.images is not None and len(self.images) != n:
            raise ValueError(f"a Split has {len(self.images)} images but {n} labels")
        if self.images is None and len(self.source) != n:  # type: ignore[arg-type]
            raise ValueError(f"a Split's source has {len(self.source)} items but {n} labels")  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(eq=False)
class ImageDataset:
    name: str
    classes: list[str]
    channels: int
    image_size: int  # square: H == W
    train: Split  # images for self-supervised training (STL-10: train + unlabeled, label -1)
    train_labeled: Split  # labelled training images (k-NN bank, linear probe); `train` when all are labelled
    test: Split


def in_memory(images: torch.Tensor | np.ndarray, labels) -> Split:
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    return Split(torch.as_tensor(np.asarray(labels), dtype=torch.int64).contiguous(), images.contiguous())


def make_dataset(name: str, classes: list[str], train: Split, test: Split, where: str, log: Log,
             train_labeled: Split | None = None, note: str = "") -> ImageDataset:
    sample = train.images[0] if train.images is not None else source_image(train.source, 0)
    c, h, w = sample.shape
    ds = ImageDataset(name, list(classes), c, h, train, train_labeled if train_labeled is not None else train, test)
    log(f"{name}: {len(train)} train{note} / {len(test)} test images, {c}x{h}x{w}, {len(classes)} classes, "
        f"from {where}")
    return ds


def first_items(split: Split, n: int | None) -> Split:
    """The first ``n`` items of a split (all of them when n is None or larger)."""
    if n is None or n >= len(split):
        return split
    if split.images is not None:
        return Split(split.labels[:n], split.images[:n])
    return Split(split.labels[:n], None, source_subset(split.source, list(range(n))))


def spread_subset(split: Split, n: int) -> Split:
    """``n`` items evenly spaced over a split (all of them when n >= len): a fixed sample that covers every
    class even when the split is sorted by class (image folders)."""
    if n >= len(split):
        return split
    idx = torch.linspace(0, len(split) - 1, n).round().long()
    if split.images is not None:
        return Split(split.labels[idx], split.images[idx])
    return Split(split.labels[idx], None, source_subset(split.source, idx.tolist()))


def source_subset(source: Dataset, indices: list[int]) -> Dataset:
    """Items ``indices`` of a streamed source, keeping its own way of batching and decoding when it has one."""
    return source.subset(indices) if hasattr(source, "subset") else torch.utils.data.Subset(source, indices)


def source_image(source: Dataset, i: int) -> torch.Tensor:
    """Item i of a streamed source as a uint8 (C, H, W) image (a source of encoded files decodes it)."""
    return source.image(i) if hasattr(source, "image") else source[i][0]


def stats_sample(dataset: ImageDataset, whole_clips: bool = False, streamed_count: int = 1000) -> torch.Tensor:
    """The uint8 images the input normalisation is measured on: the training split (the labelled frames when
    training on whole clips, whose channels stack frames), or about ``streamed_count`` images spread over a
    streamed split."""
    images = dataset.train_labeled.images if whole_clips else dataset.train.images
    if images is not None:
        return images
    every = max(1, len(dataset.train) // streamed_count)
    return torch.stack([source_image(dataset.train.source, i) for i in range(0, len(dataset.train), every)])


def channel_stats(images: torch.Tensor, max_images: int = 10_000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of (up to ``max_images`` of) a uint8 (N, C, H, W) tensor."""
    x = images[:max_images].float().div_(255).transpose(0, 1).flatten(1)  # (C, N*H*W)
    return x.mean(dim=1).tolist(), x.std(dim=1).clamp_min(1e-3).tolist()
