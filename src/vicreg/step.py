"""The VICReg loss of one batch of two views: the plain way and the fast way, with the same numbers.

plain (``train.stack_views=false``): one forward per view, as in the paper's code::

    za = model(xa).projection;  zb = model(xb).projection

fast (``train.stack_views=true``, the default): both views stacked into one (2N, C, S, S) batch and sent
through the model in one call, so every convolution and matrix product runs once on twice the rows
(fewer, larger kernels). Batch norm would then see both views together; with
``train.batchnorm="per_view"`` (the default) every batch-norm layer is a per-view twin (vicreg.batchnorm)
that normalises each view's half with that half's own statistics and updates its running statistics
once per view, view a first: the loss, the gradients and the running statistics are those of the plain
way (tests/test_step.py and tests/test_batchnorm.py, in float64). ``train.batchnorm="joint"`` normalises the
2N rows together, which changes the maths (each view is normalised with statistics that also depend on
the other view); benchmarks/throughput.py measures both.

What the step runs as is decided once, in :func:`plan_step`, from the config, the device and the number
of processes: stacking, per-view and synced batch norm, DDP, bf16 autocast, channels_last, compilation
(by default on CUDA the forward and loss as one graph under CUDA graphs, ``compile_mode=reduce-overhead``;
eager on the CPU) and whether the optimiser's update is compiled too. :class:`Step` takes the model and
the config and builds everything from that plan: the batch-norm conversion, the DDP wrapper, the
optimiser, the loss function (:func:`make_loss_fn`, the loss itself in float32: vicreg.loss upcasts) and
the update; the training loop calls it once per batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .augment import TwoViews
from .batchnorm import PerViewBatchNorm
from .config import Config, LossConfig
from .device import autocast_dtype
from .distributed import Dist, data_parallel, gather_with_grad
from .errors import first_line
from .loss import LossTerms, vicreg_loss
from .optim import build_optimizer

__all__ = ["StepPlan", "plan_step", "stack_views", "make_loss_fn", "LossFn", "make_update", "Step"]

LossFn = Callable[[Tensor, Tensor], LossTerms]
UpdateFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class StepPlan:
    """How the step runs: every choice the config leaves to the device and the job's size, made once."""

    stack: bool  # both views through the model in one call
    per_view: bool  # with stack: batch-norm statistics per view (exact), else joint
    sync_batchnorm: bool  # batch-norm statistics over every process of the job
    data_parallel: bool  # several processes: the model wrapped in DDP, the variance/covariance gathered
    compile: bool  # torch.compile
    mode: str  # torch.compile's mode
    scope: str  # "loss" (forward and loss) or "step" (forward, loss, backward and update)
    amp: torch.dtype | None  # autocast dtype, None for fp32
    channels_last: bool

    @property
    def compiles_update(self) -> bool:
        """Does the optimiser's update run inside the compiled region? Then its learning rate is a device
        tensor (``build_optimizer(..., lr_tensor=True)``), set in place every step."""
        return self.compile and self.scope == "step"

    def describe(self) -> str:
        return f"compiled ({self.scope}, {self.mode})" if self.compile else "eager"


def plan_step(cfg: Config, device: torch.device, world: int = 1) -> tuple[StepPlan, list[str]]:
    """The :class:`StepPlan` of ``cfg`` on ``device`` in a job of ``world`` processes, and the notes to log
    about choices the config asked for but the job cannot take. ``train.compile=auto`` compiles on CUDA only,
    ``compile_mode=auto`` is CUDA graphs (reduce-overhead) there and the default mode elsewhere; with several
    processes compilation is off (the compiled step does not capture the collectives yet)."""
    t, notes = cfg.train, []
    compiled = device.type == "cuda" if t.compile == "auto" else bool(t.compile)
    if compiled and world > 1:
        notes.append(f"train.compile is off with {world} processes: the compiled step does not capture the "
                     "all-gather and the synced batch norm yet (the step runs eagerly)")
        compiled = False
    mode = t.compile_mode if t.compile_mode != "auto" else "reduce-overhead" if device.type == "cuda" else "default"
    plan = StepPlan(stack=t.stack_views, per_view=t.stack_views and t.batchnorm == "per_view",
                    sync_batchnorm=t.sync_batchnorm and world > 1, data_parallel=world > 1, compile=compiled,
                    mode=mode, scope=t.compile_scope, amp=autocast_dtype(t.precision, device),
                    channels_last=cfg.model.channels_last and device.type == "cuda")
    return plan, notes


def batchnorm_notes(model: nn.Module, cfg: Config, plan: StepPlan) -> list[str]:
    """What the plan's batch norm does for a backbone without batch-norm layers (a Vision Transformer: layer norm,
    per sample, so stacking the views changes nothing there): it applies to the head and expander only."""
    backbone = getattr(model, "backbone", None)
    if backbone is None or not (plan.per_view or plan.sync_batchnorm):
        return []
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules()):
        return []
    what = " and ".join(w for w, on in (("per-view", plan.per_view), ("synced", plan.sync_batchnorm)) if on)
    return [f"{cfg.model.backbone} has no batch norm: {what} batch norm applies to the head and expander only"]


