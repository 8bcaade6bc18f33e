"""A JEPA-style world model on frame embeddings: the embeddings of the last k frames (and the actions taken)
-> the embedding of the next frame.

A frame encoder (VICReg) turns every frame of a sequence into an embedding; everything here works on those
embedding tensors, the caller embeds the frames. Shapes: N sequences, T frames, E embedding dim, A action dim,
k = ``PredictorConfig.context`` frames of context, B a batch of windows.

Conventions:

* **Units.** The predictor works in *standardised* units: every embedding dimension is shifted and scaled by
  the mean and std of the training embeddings (:class:`EmbeddingNorm`). An MSE of 1.0 is then about the
  embedding's own variance, so prediction errors are comparable across encoders. The functions that take
  *raw* embeddings (:func:`fit_predictor`, :func:`rollout`, the baselines) say so; all errors
  (:func:`rollout_errors`, the training history) are in standardised units.
* **Residual.** Both predictors output ``context[:, -1] + delta``: a change from the last context embedding.
  The last layer starts at zero, so an untrained predictor is the "next = last" baseline.
* **Action timing.** ``actions[:, t]`` is the action (push) applied between frame t and frame t + 1. Each
  context frame's action is concatenated to its embedding, so the last context frame's action is the one
  that acts on the predicted frame. The action of a sequence's last frame is never used; actions of shape
  (N, T - 1, A) are accepted too.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LossConfig, PredictorConfig, config_to_dict, predictor_config
from .device import cpu_threads, resolve_device, small_cpu_work
from .loss import covariance_term, variance_term
from .schedule import warmup_cosine

__all__ = [
    "EmbeddingNorm",
    "FitResult",
    "MLPPredictor",
    "TransformerPredictor",
    "baseline_last",
    "baseline_linear",
    "build_predictor",
    "fit_predictor",
    "load_predictor",
    "prediction_loss",
    "rollout",
    "rollout_errors",
    "save_predictor",
]

METHODS = ("predictor", "last", "linear")  # the keys of rollout_errors


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_embeddings(emb: Tensor, name: str, min_frames: int = 1, dim: int | None = None) -> None:
    """Raise ValueError unless ``emb`` is (N, T, E) with T >= min_frames (and E == dim when given)."""
    if not isinstance(emb, Tensor) or emb.ndim != 3:
        shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
        raise ValueError(f"{name} must be (N, T, E) embeddings (sequences, frames, dims), got shape {shape}")
    if emb.shape[1] < min_frames:
        raise ValueError(f"{name} has T={emb.shape[1]} frames per sequence, need at least {min_frames}")
    if dim is not None and emb.shape[2] != dim:
        raise ValueError(f"{name} has embedding dim E={emb.shape[2]}, expected {dim}")


def _check_actions(actions: Tensor, emb: Tensor, name: str, action_dim: int | None = None) -> Tensor:
    """Actions (N, T, A) or (N, T - 1, A) for embeddings (N, T, E) -> (N, T, A) (a zero action appended)."""
    n, t = emb.shape[:2]
    if actions.ndim != 3 or actions.shape[0] != n or actions.shape[1] not in (t, t - 1):
        raise ValueError(f"{name} must be (N, T, A) or (N, T - 1, A) for embeddings of shape {tuple(emb.shape)}, "
                         f"got shape {tuple(actions.shape)}")
    if action_dim is not None and actions.shape[2] != action_dim:
        raise ValueError(f"{name} has action dim A={actions.shape[2]}, the predictor expects {action_dim}")
    if actions.shape[1] == t - 1:
        actions = torch.cat([actions, actions.new_zeros(n, 1, actions.shape[2])], dim=1)
    return actions.float()


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the model's previous mode is restored on exit."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# Standardisation
# --------------------------------------------------------------------------------------------


class EmbeddingNorm(nn.Module):
    """Per-dimension standardisation ``(x - mean) / std`` with the statistics of the training embeddings.

    ``mean`` and ``std`` are (E,) buffers (saved in the state dict); ``std`` is floored at 1e-6, so a
    constant dimension stays finite. Works on any tensor whose last dimension is E.
    """

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(f"EmbeddingNorm needs mean and std of shape (E,), got {tuple(mean.shape)} and "
                             f"{tuple(std.shape)}")
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clamp_min(1e-6))

    @classmethod
    def fit(cls, emb: Tensor) -> EmbeddingNorm:
        """Mean and std of every dimension over all sequences and frames. emb: (N, T, E) (or (..., E))."""
        flat = emb.detach().reshape(-1, emb.shape[-1]).double()
        if flat.shape[0] < 2:
            raise ValueError(f"EmbeddingNorm.fit needs at least 2 embeddings, got shape {tuple(emb.shape)}")
        return cls(flat.mean(dim=0), flat.std(dim=0)).to(emb.device)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def normalize(self, x: Tensor) -> Tensor:
        """Raw (..., E) -> standardised (..., E)."""
        return (x - self.mean) / self.std

    def denormalize(self, z: Tensor) -> Tensor:
        """Standardised (..., E) -> raw (..., E)."""
        return z * self.std + self.mean

    def forward(self, x: Tensor) -> Tensor:
        return self.normalize(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


# --------------------------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------------------------


class _Predictor(nn.Module):
    """Shared input handling: (B, L, E) context [+ (B, L, A) actions] -> (B, L, E + A) frame vectors."""

    def __init__(self, dim: int, context: int, action_dim: int):
        super().__init__()
        if dim < 1 or context < 1 or action_dim < 0:
            raise ValueError(f"a predictor needs dim >= 1, context >= 1 and action_dim >= 0, got dim={dim}, "
                             f"context={context}, action_dim={action_dim}")
        self.dim, self.context, self.action_dim = dim, context, action_dim
        self.width = 0  # hidden width, set by the subclass

    def _frames(self, context: Tensor, actions: Tensor | None) -> Tensor:
        """Check the inputs and concatenate every frame's action to its embedding: (B, L, E + A)."""
        if context.ndim != 3 or context.shape[2] != self.dim or not 1 <= context.shape[1] <= self.context:
            raise ValueError(f"{type(self).__name__} expects a context of shape (B, L, {self.dim}) with "
                             f"1 <= L <= {self.context}, got {tuple(context.shape)}")
        if self.action_dim == 0:
            return context
        if actions is None:
            raise ValueError(f"{type(self).__name__} was built with action_dim={self.action_dim}: pass the actions")
        if actions.shape != (*context.shape[:2], self.action_dim):
            raise ValueError(f"{type(self).__name__} expects actions of shape "
                             f"{(*context.shape[:2], self.action_dim)}, got {tuple(actions.shape)}")
        return torch.cat([context, actions.to(context.dtype)], dim=2)


