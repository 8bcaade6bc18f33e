"""Collapse diagnostics of an embedding matrix: is the space spread out, or has it collapsed?

Two kinds of collapse (Jing et al. 2022, "Understanding dimensional collapse"):

- *complete* collapse: every sample maps to (nearly) the same point; all per-dimension stds are ~0.
- *dimensional* collapse: the points spread, but along a few directions only; the singular values of the
  centred embedding matrix fall off a cliff and the effective rank is far below the dimension.

For an embedding matrix z of shape (N, D)::

    std_j          = sqrt(var_j + eps)                       per-dimension std over the N samples (the loss's)
    s_1 >= s_2 ... singular values of z - mean(z)            the spectrum
    p_i            = s_i / sum(s)
    effective rank = exp(-sum_i p_i log p_i)                 (Roy & Vetterli 2007): 1 for a line, D for a ball
    below target   = mean_j [std_j < gamma]                  the dimensions the variance hinge still pushes

A covariance term near zero does *not* by itself mean "no collapse": a collapsed embedding (all stds 0)
has zero covariance too. Read the std and the effective rank together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Diagnostics", "collapse_diagnostics", "effective_rank", "per_dim_std", "singular_values"]


@dataclass
class Diagnostics:
    dim: int  # D
    std: list[float]  # (D,) per-dimension std over the samples
    singular_values: list[float]  # (min(N, D),) of the centred matrix, descending
    effective_rank: float  # in [1, min(N, D)]
    frac_below_target: float  # fraction of dimensions with std < target

    def to_dict(self) -> dict:
        return {"dim": self.dim, "std": self.std, "singular_values": self.singular_values,
                "effective_rank": self.effective_rank, "frac_below_target": self.frac_below_target}

    def summary(self) -> str:
        return f"eff. rank {self.effective_rank:.1f}/{self.dim}, {100 * self.frac_below_target:.0f}% dims std<target"


def per_dim_std(z: Tensor, eps: float = 1e-4) -> Tensor:
    """(N, D) -> (D,): sqrt(var + eps) over the batch, the quantity the variance term hinges on."""
    return torch.sqrt(z.float().var(dim=0) + eps)


def singular_values(z: Tensor) -> Tensor:
    """(N, D) -> (min(N, D),): singular values of the centred matrix, descending.

    Computed as the square roots of the eigenvalues of the smaller Gram matrix in float64: the same values
    as svdvals to ~1e-8 of the largest, and about ten times faster on CPU for 2048 x 2048."""
    z = z.double()
    z = z - z.mean(dim=0)
    gram = z.T @ z if z.shape[1] <= z.shape[0] else z @ z.T
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0).sqrt()


def effective_rank(s: Tensor) -> float:
    """exp(entropy of s / sum(s)) for singular values s >= 0 (Roy & Vetterli 2007). 1.0 when all but one
    are zero; len(s) when all are equal; 0.0 for an all-zero spectrum (nothing spread at all)."""
    s = s.double().clamp_min(0)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def collapse_diagnostics(z: Tensor, target: float = 1.0, eps: float = 1e-4) -> Diagnostics:
    """All diagnostics of an embedding matrix z (N, D), N >= 2; ``target`` is the variance hinge's gamma."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"collapse_diagnostics needs an (N, D) matrix with N >= 2, got shape {tuple(z.shape)}")
    std = per_dim_std(z, eps)
    s = singular_values(z)
    return Diagnostics(
        dim=z.shape[1],
        std=[round(v, 6) for v in std.cpu().tolist()],
        singular_values=[round(v, 6) for v in s.cpu().tolist()],
        effective_rank=round(effective_rank(s), 4),
        frac_below_target=round(float((std < target).float().mean()), 6),
    )
