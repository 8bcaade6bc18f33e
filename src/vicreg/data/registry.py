"""The dataset registry: ``data.dataset`` name -> loader, and :func:`load_dataset`."""

from __future__ import annotations

from typing import Callable

from ..config import DataConfig
from .dataset import ImageDataset, Log, first_items
from .episodes import load_episodes_dataset, native_episode_size
from .folder import load_folder
from .images import (
    load_cifar10,
    load_cifar100,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    load_stl10,
)
from .sprites import load_sprites_dataset
from .video import load_moving_mnist_dataset

LOADERS: dict[str, Callable[[DataConfig, Log], ImageDataset]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "stl10": load_stl10,
    "folder": load_folder,
    "sprites": load_sprites_dataset,
    "moving-mnist": load_moving_mnist_dataset,
    "episodes": load_episodes_dataset,
}


def native_size(cfg: DataConfig) -> int:
    """The side of ``cfg.dataset``'s images as its loader gives them, without loading it (what a run's model
    was fed when data.image_size is not set, before the backbone's minimum)."""
    sizes = {"digits": 8, "fashion-mnist": 28, "mnist": 28, "cifar10": 32, "cifar100": 32, "stl10": 96,
             "folder": cfg.image_size or 64, "sprites": cfg.video.canvas, "moving-mnist": 64}
    if cfg.dataset == "episodes":
        return native_episode_size(cfg)
    if cfg.dataset not in sizes:
        raise ValueError(f"unknown dataset {cfg.dataset!r} (known datasets: {', '.join(sizes)})")
    return sizes[cfg.dataset]


def load_dataset(cfg: DataConfig, log: Log = print) -> ImageDataset:
    """Load ``cfg.dataset`` into uint8 tensors (or a streamed source); logs one line saying what and from where."""
    loader = LOADERS.get(cfg.dataset)
    if loader is None:
        raise ValueError(f"unknown dataset {cfg.dataset!r} (known datasets: {', '.join(LOADERS)})")
    ds = loader(cfg, log)
    if cfg.limit_train is not None or cfg.limit_test is not None:
        same = ds.train_labeled is ds.train
        ds.train = first_items(ds.train, cfg.limit_train)
        ds.train_labeled = ds.train if same else first_items(ds.train_labeled, cfg.limit_train)
        ds.test = first_items(ds.test, cfg.limit_test)
        log(f"using the first {len(ds.train)} training and {len(ds.test)} test images (data.limit_train/limit_test)")
    return ds
