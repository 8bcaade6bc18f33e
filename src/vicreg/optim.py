"""Optimisers (LARS, AdamW, SGD), parameter groups, the peak learning rate and setting it in place.

The schedule lives in :mod:`vicreg.schedule` (:func:`~vicreg.schedule.warmup_cosine`), a pure function of the
step: linear warm-up from 0, then a cosine decay to ``lr * final_lr_ratio``. The scheduler's whole state is
therefore the step number.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import OptimConfig

__all__ = ["LARS", "exclude_bias_and_norm", "param_groups", "build_optimizer", "load_optimizer_state",
           "set_learning_rate", "peak_lr"]


def exclude_bias_and_norm(p: Tensor) -> bool:
    """Biases and normalisation weights (1-D parameters): no weight decay, no LARS adaptation."""
    return p.ndim == 1


class LARS(torch.optim.Optimizer):
    """LARS (You et al., 2017) as in the VICReg paper.

    For each parameter p with gradient g, unless p is a bias or a norm weight (exclude_bias_and_norm):
        g <- g + weight_decay * p
        g <- g * eta * ||p|| / ||g||        (trust ratio; 1 when either norm is 0)
    then heavy-ball momentum: m <- momentum * m + g;  p <- p - lr * m.
    Groups can turn the exclusion off with ``exclude=False``. ``foreach=True`` (the default) runs the
    update as multi-tensor ``torch._foreach_*`` kernels over all parameters of a group; ``foreach=False``
    loops over the parameters one by one (same numbers, to rounding; tests/test_optim.py).
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, eta: float = 0.001,
                 exclude: bool = True, foreach: bool = True):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, exclude=exclude,
                        foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            adapted = [not (group["exclude"] and exclude_bias_and_norm(p)) for p in params]
            update = _lars_foreach if group["foreach"] else _lars_loop
            update(params, [p.grad for p in params], bufs, adapted, group["lr"], group["weight_decay"],
                   group["momentum"], group["eta"])
        return loss


def _trust_ratio(p_norm: Tensor, g_norm: Tensor, eta: float) -> Tensor:
    """eta * ||p|| / ||g||, or 1 where either norm is 0 (elementwise over stacked norms)."""
    return torch.where((p_norm > 0) & (g_norm > 0), eta * p_norm / g_norm, torch.ones_like(p_norm))


def _lars_loop(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor], adapted: list[bool], lr: float | Tensor,
               weight_decay: float, momentum: float, eta: float) -> None:
    """The LARS update one parameter at a time (the reference; a handful of small kernels per tensor)."""
    for p, g, buf, adapt in zip(params, grads, bufs, adapted):
        if adapt:
            g = g.add(p, alpha=weight_decay)
            g = g.mul(_trust_ratio(torch.linalg.vector_norm(p), torch.linalg.vector_norm(g), eta))
        buf.mul_(momentum).add_(g)
        p.sub_(buf * lr if isinstance(lr, Tensor) else buf, alpha=1 if isinstance(lr, Tensor) else lr)


def _lars_foreach(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor], adapted: list[bool],
                  lr: float | Tensor, weight_decay: float, momentum: float, eta: float) -> None:
    """The same update with torch._foreach_* ops: a few multi-tensor kernels for all parameters at once,
    and no host synchronisation (the trust ratios stay on the device)."""
    idx = [i for i, a in enumerate(adapted) if a]
    if idx:
        p_ad = [params[i] for i in idx]
        g_ad = torch._foreach_add([grads[i] for i in idx], p_ad, alpha=weight_decay)  # new tensors
        trust = _trust_ratio(torch.stack(torch._foreach_norm(p_ad)), torch.stack(torch._foreach_norm(g_ad)), eta)
        torch._foreach_mul_(g_ad, list(trust.unbind(0)))
        grads = list(grads)
        for i, g in zip(idx, g_ad):
            grads[i] = g
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)
    if isinstance(lr, Tensor):  # a device tensor (compiled steps): the update reads it, no recompilation
        torch._foreach_sub_(params, torch._foreach_mul(bufs, lr))
    else:
        torch._foreach_add_(params, bufs, alpha=-lr)


def exempt_from_decay(model: nn.Module) -> set[str]:
    """The full names of the parameters that a module of ``model`` says take no weight decay (timm's
    ``no_weight_decay()``: a ViT's position embedding and class token)."""
    names = set()
    for prefix, module in model.named_modules():
        said = getattr(module, "no_weight_decay", None)
        if callable(said):
            names |= {f"{prefix}.{n}" if prefix else n for n in said()}
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with weight decay; biases, norm weights and what timm exempts without (trainable
    only)."""
    decay, no_decay = [], []
    exempt = exempt_from_decay(model)
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if exclude_bias_and_norm(p) or name in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_lr(cfg: OptimConfig, batch_size: int) -> float:
    """The learning rate after warm-up: lr * batch_size / 256 with linear scaling (the paper's rule)."""
    return cfg.lr * batch_size / 256 if cfg.lr_scaling == "linear" else cfg.lr


def build_optimizer(cfg: OptimConfig, model: nn.Module, batch_size: int,
                    lr_tensor: bool = False) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over the trainable parameters. lr_tensor: the learning rate is a 0-d tensor on
    the parameters' device, set in place with :func:`set_learning_rate` (a compiled step then reads it
    instead of recompiling for every new value); AdamW and SGD take their fused kernels, which accept it."""
    lr = peak_lr(cfg, batch_size)
    device = next((p.device for p in model.parameters() if p.requires_grad), torch.device("cpu"))
    if lr_tensor:
        lr = torch.tensor(lr, dtype=torch.float32, device=device)
    if cfg.name == "lars":
        # One group: LARS itself skips decay and adaptation for biases and norms (the paper's filters).
        params = [p for p in model.parameters() if p.requires_grad]
        return LARS(params, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, eta=cfg.eta)
    groups = param_groups(model, cfg.weight_decay)
    # multi-tensor kernels: fused on CUDA (and with a tensor learning rate) where torch has them, else foreach
    kernels = {"fused": True} if device.type == "cuda" or lr_tensor else {"foreach": True}
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, **kernels)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, **kernels)
    raise ValueError(f"optim.name={cfg.name!r} is not valid: expected one of lars, adamw, sgd")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)`` keeping each group's learning rate a tensor or a float as the
    optimiser was built (a run resumed with another train.compile_scope than it was saved with)."""
    kinds = [group["lr"] for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, before in zip(optimizer.param_groups, kinds):
        value = float(group["lr"])
        if isinstance(before, Tensor):
            group["lr"] = before
            before.fill_(value)
        else:
            group["lr"] = value


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate: in place where it is a tensor (no host sync, no recompilation)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
