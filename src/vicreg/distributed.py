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
- batch norm uses the statistics of the global batch, per view (vicreg.step with ``sync=True``), as the
  paper's SyncBatchNorm does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from .config import ConfigError

__all__ = ["Dist", "init_from_env", "is_distributed", "world_size", "rank", "gather_with_grad", "all_reduce_sum",
           "all_reduce_mean", "broadcast_object", "barrier", "shutdown"]


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

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run directory, logs and pictures."""
        return self.rank == 0


def init_from_env(device: str = "auto", timeout_s: float | None = None) -> Dist:
    """Join the process group that torchrun (or Slurm with the same variables) describes in the environment:
    ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. One process when there is no
    ``WORLD_SIZE`` or it is 1. The backend is nccl when this process trains on CUDA, else gloo. Collectives
    that wait longer than ``timeout_s`` raise instead of hanging (default: ``VICREG_DIST_TIMEOUT`` seconds, else
    3600: the other ranks wait while rank 0 evaluates, which takes long on big datasets). A dead peer is
    usually reported at once by gloo and nccl, without waiting for the timeout."""
    timeout_s = timeout_s or float(os.environ.get("VICREG_DIST_TIMEOUT", "3600"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if is_distributed():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                    dist.get_backend())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device != "cpu" and not str(device).startswith("cpu")
    backend = "nccl" if cuda else "gloo"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                              f"start at most that many processes per node (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, backend)


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


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
