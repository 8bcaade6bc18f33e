"""Searching push sequences that minimise a cost: the cross-entropy method, MPPI and gradient descent.

A planner gets ``cost``, a function from candidate sequences (N, S, H, A) (N episodes, S candidates each,
H steps, A action dims) to costs (N, S), and returns one sequence per episode (N, H, A), every entry inside the
box [-bound, bound]. All candidates of all episodes go through ``cost`` in one call per iteration, so a
world-model cost evaluates them in one batched roll-out. ``mean`` is where the search starts (the previous
plan shifted by the steps executed since, or zeros). Randomness comes from ``generator`` only (on the
device of ``mean``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..config import PlanConfig

__all__ = ["PLANNERS", "Cost", "cem", "mppi", "gradient_descent", "plan"]

Cost = Callable[[Tensor], Tensor]
GD_STEPS_PER_ITERATION = 5


def _samples(mean: Tensor, std: Tensor, count: int, bound: float, generator: torch.Generator) -> Tensor:
    """``count`` Gaussian samples around ``mean`` (N, H, A), clipped to the box; sample 0 is the mean itself."""
    noise = torch.randn((mean.shape[0], count, *mean.shape[1:]), generator=generator, device=mean.device)
    samples = (mean[:, None] + std[:, None] * noise).clamp(-bound, bound)
    samples[:, 0] = mean.clamp(-bound, bound)
    return samples


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """x (N, S, H, A), index (N, E) -> x[n, index[n]]: (N, E, H, A)."""
    return x.gather(1, index[:, :, None, None].expand(-1, -1, *x.shape[2:]))


@torch.no_grad()
def cem(cost: Cost, mean: Tensor, bound: float, cfg: PlanConfig, generator: torch.Generator) -> Tensor:
    """Cross-entropy method: sample around a diagonal Gaussian (starting spread: the push bound), keep the
    ``cfg.elites`` cheapest, refit the mean and spread to them; ``cfg.iterations`` times. Returns the mean."""
    std = torch.full_like(mean, bound)
    for _ in range(cfg.iterations):
        samples = _samples(mean, std, cfg.samples, bound, generator)
        elite = _rows(samples, cost(samples).topk(cfg.elites, dim=1, largest=False).indices)
        mean, std = elite.mean(1), elite.std(1).clamp_min(1e-3 * bound)
    return mean


@torch.no_grad()
def mppi(cost: Cost, mean: Tensor, bound: float, cfg: PlanConfig, generator: torch.Generator) -> Tensor:
    """Model-predictive path integral: sample around the mean with a fixed spread (half the bound), weight
    every sample by softmax(-cost / (temperature x the spread of the costs)), move the mean to the weighted
    average; ``cfg.iterations`` times."""
    std = torch.full_like(mean, bound / 2)
    for _ in range(cfg.iterations):
        samples = _samples(mean, std, cfg.samples, bound, generator)
        c = cost(samples)
        scale = (c.max(1, keepdim=True).values - c.min(1, keepdim=True).values).clamp_min(1e-12)
        weights = torch.softmax(-(c - c.min(1, keepdim=True).values) / (cfg.temperature * scale), dim=1)
        mean = (weights[:, :, None, None] * samples).sum(1)
    return mean


def gradient_descent(cost: Cost, mean: Tensor, bound: float, cfg: PlanConfig, generator: torch.Generator) -> Tensor:
    """Gradient descent through the cost (a differentiable roll-out): ``cfg.gd_starts`` starts around the mean
    (the first is the mean), pushes parametrised as bound x tanh(u) so they stay in the box, Adam
    (``cfg.gd_lr``) for ``cfg.iterations`` x 5 steps on all starts at once; returns the cheapest."""
    start = _samples(mean, torch.full_like(mean, bound / 2), cfg.gd_starts, bound, generator)
    u = torch.atanh((start / bound).clamp(-0.999, 0.999)).requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=cfg.gd_lr)
    with torch.enable_grad():
        for _ in range(cfg.iterations * GD_STEPS_PER_ITERATION):
            optimizer.zero_grad(set_to_none=True)
            cost(bound * torch.tanh(u)).sum().backward()
            optimizer.step()
    with torch.no_grad():
        final = bound * torch.tanh(u)
        best = cost(final).argmin(1)
        return final[torch.arange(len(final), device=final.device), best]


PLANNERS: dict[str, Callable[[Cost, Tensor, float, PlanConfig, torch.Generator], Tensor]] = {
    "cem": cem, "mppi": mppi, "gd": gradient_descent}


def plan(cost: Cost, mean: Tensor, bound: float, cfg: PlanConfig, generator: torch.Generator) -> Tensor:
    """The planner named by ``cfg.planner``: (N, H, A) pushes inside [-bound, bound]."""
    if cfg.planner not in PLANNERS:
        raise ValueError(f"plan.planner={cfg.planner!r} is not valid: expected one of {', '.join(PLANNERS)}")
    return PLANNERS[cfg.planner](cost, mean, bound, cfg, generator)
