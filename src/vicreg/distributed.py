"""Data-parallel training on torch.distributed: the process group, and the collectives the maths needs.

``torchrun --nproc-per-node N -m vicreg train ...`` starts N processes; :func:`init_from_env` joins them into
one group (gloo on the CPU, nccl on CUDA, picked automatically) and gives each its device. In one process
(no ``WORLD_SIZE`` > 1 in the environment) everything here is a no-op, so the single-process path is the
same code.

What keeps N processes exact to one process on the global batch:

- each process trains on a distinct shard of every global batch (vicreg.data.batches);
- the variance and covariance terms see the projections of every process (:func:`gather_with_grad`), with
  gradients flowing back to each process's own rows; the invariance term is local, and DDP's average of
  the gradients over processes makes it the global mean;
- batch norm uses the statistics of the global batch, per view (vicreg.batchnorm with ``sync=True``), as the
  paper's SyncBatchNorm does.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import NodeConfigError

__all__ = ["Dist", "Vote", "init_from_env", "is_distributed", "world_size", "rank", "gather_with_grad",
           "gather_rows", "data_parallel", "all_gather_stack", "all_reduce_sum", "all_reduce_mean",
           "broadcast_object", "barrier", "shutdown"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` (``local_rank`` on its node), the backend."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a single process, no group
    cpu_group: Any = field(default=None, compare=False, repr=False)  # a gloo group for host-side votes (Vote)

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run directory, logs and pictures."""
        return self.rank == 0


def init_from_env(device: str = "auto", timeout_s: float | None = None) -> Dist:
    """Join the process group that torchrun (or Slurm with the same variables) describes in the environment:
    ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. One process when there is no
    ``WORLD_SIZE`` or it is 1. The backend is nccl when this process trains on CUDA, else gloo; beside it, a
    gloo group for the stop vote (:class:`Vote`). Collectives that wait longer than ``timeout_s`` raise instead
    of hanging (default: ``VICREG_DIST_TIMEOUT`` seconds, else 3600: a long evaluation or checkpoint on one rank
    keeps the others waiting). A dead peer is usually reported at once by gloo and nccl, without the timeout."""
    timeout_s = timeout_s or float(os.environ.get("VICREG_DIST_TIMEOUT", "3600"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not is_distributed():
        cuda = torch.cuda.is_available() and device != "cpu" and not str(device).startswith("cpu")
        if cuda:
            _check_gpus(local_rank)
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    cpu_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))  # every rank, same order
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), cpu_group)


def _check_gpus(local_rank: int) -> None:
    """One GPU a process: the same line on every rank when a node starts more processes than it has GPUs."""
    gpus = torch.cuda.device_count()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
    if max(per_node, local_rank + 1) > gpus:
        raise NodeConfigError(f"{per_node} processes on a node with {gpus} GPU(s): start at most {gpus} per node "
                          f"(--nproc-per-node {gpus}), or train on the CPU with --train.device cpu")


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all-gather along dim 0. Backward: each process's slice of the summed gradients.

    Every process computes the variance and covariance terms on the gathered batch, so the gradient of its
    own rows is the sum over processes of the gradients those rows received there: an all-reduce, then
    this process's slice. DDP then averages over processes, which leaves those terms' gradients exactly as
    one process on the global batch has them (the official code's FullGatherLayer does the same)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n:(dist.get_rank() + 1) * n]


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather (n, D) -> (world_size * n, D) along dim 0, differentiable; identity in one process.

    Every process must pass the same n (the training loop's batches are equal shards)."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_rows(x: Tensor | None, dst: int = 0) -> Tensor | None:
    """Every process's rows (n_r, *F), concatenated in rank order, on rank ``dst``; None on the others.

    The processes may hold different numbers of rows (None: none; the others give the shape and dtype). For
    the evaluation's features: rank ``dst`` alone holds the whole bank. ``x`` itself in one process."""
    if world_size() == 1:
        return x
    meta: list = [None] * world_size()
    dist.all_gather_object(meta, None if x is None else (x.shape[0], tuple(x.shape[1:]), x.dtype))
    known = [m for m in meta if m is not None]
    if not known:
        return None
    _, tail, dtype = known[0]
    device = x.device if x is not None else _collective_device()
    padded = torch.zeros((max(m[0] for m in known), *tail), dtype=dtype, device=device)
    if x is not None:
        padded[:len(x)] = x
    parts = [torch.empty_like(padded) for _ in meta] if rank() == dst else None
    dist.gather(padded, parts, dst=dst)
    if parts is None:
        return None
    return torch.cat([part[:m[0]] for part, m in zip(parts, meta) if m is not None])


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_stack(x: Tensor) -> Tensor:
    """(world_size, *x.shape): every process's ``x`` in rank order (no autograd); x[None] in one process."""
    if world_size() == 1:
        return x[None]
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.stack(parts)


def all_reduce_sum(x: Tensor) -> Tensor:
    """The sum over processes of ``x`` (in place; no autograd); ``x`` itself in one process."""
    if world_size() > 1:
        dist.all_reduce(x)
    return x


def all_reduce_mean(x: Tensor) -> Tensor:
    """The mean over processes of ``x`` (a new tensor, no autograd): e.g. the logged loss terms."""
    if world_size() == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every process (e.g. the run directory's name)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DDP for this job. Its batch norm is synced (vicreg.batchnorm), so the buffers (the
    running statistics) stay equal on every process by themselves: DDP does not broadcast them."""
    ddp = nn.parallel.DistributedDataParallel
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})  # the keyword's name changed in torch 2.14
    return ddp(model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class Vote:
    """Flags any process may raise (a stop request, a failure) or counts it may increase, agreed on (their
    maximum over the processes) so that every process acts on them after the same step, without holding up
    the device.

    :meth:`poll` starts an all-reduce (max) of this process's flags on the gloo group beside the training
    group and returns the previous poll's result, which every process receives alike and which finished long
    ago (one step late, no wait). :meth:`settle` waits for the flags of now (epoch ends). Flags must be sticky
    (once raised, raised in every later call; counts never decrease): settle then never loses one. Every
    process must call the same sequence of polls and settles. In one process both return the flags as they are."""

    def __init__(self, d: Dist, n: int):
        self.group, self.world, self.n = d.cpu_group, d.world, n
        self.pending: tuple | None = None  # (work, tensor) of the poll in flight

    def poll(self, flags: Sequence[float]) -> list[float]:
        if self.world == 1:
            return [float(f) for f in flags]
        previous = self.close()
        tensor = torch.tensor([float(f) for f in flags])
        self.pending = (dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group, async_op=True), tensor)
        return previous

    def settle(self, flags: Sequence[float]) -> list[float]:
        if self.world == 1:
            return [float(f) for f in flags]
        self.close()
        tensor = torch.tensor([float(f) for f in flags])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        return tensor.tolist()

    def close(self) -> list[float]:
        """Wait for the poll in flight (if any) and return its result (all 0 without one)."""
        if self.pending is None:
            return [0.0] * self.n
        work, tensor = self.pending
        self.pending = None
        work.wait()
        return tensor.tolist()
