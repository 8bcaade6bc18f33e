"""Process-group helpers. In one process (no torch.distributed group) they are no-ops.

The VICReg variance and covariance terms must see the global batch: :func:`gather_with_grad` concatenates
every process's (n, D) embeddings into (world_size * n, D), with gradients flowing back to each process's
own slice. Pass it as ``gather=`` to :func:`vicreg.loss.vicreg_loss`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all-gather along dim 0. Backward: each process's slice of the summed gradients.

    Every process computes the loss on the gathered batch, so the gradient of its own rows is the sum over
    processes of the gradients those rows received there: an all-reduce, then this process's slice.
    """

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

    Every process must pass the same n (the training loop drops the last partial batch).
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