def stack_views(xa: Tensor, xb: Tensor, channels_last: bool = False) -> Tensor:
    """(N, C, S, S) twice -> (2N, C, S, S): view a's rows first; channels_last memory format if asked."""
    x = torch.cat([xa, xb])
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_loss_fn(model: nn.Module, loss: LossConfig, stack: bool = True, amp: torch.dtype | None = None,
                 channels_last: bool = False, gather: Callable[[Tensor], Tensor] | None = None) -> LossFn:
    """``loss_fn(xa, xb)``: the VICReg loss terms of a batch of two views (float32 (N, C, S, S) each).

    stack: both views through ``model`` in one call (see the module docstring; convert the model with
        ``PerViewBatchNorm.convert_per_view_batchnorm`` first to keep the statistics per view), else one
        call per view.
    amp: autocast dtype of the model's forward (e.g. torch.bfloat16) or None for full precision.
    gather: an all-gather with gradients for the variance and covariance terms (several processes).
    """

    def loss_fn(xa: Tensor, xb: Tensor) -> LossTerms:
        with torch.autocast(xa.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            if stack:
                za, zb = model(stack_views(xa, xb, channels_last)).projection.chunk(2)
            else:
                if channels_last:
                    xa = xa.contiguous(memory_format=torch.channels_last)
                    xb = xb.contiguous(memory_format=torch.channels_last)
                za, zb = model(xa).projection, model(xb).projection
        return vicreg_loss(za, zb, loss.lam, loss.mu, loss.nu, loss.eps, loss.gamma, loss.variance_reduction,
                           gather=gather, check_finite=False)

    return loss_fn


def make_update(loss_fn: LossFn, optimizer: torch.optim.Optimizer) -> UpdateFn:
    """``update(xa, xb)``: the loss, backward and the optimiser's update; returns the detached (4,) tensor
    [loss, invariance, variance, covariance]. Nothing here waits for the device (no ``.item()``)."""

    def update(xa: Tensor, xb: Tensor) -> Tensor:
        terms = loss_fn(xa, xb)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
        return torch.stack(tuple(terms)).detach()

    return update


class Step:
    """One optimisation step as ``cfg`` asks for it: ``step(images, augment, generator) -> (4,) terms``.

    Built once from :func:`plan_step`'s plan: ``model`` is converted in place (channels_last, per-view or
    synced batch norm), wrapped in DDP in a job (``module``: what the step calls), its optimiser built
    (``optimizer``; pass one to use your own) and the update compiled as ``train.compile`` and
    ``compile_scope`` ask. torch.compile works lazily: the first call compiles; it is timed
    (``compile_seconds``, said once through ``log``), and if it fails the step runs eagerly from then on,
    with one warning naming the reason (``fallback``). The batch-norm buffers that a failed attempt may
    have updated are restored first, so the run continues as an eager run would. The augmentation stays
    outside the compiled region (Dynamo cannot take its torch.Generator). Only the first call is guarded:
    a later recompilation (new shapes) that fails raises as usual.
    """

    def __init__(self, model: nn.Module, cfg: Config, device: torch.device, *, dist: Dist = Dist(),
                 log: Callable[[str], None] = print, optimizer: torch.optim.Optimizer | None = None):
        self.plan, notes = plan_step(cfg, device, dist.world)
        notes += batchnorm_notes(model, cfg, self.plan)
        for note in notes:
            log(note)
        plan = self.plan
        self.model, self.device, self.log = model, device, log
        if plan.channels_last:
            model.to(memory_format=torch.channels_last)
        if plan.per_view or plan.sync_batchnorm:  # views 1: the whole call's statistics, synced
            PerViewBatchNorm.convert_per_view_batchnorm(model, views=2 if plan.per_view else 1,
                                                        sync=plan.sync_batchnorm)
        self.module = data_parallel(model, device) if plan.data_parallel else model
        self.optimizer = optimizer or build_optimizer(cfg.optim, model, cfg.train.batch_size,
                                                      lr_tensor=plan.compiles_update)
        self.loss_fn = make_loss_fn(self.module, cfg.loss, stack=plan.stack, amp=plan.amp,
                                    channels_last=plan.channels_last,
                                    gather=gather_with_grad if plan.data_parallel else None)
        self.eager = make_update(self.loss_fn, self.optimizer)
        self.update = self.eager
        if plan.compile and plan.scope == "loss":
            self.update = make_update(torch.compile(self.loss_fn, mode=plan.mode), self.optimizer)
        elif plan.compile:
            compiled = torch.compile(self.eager, mode=plan.mode)
            # the (4,) terms come out of the compiled region: under CUDA graphs the next replay reuses
            # their memory, and the training loop keeps them until its next flush, so hand out a copy
            self.update = lambda xa, xb: compiled(xa, xb).clone()
        self.pending = plan.compile  # the next call compiles
        self.compile_seconds = 0.0
        self.fallback: str | None = None

    def __call__(self, images: Tensor, augment: TwoViews, generator: torch.Generator) -> Tensor:
        xa, xb = augment(images, generator)
        if not self.pending:
            return self.update(xa, xb)
        self.pending = False
        buffers = [b.clone() for b in self.model.buffers()]
        start = time.perf_counter()
        try:
            terms = self.update(xa, xb)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        except Exception as e:  # any compiler failure: say why once, train eagerly
            reason = f"{type(e).__name__}: {first_line(e, None)}"[:300]
            self.fallback = reason
            self.log(f"warning: train.compile failed, training eagerly instead ({reason})")
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers):
                    b.copy_(saved)
            self.update = self.eager
            return self.update(xa, xb)
        self.compile_seconds = time.perf_counter() - start
        self.log(f"compiled the {'forward and loss' if self.plan.scope == 'loss' else 'whole update'} "
                 f"(torch.compile mode {self.plan.mode}) in {self.compile_seconds:.1f} s")
        return terms