class MLPPredictor(_Predictor):
    """MLP on the flattened k (embedding [+ action]) vectors -> residual added to the last embedding.

    forward(context (B, k, E), actions (B, k, A) | None) -> next embedding (B, E). Needs exactly k frames.
    ``layers`` hidden blocks Linear [+ LayerNorm when ``norm``] + GELU [+ Dropout], then Linear to E
    (initialised at zero: the untrained model predicts "next = last").
    """

    def __init__(self, dim: int, context: int, action_dim: int = 0, width: int = 256, layers: int = 2,
                 dropout: float = 0.0, norm: bool = False):
        super().__init__(dim, context, action_dim)
        self.width = width
        blocks: list[nn.Module] = []
        fan_in = context * (dim + action_dim)
        for _ in range(layers):
            blocks.append(nn.Linear(fan_in, width))
            if norm:
                blocks.append(nn.LayerNorm(width))
            blocks.append(nn.GELU())
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            fan_in = width
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(fan_in, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, context: Tensor, actions: Tensor | None = None) -> Tensor:
        x = self._frames(context, actions)  # (B, k, E + A)
        if x.shape[1] != self.context:
            raise ValueError(f"MLPPredictor needs exactly context={self.context} frames, got {x.shape[1]}")
        return context[:, -1] + self.out(self.body(x.flatten(1)))


class TransformerPredictor(_Predictor):
    """Small causal transformer over the context frames -> residual added to the last embedding.

    forward(context (B, L, E), actions (B, L, A) | None) -> next embedding (B, E), for any 1 <= L <= k.
    Every frame vector (embedding [+ action]) is projected to ``width`` and gets a learned position
    embedding; the positions are counted back from the last frame (the last frame always has position
    k - 1), so a shorter context looks like a full one with its oldest frames missing. ``layers`` pre-norm
    blocks with a causal mask (position i sees frames <= i), a final LayerNorm, and a linear head
    (initialised at zero) from the last position to E.
    """

    def __init__(self, dim: int, context: int, action_dim: int = 0, width: int = 256, layers: int = 2,
                 heads: int = 4, dropout: float = 0.0):
        super().__init__(dim, context, action_dim)
        if width % heads != 0:
            raise ValueError(f"TransformerPredictor: heads={heads} must divide width={width}")
        self.width = width
        self.input = nn.Linear(dim + action_dim, width)
        self.position = nn.Parameter(torch.randn(context, width) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def hidden_states(self, context: Tensor, actions: Tensor | None = None) -> Tensor:
        """Per-position outputs of the last block (after the final LayerNorm): (B, L, width)."""
        x = self._frames(context, actions)
        length = x.shape[1]
        h = self.input(x) + self.position[self.context - length:]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=h.device, dtype=h.dtype)
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.norm(h)

    def forward(self, context: Tensor, actions: Tensor | None = None) -> Tensor:
        return context[:, -1] + self.out(self.hidden_states(context, actions)[:, -1])


def build_predictor(cfg: PredictorConfig, dim: int, action_dim: int = 0) -> nn.Module:
    """The predictor named by ``cfg.model`` for embeddings of dim E = ``dim`` and ``action_dim`` actions (0: none)."""
    if cfg.model == "mlp":
        return MLPPredictor(dim, cfg.context, action_dim, cfg.width, cfg.layers, cfg.dropout)
    if cfg.model == "transformer":
        return TransformerPredictor(dim, cfg.context, action_dim, cfg.width, cfg.layers, cfg.heads, cfg.dropout)
    raise ValueError(f"predictor model={cfg.model!r} is not valid: expected 'mlp' or 'transformer'")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


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


