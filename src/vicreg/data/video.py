"""Video data: the container of sequences (:class:`Sequences`), Moving MNIST, and the adapter that makes a set of
sequences an image dataset for the training loop (single frames, or clips for temporal views).

:func:`load_moving_mnist` reads torchvision's Moving MNIST (10 000 sequences of 20 frames, 64x64) and splits its
sequences 90 % / 10 % into train / test; :func:`load_moving_mnist_dataset` makes it usable by the image training
loop (``data.dataset`` "moving-mnist"). The generated moving sprites are :mod:`vicreg.data.sprites`.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import DataConfig
from .dataset import ImageDataset, Log, in_memory
from .download import DEFAULT_ROOT, tv_download

__all__ = [
    "MOVING_MNIST_FILE",
    "MOVING_MNIST_TEST_FRACTION",
    "Sequences",
    "load_moving_mnist",
    "load_moving_mnist_dataset",
    "video_dataset",
]

SPLITS = ("train", "test")
MOVING_MNIST_FILE = "MovingMNIST/mnist_test_seq.npy"  # under the data root, as torchvision lays it out
MOVING_MNIST_TEST_FRACTION = 0.1  # the last 10 % of the sequences are the test split


def quiet(_msg: str) -> None:
    """A log that prints nothing."""


# --------------------------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Sequences:
    """N video sequences of T frames and, for generated ones, what made them (None where unknown)."""

    frames: Tensor  # uint8 (N, T, C, H, W)
    positions: Tensor | None  # float32 (N, T, K, 2): (x, y) top-left of each sprite, before rounding
    velocities: Tensor | None  # float32 (N, T, K, 2): the velocity that moves each sprite from frame t to t+1
    actions: Tensor | None  # float32 (N, T, 2): push added to sprite 0's velocity before step t -> t+1 (0: none)
    distractors: Tensor | None  # float32 (N, T, M, 2): (x, y) top-left of each leaf at frame t
    classes: Tensor | None  # int64 (N, K): class of each sprite
    class_names: list[str]
    sprite_images: Tensor | None = None  # uint8 (N, K, C, S, S): the image drawn for each sprite
    states: Tensor | None = None  # float64 (N, T, S): an environment's true state at each frame (collected episodes)

    def __len__(self) -> int:
        return len(self.frames)

    def select(self, index: Tensor) -> Sequences:
        """The sequences at ``index`` (a 1-D long tensor), with their labels."""
        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index]

        return Sequences(self.frames[index], pick(self.positions), pick(self.velocities), pick(self.actions),
                         pick(self.distractors), pick(self.classes), list(self.class_names), pick(self.sprite_images),
                         pick(self.states))

    def frames_flat(self) -> Tensor:
        """All frames, sequence-major: uint8 (N*T, C, H, W) (a view when ``frames`` is contiguous)."""
        n, t, c, h, w = self.frames.shape
        return self.frames.reshape(n * t, c, h, w)


def check_split(split: str) -> None:
    """One line when ``split`` is neither train nor test."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid: expected one of {', '.join(SPLITS)}")


# --------------------------------------------------------------------------------------------
# Moving MNIST
# --------------------------------------------------------------------------------------------


def _moving_mnist_root(data_dir: str | None) -> Path:
    return Path(data_dir if data_dir is not None else DEFAULT_ROOT).expanduser()


def _read_moving_mnist(data_dir: str | None, download: bool, log: Log = quiet) -> Tensor:
    """All of Moving MNIST as uint8 (N, T, 1, H, W) (the file holds (T, N, H, W)), through torchvision."""
    from torchvision.datasets import MovingMNIST

    root = _moving_mnist_root(data_dir)
    path = root / MOVING_MNIST_FILE
    if not path.is_file():
        if not download:
            raise FileNotFoundError(f"moving-mnist not found: {path} does not exist; get it with --data.download true "
                                    f"(torchvision fetches {MovingMNIST._URL}), or put mnist_test_seq.npy in "
                                    f"<data_dir>/MovingMNIST/")
        root.mkdir(parents=True, exist_ok=True)
        tv_download("moving-mnist", lambda r: MovingMNIST(r, download=True), root, log)
    try:
        data = MovingMNIST(str(root), split=None, download=False).data  # (N, T, 1, H, W)
    except (ValueError, OSError, IndexError, pickle.UnpicklingError) as e:
        raise ValueError(f"corrupt Moving MNIST file {path}: cannot read it as a numpy array ({e})") from None
    if data.dtype != torch.uint8 or data.dim() != 5 or len(data) < 2:
        raise ValueError(f"corrupt Moving MNIST file {path}: expected a uint8 array (T, N, H, W) with N >= 2 "
                         f"sequences, read {data.dtype} {tuple(data.shape)} as (N, T, 1, H, W)")
    return data


