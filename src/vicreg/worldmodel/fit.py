"""Training the predictor on embeddings: windows of k + h frames, teacher forcing or an autoregressive
roll-out loss, AdamW with a cosine decay; saving and loading it; and the loss of joint encoder training."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError, LossConfig, PredictorConfig, config_to_dict, predictor_config
from ..device import cpu_threads, resolve_device, small_cpu_work
from ..errors import first_line
from ..loss import covariance_term, variance_term
from ..rundir import first_non_finite, load_checkpoint, load_weights
from ..schedule import warmup_cosine
from .predictor import EmbeddingNorm, build_predictor, check_actions, check_embeddings, eval_mode

__all__ = ["FitResult", "fit_predictor", "save_predictor", "load_predictor", "prediction_loss", "rollout_loss"]


@dataclass
class FitResult:
    """A trained predictor and what is needed to use it.

    model: the predictor, in eval mode, on the training device; it maps standardised embeddings.
    norm: the standardisation fitted on the training embeddings.
    history: one dict per epoch: epoch (1-based), train_loss (mean training MSE, standardised units),
        val_loss (1-step MSE on all validation windows, standardised units; None without val), seconds.
    action_dim: the actions the model takes (0 when it takes none).
    """

    model: nn.Module
    norm: EmbeddingNorm
    history: list[dict]
    cfg: PredictorConfig
    dim: int
    action_dim: int


def _windows(n: int, t: int, length: int) -> tuple[Tensor, Tensor]:
    """Every (sequence, start) with start + length <= t: two (W,) long tensors."""
    seq, start = torch.meshgrid(torch.arange(n), torch.arange(t - length + 1), indexing="ij")
    return seq.flatten(), start.flatten()


def _gather(x: Tensor, seq: Tensor, start: Tensor, length: int) -> Tensor:
    """x (N, T, D), windows (B,) -> x[seq, start:start + length]: (B, length, D)."""
    frames = start[:, None] + torch.arange(length, device=start.device)
    return x[seq[:, None], frames]


def rollout_loss(model: nn.Module, window: Tensor, actions: Tensor | None, context: int) -> Tensor:
    """Mean MSE over the autoregressive steps of one batch of windows (standardised units).

    window: (B, k + h, E), frames s..s+k+h-1; actions: (B, k + h - 1, A) or None. Step j predicts frame
    s+k+j from the k frames before it, the predicted ones fed back.
    """
    horizon = window.shape[1] - context
    ctx = window[:, :context]
    losses = []
    for j in range(horizon):
        pred = model(ctx, None if actions is None else actions[:, j:j + context])
        losses.append(F.mse_loss(pred, window[:, context + j]))
        ctx = torch.cat([ctx[:, 1:], pred[:, None]], dim=1)
    return torch.stack(losses).mean()


def _one_step_loss(model: nn.Module, z: Tensor, actions: Tensor | None, context: int, batch_size: int) -> float:
    """1-step MSE (standardised) over every window of standardised embeddings z: (N, T, E)."""
    seq, start = _windows(z.shape[0], z.shape[1], context + 1)
    seq, start = seq.to(z.device), start.to(z.device)
    total = torch.zeros((), device=z.device)
    with eval_mode(model):
        for s, t in zip(seq.split(batch_size), start.split(batch_size), strict=True):
            window = _gather(z, s, t, context + 1)
            act = None if actions is None else _gather(actions, s, t, context)
            pred = model(window[:, :context], act)
            total += F.mse_loss(pred, window[:, context], reduction="sum")
    return float(total) / (seq.numel() * z.shape[2])


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, z: Tensor, actions: Tensor | None,
                 windows: tuple[Tensor, Tensor], order: Tensor, cfg: PredictorConfig, step: int,
                 total_steps: int) -> tuple[float, int]:
    """One epoch over the windows (seq, start) in ``order``, mini-batches of cfg.batch_size, cosine lr per step.
    z: standardised (N, T, E), actions: (N, T, A) or None. Returns (mean training loss, the next step)."""
    k, h = cfg.context, cfg.train_horizon
    model.train()
    loss_sum = torch.zeros((), device=z.device)
    for idx in order.split(cfg.batch_size):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, total_steps, 0, cfg.lr)
        seq, start = windows[0][idx], windows[1][idx]
        act = None if actions is None else _gather(actions, seq, start, k + h - 1)
        loss = rollout_loss(model, _gather(z, seq, start, k + h), act, k)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * idx.numel()
        step += 1
    return float(loss_sum) / order.numel(), step


def fit_predictor(
    train: Tensor,
    cfg: PredictorConfig,
    actions: Tensor | None = None,
    val: Tensor | None = None,
    val_actions: Tensor | None = None,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
) -> FitResult:
    """Train a predictor on raw embeddings ``train`` (N, T, E); returns the model in eval mode with its norm.

    Fits :class:`EmbeddingNorm` on ``train``; the loss is the MSE in standardised units. Windows: every start
    s with s + k + h <= T (h = cfg.train_horizon): frames s..s+k-1 in, frames s+k..s+k+h-1 as targets; with
    h > 1 the loss is the mean over h autoregressive steps (predictions fed back, the window sliding).
    AdamW (cfg.lr, cfg.weight_decay) with a cosine decay over all steps, cfg.epochs epochs of shuffled
    mini-batches of cfg.batch_size windows, seeded by cfg.seed (the global RNG is left untouched;
    deterministic on CPU). Actions (N, T, A) are used when given and cfg.use_actions; ``val`` (raw, with
    ``val_actions`` when actions are used) gives a 1-step validation MSE after every epoch. ``device``:
    where to train ("auto": cuda when available). A progress bar runs over the epochs when on a terminal;
    ``log`` gets one line per epoch (print goes through tqdm.write, which keeps the bar intact).
    """
    from tqdm.auto import tqdm

    k, h = cfg.context, cfg.train_horizon
    check_embeddings(train, "train embeddings", k + h)
    if not bool(torch.isfinite(train).all()):
        raise ValueError("train embeddings hold non-finite values (NaN or inf): check the encoder")
    n, t, dim = train.shape
    use_actions = cfg.use_actions and actions is not None
    if use_actions:
        actions = check_actions(actions, train, "actions")
    action_dim = actions.shape[2] if use_actions else 0
    if val is not None:
        check_embeddings(val, "val embeddings", k + 1, dim)
        if use_actions:
            if val_actions is None:
                raise ValueError("val_actions is None, but the predictor is trained with actions: pass both or neither")
            val_actions = check_actions(val_actions, val, "val_actions", action_dim)

    dev = resolve_device(device, "device")
    x = train.to(dev).float()
    norm = EmbeddingNorm.fit(x)
    z = norm(x)
    act = actions.to(dev) if use_actions else None
    z_val = norm(val.to(dev).float()) if val is not None else None
    act_val = val_actions.to(dev) if use_actions and val is not None else None
    windows = tuple(w.to(dev) for w in _windows(n, t, k + h))
    n_windows = windows[0].numel()
    steps_per_epoch = math.ceil(n_windows / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    emit = tqdm.write if log is print else log

    generator = torch.Generator().manual_seed(cfg.seed)
    small = small_cpu_work(dev, cfg.batch_size, cfg.width)
    rng_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), torch.enable_grad(), cpu_threads(1, small):
        torch.manual_seed(cfg.seed)
        model = build_predictor(cfg, dim, action_dim).to(dev)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_params = sum(p.numel() for p in model.parameters())
        emit(f"predictor: {cfg.model} ({n_params:,} parameters), {n_windows:,} windows of {k} + {h} frames, "
             f"E={dim}, actions={action_dim}, {cfg.epochs} epochs x {steps_per_epoch} steps on {dev}")
        history: list[dict] = []
        step = 0
        bar = tqdm(range(1, cfg.epochs + 1), desc="predictor", unit="epoch", disable=None, dynamic_ncols=True)
        for epoch in bar:
            t0 = time.perf_counter()
            order = torch.randperm(n_windows, generator=generator).to(dev)
            train_loss, step = _train_epoch(model, optimizer, z, act, windows, order, cfg, step, total_steps)
            val_loss = _one_step_loss(model, z_val, act_val, k, 4 * cfg.batch_size) if z_val is not None else None
            seconds = time.perf_counter() - t0
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds})
            bar.set_postfix(train=f"{train_loss:.4f}", val="-" if val_loss is None else f"{val_loss:.4f}")
            emit(f"predictor epoch {epoch}/{cfg.epochs}: train {train_loss:.5f}"
                 + ("" if val_loss is None else f", val {val_loss:.5f}") + f" ({seconds:.1f}s)")
        bar.close()
    model.eval()
    return FitResult(model, norm, history, cfg, dim, action_dim)


def save_predictor(result: FitResult, path: str | Path) -> None:
    """Write a FitResult (weights, norm, config as a plain dict, dims, history) to ``path`` atomically:
    a temporary file in the same folder, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "norm": {k: v.detach().cpu() for k, v in result.norm.state_dict().items()},
        "cfg": config_to_dict(result.cfg),
        "dim": result.dim,
        "action_dim": result.action_dim,
        "history": result.history,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_predictor(path: str | Path, map_location: torch.device | str = "cpu") -> FitResult:
    """Read what :func:`save_predictor` wrote (torch.load with weights_only=True); the model is in eval mode. A
    file that is damaged, not a predictor, or whose config does not fit its weights is one line naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved predictor at {path}")
    state = load_checkpoint(path, map_location, require=("model", "norm", "cfg", "dim", "action_dim"))
    if not isinstance(state["cfg"], dict):
        raise ValueError(f"{path} is not a predictor vicreg wrote: its cfg is a {type(state['cfg']).__name__}")
    try:
        cfg = predictor_config(state["cfg"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    bad = first_non_finite(state["norm"], "norm")
    if bad:
        raise ValueError(f"{path} is not a usable predictor: {bad} (a damaged file: training never saves it)")
    weights = sum(v.numel() for v in state["model"].values())
    dims = (state["dim"], state["action_dim"])
    if not all(type(d) is int and 0 <= d <= weights for d in dims) or dims[0] < 1:
        raise ValueError(f"{path} is not a predictor vicreg wrote: dim={dims[0]!r}, action_dim={dims[1]!r} do not "
                         f"fit its {weights} weights")
    try:
        model = build_predictor(cfg, *dims)
        load_weights(model, state["model"])
        norm = EmbeddingNorm(state["norm"]["mean"], state["norm"]["std"])
        history = [dict(epoch) for epoch in state.get("history") or []]
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        first = first_line(e, 160, default=type(e).__name__)
        raise ValueError(f"{path} does not fit the predictor its own config describes ({first})") from None
    device = next(iter(state["model"].values())).device
    return FitResult(model.to(device).eval(), norm.to(device), history, cfg, dims[0], dims[1])


# --------------------------------------------------------------------------------------------
# Joint training of the encoder
# --------------------------------------------------------------------------------------------


def prediction_loss(pred: Tensor, target: Tensor, loss_cfg: LossConfig, vicreg_weight: float) -> dict[str, Tensor]:
    """Loss of a predicted embedding against the target embedding, for training the encoder through it.

    pred, target: (B, E). prediction = MSE(pred, target). When vicreg_weight > 0 the VICReg variance and
    covariance terms (:mod:`vicreg.loss`, with loss_cfg.eps and loss_cfg.gamma) of both batches are added::

        loss = prediction + vicreg_weight * (mu * (variance(pred) + variance(target))
                                             + nu * (covariance(pred) + covariance(target)))

    (the variance sum is halved when loss_cfg.variance_reduction is "mean", as in vicreg_loss). When the
    encoder is trained through the prediction loss alone, the cheapest solution is a constant embedding
    (a collapsed target is perfectly predictable); the variance and covariance terms keep the target
    embedding spread out and decorrelated. Gradients flow into both pred and target: detach the target for
    a stop-gradient. Returns {"loss", "prediction", "variance", "covariance"}, 0-d float32 tensors; with
    vicreg_weight == 0 the variance and covariance are computed without gradients, for logging (NaN for B < 2).
    """
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(f"prediction_loss expects pred and target of the same shape (B, E), got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if vicreg_weight < 0:
        raise ValueError(f"vicreg_weight={vicreg_weight!r} is not valid: must be >= 0")
    if vicreg_weight > 0 and pred.shape[0] < 2:
        raise ValueError(f"prediction_loss with vicreg_weight > 0 needs a batch of B >= 2, got B={pred.shape[0]}")
    dtype = torch.promote_types(pred.dtype, torch.float32)
    pred, target = pred.to(dtype), target.to(dtype)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        prediction = F.mse_loss(pred, target)
        with torch.set_grad_enabled(torch.is_grad_enabled() and vicreg_weight > 0):
            if pred.shape[0] < 2:
                variance = covariance = torch.full((), float("nan"), dtype=dtype, device=pred.device)
            else:
                variance = (variance_term(pred, loss_cfg.eps, loss_cfg.gamma)
                            + variance_term(target, loss_cfg.eps, loss_cfg.gamma))
                if loss_cfg.variance_reduction == "mean":
                    variance = variance / 2
                covariance = covariance_term(pred) + covariance_term(target)
        loss = prediction
        if vicreg_weight > 0:
            loss = prediction + vicreg_weight * (loss_cfg.mu * variance + loss_cfg.nu * covariance)
    return {"loss": loss, "prediction": prediction, "variance": variance, "covariance": covariance}