def _rollout_loss(model: nn.Module, window: Tensor, actions: Tensor | None, context: int) -> Tensor:
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
    with _eval_mode(model):
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
        loss = _rollout_loss(model, _gather(z, seq, start, k + h), act, k)
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
    _check_embeddings(train, "train embeddings", k + h)
    if not bool(torch.isfinite(train).all()):
        raise ValueError("train embeddings hold non-finite values (NaN or inf): check the encoder")
    n, t, dim = train.shape
    use_actions = cfg.use_actions and actions is not None
    if use_actions:
        actions = _check_actions(actions, train, "actions")
    action_dim = actions.shape[2] if use_actions else 0
    if val is not None:
        _check_embeddings(val, "val embeddings", k + 1, dim)
        if use_actions:
            if val_actions is None:
                raise ValueError("val_actions is None, but the predictor is trained with actions: pass both or neither")
            val_actions = _check_actions(val_actions, val, "val_actions", action_dim)

    dev = resolve_device(device, "predictor.device")
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
    """Read what :func:`save_predictor` wrote (torch.load with weights_only=True); the model is in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved predictor at {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    cfg = predictor_config(state["cfg"])
    model = build_predictor(cfg, state["dim"], state["action_dim"])
    model.load_state_dict(state["model"])
    norm = EmbeddingNorm(state["norm"]["mean"], state["norm"]["std"])
    device = next(iter(state["model"].values())).device
    return FitResult(model.to(device).eval(), norm.to(device), state["history"], cfg, state["dim"],
                     state["action_dim"])


# --------------------------------------------------------------------------------------------
# Roll-out and baselines
# --------------------------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _norm_on(norm: EmbeddingNorm, device: torch.device) -> EmbeddingNorm:
    """``norm`` on ``device``, without moving the caller's copy."""
    return norm if norm.mean.device == device else EmbeddingNorm(norm.mean.to(device), norm.std.to(device))


def _rollout_standardised(model: nn.Module, norm: EmbeddingNorm, emb: Tensor, start: int, horizon: int,
                          actions: Tensor | None) -> Tensor:
    """Like :func:`rollout`, but returns the predictions in standardised units, on the model's device."""
    k = model.context
    _check_embeddings(emb, "emb", dim=model.dim)
    if not k <= start <= emb.shape[1] or horizon < 1:
        raise ValueError(f"rollout needs context <= start <= T and horizon >= 1, got start={start}, "
                         f"horizon={horizon} with context={k} and T={emb.shape[1]}")
    dev = _model_device(model)
    act = None
    if model.action_dim > 0:
        if actions is None:
            raise ValueError(f"the predictor takes actions (action_dim={model.action_dim}): pass the actions")
        act = _check_actions(actions, emb, "actions", model.action_dim)
        last = start + horizon - 2  # the action of the last context frame of the last step
        if last >= emb.shape[1]:
            raise ValueError(f"a rollout from start={start} over horizon={horizon} needs the actions up to frame "
                             f"{last}, the sequences have T={emb.shape[1]} frames")
        act = act[:, start - k:last + 1].to(dev)
    ctx = norm(emb[:, start - k:start].to(dev).float())
    preds = []
    with _eval_mode(model), cpu_threads(1, small_cpu_work(dev, emb.shape[0], model.width)):
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
    norm = _norm_on(norm, _model_device(model))
    return norm.denormalize(_rollout_standardised(model, norm, emb, start, horizon, actions)).to(emb.device)


def baseline_last(emb: Tensor, start: int, horizon: int) -> Tensor:
    """"Next = last": every frame start..start+horizon-1 is frame start-1. emb (N, T, E) -> (N, horizon, E),
    in the units of ``emb`` (the baselines commute with standardisation)."""
    _check_embeddings(emb, "emb")
    if not 1 <= start <= emb.shape[1] or horizon < 1:
        raise ValueError(f"baseline_last needs 1 <= start <= T and horizon >= 1, got start={start}, "
                         f"horizon={horizon} with T={emb.shape[1]}")
    return emb[:, start - 1:start].repeat(1, horizon, 1)


def baseline_linear(emb: Tensor, start: int, horizon: int) -> Tensor:
    """Linear extrapolation from frames start-2 and start-1: frame start-1+h = e[start-1] + h (e[start-1] -
    e[start-2]) for h = 1..horizon. emb (N, T, E) -> (N, horizon, E), in the units of ``emb``."""
    _check_embeddings(emb, "emb")
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
    _check_embeddings(emb, "emb", dim=model.dim)
    k, t, longest = model.context, emb.shape[1], max(horizons)
    first = max(k, 2)
    if first + longest > t:
        raise ValueError(f"rollout_errors needs T >= max(context, 2) + max(horizons) = {first + longest} frames, "
                         f"got T={t}")
    dev = _model_device(model)
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
