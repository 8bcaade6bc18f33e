"""Batches on the training device: a split copied there once and sliced with a seeded permutation, or
streamed through a DataLoader in the very same order. The order of any epoch depends only on
``(seed, epoch)``, so a resumed run sees exactly the batches it would have seen."""

from __future__ import annotations

import signal
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .dataset import Log, Split

# --------------------------------------------------------------------------------------------
# Batches on the device
# --------------------------------------------------------------------------------------------


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``n`` items in ``epoch``: a CPU randperm seeded from (seed, epoch) only."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, epoch & 0xFFFFFFFFFFFFFFFF]).generate_state(1, np.uint64)
    g = torch.Generator()
    g.manual_seed(int(state[0]) >> 1)
    return torch.randperm(n, generator=g)


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def _shard_bounds(i: int, batch_size: int, n: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [lo, hi) of the order that make this process's part of batch ``i``: the global batch i is
    rows [i*G, (i+1)*G) with G = batch_size * world, and process ``rank`` takes its rank-th slice."""
    rank, world = shard
    start = i * batch_size * world + rank * batch_size
    return min(n, start), min(n, start + batch_size)


class _EpochBatchSampler(Sampler[list[int]]):
    """Index lists of the batches ``start..`` of an epoch, in the (seed, epoch) order of Batches."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int,
                 shard: tuple[int, int] = (0, 1)):
        self.n, self.batch_size, self.shuffle, self.drop_last, self.seed = n, batch_size, shuffle, drop_last, seed
        self.shard = shard
        self.epoch, self.start, self.stop = 0, 0, None

    def _end(self) -> int:
        total = _num_batches(self.n, self.batch_size * self.shard[1], self.drop_last)
        return total if self.stop is None else min(self.stop, total)

    def __len__(self) -> int:
        return max(0, self._end() - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else None
        for i in range(self.start, self._end()):
            lo, hi = _shard_bounds(i, self.batch_size, self.n, self.shard)
            yield order[lo:hi].tolist() if order is not None else list(range(lo, hi))


class _TensorSource(Dataset):
    """An in-memory split seen as a Dataset (placement "stream")."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([torch.as_tensor(x) for x, _ in items])
    return images, torch.tensor([int(y) for _, y in items], dtype=torch.int64)


def _device_key(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def _to_device(t: torch.Tensor, device: torch.device, chunk_bytes: int = 1 << 27) -> torch.Tensor:
    """Copy a CPU tensor to ``device``; on CUDA through pinned chunks with non_blocking copies."""
    if device.type != "cuda":
        return t.to(device)
    t = t.contiguous()
    out = torch.empty(t.shape, dtype=t.dtype, device=device)
    flat_src, flat_dst = t.view(-1), out.view(-1)
    step = max(1, chunk_bytes // max(1, t.element_size()))
    for i in range(0, flat_src.numel(), step):
        flat_dst[i:i + step].copy_(flat_src[i:i + step].pin_memory(), non_blocking=True)
    return out


def _leave_signals_to_the_trainer(worker_id: int) -> None:
    """A loader worker ignores SIGINT and SIGTERM: a Ctrl-C reaches the whole process group and torchrun or Slurm
    signal every process, but it is the training process that stops cleanly (finishing the step, saving); the
    workers exit with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Batches:
    """An iterable of ``(uint8 images (B, C, H, W), int64 labels (B,))`` batches on ``device``.

    resident (``placement`` "device", or "auto" when it fits): the split is copied to the device
    once as one tensor and each batch is gathered from it with a slice of the epoch's permutation;
    streamed ("stream", splits without images in memory, or "auto" when the split does not fit in
    ``max_device_fraction`` of the free GPU memory): a DataLoader with ``num_workers`` persistent
    workers follows the same order. Shuffled orders depend only on ``(seed, epoch)``. Batches that are
    slices of a resident split (no shuffle) are views of it: do not modify them in place.

    shard ``(rank, world)``: data parallelism. The global batch ``i`` is ``batch_size * world`` rows of the
    epoch's order and this process yields its rank-th slice of ``batch_size`` rows, so the processes'
    batches, concatenated in rank order, are the batch one process of ``batch_size * world`` would see.
    """

    def __init__(self, split: Split, batch_size: int, device: torch.device | str, *, shuffle: bool,
                 drop_last: bool, placement: str = "auto", num_workers: int = 4, max_device_fraction: float = 0.5,
                 seed: int = 0, log: Log = print, shard: tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard={shard} is not valid: expected (rank, world) with 0 <= rank < world")
        self.shard = shard
        if placement not in ("auto", "device", "stream"):
            raise ValueError(f"placement={placement!r} is not valid: expected one of 'auto', 'device', 'stream'")
        self.split, self.batch_size, self.device = split, batch_size, torch.device(device)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.resident = self._decide(placement, max_device_fraction, log)
        if self.resident:
            key = _device_key(self.device)
            if key not in split.device_copies:
                if self.device.type == "cpu":
                    split.device_copies[key] = (split.images, split.labels)
                else:
                    split.device_copies[key] = (_to_device(split.images, self.device),  # type: ignore[arg-type]
                                             _to_device(split.labels, self.device))
            self._images, self._labels = split.device_copies[key]
        else:
            self._sampler = _EpochBatchSampler(len(split), batch_size, shuffle, drop_last, seed, shard)
            source = split.source if split.source is not None else _TensorSource(split.images, split.labels)
            self._decode = getattr(source, "decode_batch", None)  # files decoded on the device, a batch at a time
            self._loader = DataLoader(source, batch_sampler=self._sampler, num_workers=num_workers,
                                      worker_init_fn=_leave_signals_to_the_trainer,
                                      collate_fn=getattr(source, "collate", _collate),
                                      pin_memory=self.device.type == "cuda",
                                      persistent_workers=num_workers > 0)

    def _decide(self, placement: str, fraction: float, log: Log) -> bool:
        split = self.split
        if split.images is None:
            if placement == "device":
                raise ValueError(f"placement 'device' needs the images in memory, but this split of {len(split)} "
                                 f"images is streamed from {type(split.source).__name__}; use placement auto or stream")
            return False
        if placement != "auto":
            return placement == "device"
        if self.device.type != "cuda" or _device_key(self.device) in split.device_copies:
            return True
        nbytes = split.images.numel() * split.images.element_size() + split.labels.numel() * 8
        free, _ = torch.cuda.mem_get_info(self.device)
        if nbytes <= fraction * free:
            return True
        log(f"data: {len(split)} images ({nbytes / 1e9:.2f} GB) exceed {fraction:g} of the free GPU memory "
            f"({free / 1e9:.2f} GB): streaming them with a DataLoader")
        return False

    def __len__(self) -> int:
        return _num_batches(len(self.split), self.batch_size * self.shard[1], self.drop_last)

    def epoch(self, epoch: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches ``start, start+1, ..., stop-1`` (default: to the end) of ``epoch`` (images uint8,
        labels int64, on the device).

        With shuffle, the order is :func:`epoch_permutation` ``(len(split), seed, epoch)``, so any
        epoch's order can be recomputed after a restart; without, the split's own order.
        """
        stop = len(self) if stop is None else stop
        if not 0 <= start <= stop <= len(self):
            raise ValueError(f"batches {start}..{stop} are outside 0..{len(self)}")
        return self._resident(epoch, start, stop) if self.resident else self._streamed(epoch, start, stop)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def _resident(self, epoch: int, start: int, stop: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b = len(self.split), self.batch_size
        order = None
        if self.shuffle:
            order = epoch_permutation(n, self.seed, epoch)
            if self.device.type == "cuda":
                order = order.pin_memory().to(self.device, non_blocking=True)
            else:
                order = order.to(self.device)
        for i in range(start, stop):
            lo, hi = _shard_bounds(i, b, n, self.shard)
            if order is None:
                yield self._images[lo:hi], self._labels[lo:hi]
            else:
                idx = order[lo:hi]
                yield self._images.index_select(0, idx), self._labels.index_select(0, idx)

    def _streamed(self, epoch: int, start: int, stop: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._sampler.epoch, self._sampler.start, self._sampler.stop = epoch, start, stop
        for images, labels in _one_line_errors(self._loader):
            images = self._decode(images, self.device) if self._decode else images.to(self.device, non_blocking=True)
            yield images, labels.to(self.device, non_blocking=True)


def _one_line_errors(loader: DataLoader) -> Iterator:
    """The loader's batches; an error raised in a worker comes back as the worker's own one-line error, not
    wrapped in the worker's traceback."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception as e:
            text = str(e)
            if "in DataLoader worker process" not in text:
                raise
            last = text.strip().splitlines()[-1]  # "ValueError: cannot decode ..."
            raise type(e)(last.split(": ", 1)[-1]) from None
        yield batch
