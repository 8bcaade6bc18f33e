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


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather (n, D) -> (world_size * n, D) along dim 0, differentiable; identity in one process."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)