def _split_sequences(data: Tensor, split: str) -> Tensor:
    """The first 90 % of the sequences (train) or the last 10 %, at least one (test)."""
    n_test = max(1, round(len(data) * MOVING_MNIST_TEST_FRACTION))
    return data[:len(data) - n_test] if split == "train" else data[len(data) - n_test:]


def _unlabelled(frames: Tensor) -> Sequences:
    return Sequences(frames, None, None, None, None, None, [])


def load_moving_mnist(data_dir: str | None, download: bool, split: str) -> Sequences:
    """Moving MNIST ``split``: the first 90 % (train) or last 10 % (test) of the file's sequences.

    Frames uint8 (N, 20, 1, 64, 64), no labels. torchvision's own ``split`` cuts every sequence in time
    (frames ``:10`` / ``10:``), so whole sequences are read and split here. The file is looked for at
    ``<data_dir>/MovingMNIST/mnist_test_seq.npy`` (data_dir None: ``~/.cache/vicreg/data``).
    """
    check_split(split)
    part = _split_sequences(_read_moving_mnist(data_dir, download), split)
    return _unlabelled(part if split == "train" else part.clone())  # the test slice would pin the whole file


# --------------------------------------------------------------------------------------------
# As image datasets for the training loop
# --------------------------------------------------------------------------------------------


def video_dataset(name: str, classes: list[str], train: Sequences, test: Sequences, temporal_offset: int,
                   label_of: Callable[[Sequences], Tensor]) -> ImageDataset:
    """Frames of train/test as ``train_labeled``/``test``; ``train`` the same frames, or clips (N, T*C, H, W)."""
    n, t_len, c, h, w = train.frames.shape
    frames = in_memory(train.frames_flat(), label_of(train).repeat_interleave(t_len))
    test_frames = in_memory(test.frames_flat(), label_of(test).repeat_interleave(test.frames.shape[1]))
    clips = frames if temporal_offset == 0 else in_memory(train.frames.reshape(n, t_len * c, h, w), label_of(train))
    return ImageDataset(name, list(classes), c, h, clips, frames, test_frames)


def no_label(seqs: Sequences) -> Tensor:
    """Label -1 for every sequence: a source without classes."""
    return torch.full((len(seqs),), -1, dtype=torch.int64)


def train_note(ds: ImageDataset, temporal_offset: int) -> str:
    if temporal_offset == 0:
        return "training on single frames"
    return f"training on {len(ds.train)} clips (temporal views up to {temporal_offset} frames apart)"


def load_moving_mnist_dataset(cfg: DataConfig, log: Log = print) -> ImageDataset:
    """Moving MNIST (90 % / 10 % of its sequences) as an unlabelled ImageDataset (labels -1, no classes)."""
    start = time.perf_counter()
    data = _read_moving_mnist(cfg.data_dir, cfg.download, log)
    train, test = (_unlabelled(_split_sequences(data, s)) for s in SPLITS)
    seconds = time.perf_counter() - start
    ds = video_dataset("moving-mnist", [], train, test, cfg.temporal_offset, no_label)
    _, t_len, _, h, w = data.shape
    log(f"moving-mnist: loaded {len(train)} train / {len(test)} test sequences x {t_len} frames, {h}x{w}, "
        f"unlabelled, from {_moving_mnist_root(cfg.data_dir) / MOVING_MNIST_FILE} in {seconds:.2f} s; "
        f"{train_note(ds, cfg.temporal_offset)}")
    return ds
