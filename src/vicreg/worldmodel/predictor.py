"""A JEPA-style world model on frame embeddings: the embeddings of the last k frames (and the actions taken)
-> the embedding of the next frame.

A frame encoder (VICReg) turns every frame of a sequence into an embedding; everything here works on those
embedding tensors, the caller embeds the frames. Shapes: N sequences, T frames, E embedding dim, A action dim,
k = ``PredictorConfig.context`` frames of context, B a batch of windows.

Conventions:

* **Units.** The predictor works in *standardised* units: every embedding dimension is shifted and scaled by
  the mean and std of the training embeddings (:class:`EmbeddingNorm`). An MSE of 1.0 is then about the
  embedding's own variance, so prediction errors are comparable across encoders. The functions that take
  *raw* embeddings (:func:`vicreg.worldmodel.fit.fit_predictor`, :func:`vicreg.worldmodel.rollout.rollout`,
  the baselines) say so; all errors (:func:`vicreg.worldmodel.rollout.rollout_errors`, the training history)
  are in standardised units.
* **Residual.** Both predictors output ``context[:, -1] + delta``: a change from the last context embedding.
  The last layer starts at zero, so an untrained predictor is the "next = last" baseline.
* **Action timing.** ``actions[:, t]`` is the action (push) applied between frame t and frame t + 1. Each
  context frame's action is concatenated to its embedding, so the last context frame's action is the one
  that acts on the predicted frame. The action of a sequence's last frame is never used; actions of shape
  (N, T - 1, A) are accepted too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..config import PredictorConfig

__all__ = ["EmbeddingNorm", "MLPPredictor", "TransformerPredictor", "build_predictor", "check_embeddings",
           "check_actions", "eval_mode", "model_device"]


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def check_embeddings(emb: Tensor, name: str, min_frames: int = 1, dim: int | None = None) -> None:
    """Raise ValueError unless ``emb`` is (N, T, E) with T >= min_frames (and E == dim when given)."""
    if not isinstance(emb, Tensor) or emb.ndim != 3:
        shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
        raise ValueError(f"{name} must be (N, T, E) embeddings (sequences, frames, dims), got shape {shape}")
    if emb.shape[1] < min_frames:
        raise ValueError(f"{name} has T={emb.shape[1]} frames per sequence, need at least {min_frames}")
    if dim is not None and emb.shape[2] != dim:
        raise ValueError(f"{name} has embedding dim E={emb.shape[2]}, expected {dim}")


def check_actions(actions: Tensor, emb: Tensor, name: str, action_dim: int | None = None) -> Tensor:
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
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the model's previous mode is restored on exit."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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
