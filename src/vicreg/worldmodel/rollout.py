"""Roll-outs of a trained predictor in embedding space, the two baselines it must beat (next = last, linear
extrapolation), and their errors per horizon in standardised units."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..device import cpu_threads, small_cpu_work
from .predictor import EmbeddingNorm, check_actions, check_embeddings, eval_mode, model_device

__all__ = ["METHODS", "rollout", "baseline_last", "baseline_linear", "rollout_errors"]

METHODS = ("predictor", "last", "linear")  # the keys of rollout_errors


def _norm_on(norm: EmbeddingNorm, device: torch.device) -> EmbeddingNorm:
    """``norm`` on ``device``, without moving the caller's copy."""
    return norm if norm.mean.device == device else EmbeddingNorm(norm.mean.to(device), norm.std.to(device))


def _rollout_standardised(model: nn.Module, norm: EmbeddingNorm, emb: Tensor, start: int, horizon: int,
                          actions: Tensor | None) -> Tensor:
    """Like :func:`rollout`, but returns the predictions in standardised units, on the model's device."""
    k = model.context
    check_embeddings(emb, "emb", dim=model.dim)
    if not k <= start <= emb.shape[1] or horizon < 1:
        raise ValueError(f"rollout needs context <= start <= T and horizon >= 1, got start={start}, "
                         f"horizon={horizon} with context={k} and T={emb.shape[1]}")
    dev = model_device(model)
    act = None
    if model.action_dim > 0:
        if actions is None:
            raise ValueError(f"the predictor takes actions (action_dim={model.action_dim}): pass the actions")
        act = check_actions(actions, emb, "actions", model.action_dim)
        last = start + horizon - 2  # the action of the last context frame of the last step
        if last >= emb.shape[1]:
            raise ValueError(f"a rollout from start={start} over horizon={horizon} needs the actions up to frame "
                             f"{last}, the sequences have T={emb.shape[1]} frames")
        act = act[:, start - k:last + 1].to(dev)
    ctx = norm(emb[:, start - k:start].to(dev).float())
    preds = []
    with eval_mode(model), cpu_threads(1, small_cpu_work(dev, emb.shape[0], model.width)):
        for j in range(horizon):
            pred = model(ctx, None if act is None else act[:, j:j + k])
            preds.append(pred)
            ctx = torch.cat([ctx[:, 1:], pred[:, None]], dim=1)
    return torch.stack(preds, dim=1)


def rollout(model: nn.Module, norm: EmbeddingNorm, emb: Tensor, start: int, horizon: int,
            actions: Tensor | None = None) -> Tensor:
    """Autoregressive prediction of frames start..start+horizon-1 from frames start-k..start-1.

    emb: raw embeddings (N, T, E); actions: the recorded actions (N, T, A) (ignored when the model takes
    none). Predictions are fed back as context. Returns raw embeddings (N, horizon, E), like ``emb``
    (``norm(rollout(...))`` gives standardised units), on ``emb``'s device. Runs in eval mode, without
    gradients; the model's mode is restored.
    """
    norm = _norm_on(norm, model_device(model))
    return norm.denormalize(_rollout_standardised(model, norm, emb, start, horizon, actions)).to(emb.device)


def baseline_last(emb: Tensor, start: int, horizon: int) -> Tensor:
    """"Next = last": every frame start..start+horizon-1 is frame start-1. emb (N, T, E) -> (N, horizon, E),
    in the units of ``emb`` (the baselines commute with standardisation)."""
    check_embeddings(emb, "emb")
    if not 1 <= start <= emb.shape[1] or horizon < 1:
        raise ValueError(f"baseline_last needs 1 <= start <= T and horizon >= 1, got start={start}, "
                         f"horizon={horizon} with T={emb.shape[1]}")
    return emb[:, start - 1:start].repeat(1, horizon, 1)


def baseline_linear(emb: Tensor, start: int, horizon: int) -> Tensor:
    """Linear extrapolation from frames start-2 and start-1: frame start-1+h = e[start-1] + h (e[start-1] -
    e[start-2]) for h = 1..horizon. emb (N, T, E) -> (N, horizon, E), in the units of ``emb``."""
    check_embeddings(emb, "emb")
    if not 2 <= start <= emb.shape[1] or horizon < 1:
        raise ValueError(f"baseline_linear needs 2 <= start <= T and horizon >= 1, got start={start}, "
                         f"horizon={horizon} with T={emb.shape[1]}")
    last, before = emb[:, start - 1], emb[:, start - 2]
    steps = torch.arange(1, horizon + 1, device=emb.device, dtype=emb.dtype)
    return last[:, None] + steps[None, :, None] * (last - before)[:, None]


def rollout_errors(model: nn.Module, norm: EmbeddingNorm, emb: Tensor, actions: Tensor | None = None,
                   horizons: Sequence[int] = (1, 2, 4, 8)) -> dict[str, dict[int, float]]:
    """Roll-out errors of the predictor and the two baselines, in standardised units.

    emb: raw embeddings (N, T, E) (e.g. the test sequences); actions (N, T, A) when the model takes them.
    For every start s with max(k, 2) <= s and s + max(horizons) <= T, each method predicts frames
    s..s+H-1; the error at horizon h is the squared error of the h-th predicted frame, averaged over dims,
    sequences and starts. Returns {"predictor" | "last" | "linear": {h: mse}}.
    """
    if not horizons or min(horizons) < 1:
        raise ValueError(f"horizons={tuple(horizons)} is not valid: need at least one horizon, each >= 1")
    check_embeddings(emb, "emb", dim=model.dim)
    k, t, longest = model.context, emb.shape[1], max(horizons)
    first = max(k, 2)
    if first + longest > t:
        raise ValueError(f"rollout_errors needs T >= max(context, 2) + max(horizons) = {first + longest} frames, "
                         f"got T={t}")
    dev = model_device(model)
    norm = _norm_on(norm, dev)
    sums = {m: torch.zeros(longest, device=dev) for m in METHODS}
    with cpu_threads(1, small_cpu_work(dev, emb.shape[0], model.width)):
        for s in range(first, t - longest + 1):
            target = norm(emb[:, s:s + longest].to(dev).float())
            preds = {
                "predictor": _rollout_standardised(model, norm, emb, s, longest, actions),
                "last": norm(baseline_last(emb, s, longest).to(dev).float()),
                "linear": norm(baseline_linear(emb, s, longest).to(dev).float()),
            }
            for m, pred in preds.items():
                sums[m] += (pred - target).pow(2).mean(dim=2).sum(dim=0)
    count = emb.shape[0] * (t - longest + 1 - first)
    return {m: {h: float(sums[m][h - 1]) / count for h in horizons} for m in METHODS}
