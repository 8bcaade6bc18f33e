"""The VICReg loss (Bardes, Ponce, LeCun, ICLR 2022), as pure functions of (N, D) tensors.

For two batches of projections ``za``, ``zb`` of shape (N, D), both views of the same N images::

    invariance(za, zb) = mean_{n,d} (za[n,d] - zb[n,d])^2                   (MSE)
    variance(z)        = mean_d relu(gamma - sqrt(Var_n(z[:, d]) + eps))     (hinge on the std)
    covariance(z)      = sum_{i != j} C(z)[i, j]^2 / D,   C(z) = (z - mean)^T (z - mean) / (N - 1)

    loss = lam * invariance(za, zb)
         + mu  * (variance(za) + variance(zb))        # "sum": paper's formula and the write-up
         + nu  * (covariance(za) + covariance(zb))

The official code (facebookresearch/vicreg, main_vicreg.py) and lightly's VICRegLoss *average* the two
views' variance terms, ``(variance(za) + variance(zb)) / 2``: the same as halving mu. Choose with
``variance_reduction="sum"`` (default) or ``"mean"``. Both sum the covariance terms.

Multi-GPU: the invariance term is local to each process; the variance and covariance terms must see the
whole global batch. Pass ``gather`` (a function (n, D) -> (N, D) that all-gathers across processes with
gradients) and only those two terms are computed on the gathered embeddings, with the same maths.
Everything is computed in float32 even when the model runs under bf16 autocast; float64 inputs stay
float64 (the tests check exactness that way).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["invariance_term", "variance_term", "covariance_term", "vicreg_loss", "VICRegLoss", "LossTerms"]


class LossTerms(NamedTuple):
    """The weighted total and the three *unweighted* terms: 0-d tensors in float32 (half-precision inputs are
    promoted), or in float64 when the inputs are float64."""

    loss: Tensor
    invariance: Tensor
    variance: Tensor  # the two views combined (summed or averaged, see variance_reduction)
    covariance: Tensor  # the two views summed


def invariance_term(za: Tensor, zb: Tensor) -> Tensor:
    """Mean squared error between the two views. za, zb: (N, D) -> scalar."""
    return F.mse_loss(za, zb)


def variance_term(z: Tensor, eps: float = 1e-4, gamma: float = 1.0) -> Tensor:
    """Hinge on the per-dimension std: mean_d relu(gamma - sqrt(var_d + eps)). z: (N, D) -> scalar."""
    std = torch.sqrt(z.var(dim=0) + eps)  # (D,), unbiased variance over the batch
    return F.relu(gamma - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances divided by D. z: (N, D) -> scalar."""
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / (n - 1)  # (D, D)
    off_diagonal = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
    return off_diagonal / d


def _check_inputs(za: Tensor, zb: Tensor) -> None:
    if za.ndim != 2 or zb.ndim != 2:
        raise ValueError(f"vicreg_loss expects two (N, D) batches, got shapes {tuple(za.shape)} and {tuple(zb.shape)}")
    if za.shape != zb.shape:
        raise ValueError(f"vicreg_loss expects two batches of the same shape, got {tuple(za.shape)} and "
                         f"{tuple(zb.shape)}")
    if za.shape[0] < 2:
        raise ValueError(f"vicreg_loss needs a batch of N >= 2 samples to compute a variance, got N={za.shape[0]}")


def _check_finite(za: Tensor, zb: Tensor) -> None:
    # One fused reduction; a host sync, so the training loop turns it off (check_finite=False).
    if not bool(torch.isfinite(za).all() & torch.isfinite(zb).all()):
        raise ValueError("vicreg_loss got non-finite values (NaN or inf) in its input: the model diverged "
                         "(try a lower learning rate, or a larger eps) or the data holds NaN")


def vicreg_loss(
    za: Tensor,
    zb: Tensor,
    lam: float = 25.0,
    mu: float = 25.0,
    nu: float = 1.0,
    eps: float = 1e-4,
    gamma: float = 1.0,
    variance_reduction: str = "sum",
    gather: Callable[[Tensor], Tensor] | None = None,
    check_finite: bool = True,
) -> LossTerms:
    """VICReg loss of two views za, zb: (N, D). Returns LossTerms(loss, invariance, variance, covariance).

    Args:
        lam, mu, nu: weights of the invariance, variance and covariance terms (paper: 25, 25, 1).
        eps: added to the variance inside the square root (1e-4).
        gamma: target std of the variance hinge (1).
        variance_reduction: "sum" adds the two views' variance terms (the paper's formula, the write-up);
            "mean" averages them (the official code and lightly; equivalent to mu / 2).
        gather: optional all-gather with gradients applied to each view before the variance and
            covariance terms (multi-GPU); the invariance term stays on the local batch.
        check_finite: raise a clear error on NaN/inf input (costs a host sync).
    """
    _check_inputs(za, zb)
    if variance_reduction not in ("sum", "mean"):
        raise ValueError(f"variance_reduction={variance_reduction!r} is not valid: expected 'sum' or 'mean'")
    if check_finite:
        _check_finite(za, zb)
    dtype = torch.promote_types(za.dtype, torch.float32)  # float32 even under bf16 autocast (float64 stays)
    za, zb = za.to(dtype), zb.to(dtype)
    with torch.autocast(device_type=za.device.type, enabled=False):
        inv = invariance_term(za, zb)
        if gather is not None:
            za, zb = gather(za), gather(zb)
        var = variance_term(za, eps, gamma) + variance_term(zb, eps, gamma)
        if variance_reduction == "mean":
            var = var / 2
        cov = covariance_term(za) + covariance_term(zb)
        loss = lam * inv + mu * var + nu * cov
    return LossTerms(loss, inv, var, cov)


class VICRegLoss(nn.Module):
    """Thin module around :func:`vicreg_loss` holding the weights. forward(za, zb) -> LossTerms."""

    def __init__(self, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0, eps: float = 1e-4, gamma: float = 1.0,
                 variance_reduction: str = "sum", gather: Callable[[Tensor], Tensor] | None = None,
                 check_finite: bool = True):
        super().__init__()
        self.lam, self.mu, self.nu, self.eps, self.gamma = lam, mu, nu, eps, gamma
        self.variance_reduction, self.gather, self.check_finite = variance_reduction, gather, check_finite

    def forward(self, za: Tensor, zb: Tensor) -> LossTerms:
        return vicreg_loss(za, zb, self.lam, self.mu, self.nu, self.eps, self.gamma, self.variance_reduction,
                           self.gather, self.check_finite)

    def extra_repr(self) -> str:
        return (f"lam={self.lam}, mu={self.mu}, nu={self.nu}, eps={self.eps}, gamma={self.gamma}, "
                f"variance_reduction={self.variance_reduction!r}")
