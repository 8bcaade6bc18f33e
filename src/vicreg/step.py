"""The VICReg loss of one batch of two views: the plain way and the fast way, with the same numbers.

plain (``train.stack_views=false``): one forward per view, as in the paper's code::

    za = model(xa).projection;  zb = model(xb).projection

fast (``train.stack_views=true``, the default): both views stacked into one (2N, C, S, S) batch and sent
through the model in one call, so every convolution and matrix product runs once on twice the rows
(fewer, larger kernels). Batch norm would then see both views together; with
``train.batchnorm="per_view"`` (the default) every batch-norm layer is a :class:`PerViewBatchNorm2d` /
:class:`PerViewBatchNorm1d` that normalises each view's half with that half's own statistics and
updates its running statistics once per view, view a first: the loss, the gradients and the running
statistics are those of the plain way (tests/test_step.py, in float64). The per-view statistics are read
from a (2, N, C, ...) view of the stacked batch and the normalisation is applied to it as a whole, so no
view is split off and concatenated back (:func:`per_view_batch_norm`). ``train.batchnorm="joint"`` normalises the
2N rows together, which changes the maths (each view is normalised with statistics that also depend on
the other view); benchmarks/throughput.py measures both.

:func:`make_loss_fn` returns ``loss_fn(xa, xb) -> (loss, terms)`` in either form, under bf16 autocast
when asked, with the loss itself in float32 (:func:`vicreg.loss.vicreg_loss` upcasts). :class:`Step` is
one optimisation step as the training loop runs it, compiled as ``train.compile`` asks: by default on CUDA
the forward and loss as one graph under CUDA graphs (``compile_mode=reduce-overhead``), eager on the CPU.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor, nn

from .augment import TwoViews
from .config import Config, LossConfig, TrainConfig
from .distributed import all_gather_stack, all_reduce_sum, world_size
from .errors import first_line
from .loss import LossTerms, vicreg_loss

__all__ = ["PerViewBatchNorm1d", "PerViewBatchNorm2d", "per_view_batch_norm", "per_view_batchnorm", "stack_views",
           "make_loss_fn", "LossFn", "build_loss_fn", "resolve_compile", "compiles_update", "make_update", "Step"]

LossFn = Callable[[Tensor, Tensor], LossTerms]


def per_view_batch_norm(x: Tensor, views: int, weight: Tensor | None, bias: Tensor | None,
                        eps: float, sync: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Training-mode batch norm of ``views`` stacked views, each with its own statistics, without a copy.

    x: (V*N, C, *S) in any memory format -> y of the same shape and format, and each view's batch mean and
    biased variance as (V*C,) vectors (view v at [v*C:(v+1)*C]; float32 for bf16 x) for the running statistics.
    The statistics come from the (V, N, C, *S) view of ``x``; the affine map y = x * scale + shift (scale
    and shift per view and channel) is applied to ``x`` as a whole, so no view is split off and
    concatenated back (no ``aten::cat``). In float32 when ``x`` is bf16/fp16, as cuDNN does.

    sync: the statistics of each view over every process of the job (SyncBatchNorm, per view): the sums
    are all-reduced, so N processes normalise exactly as one process on their concatenated batches.
    """
    return _PerViewBatchNorm.apply(x, weight, bias, views, eps, sync and world_size() > 1)


def _rows(coef: Tensor, n: int) -> Tensor:
    """(V, 1, C, 1, ...) per view and channel -> (V*n, C, 1, ...) per row of the stacked batch (a small copy),
    so that the elementwise maps run on the stacked batch itself and give a new tensor in its layout."""
    return coef.expand(coef.shape[0], n, *coef.shape[2:]).flatten(0, 1)


def _global_moments(xv: Tensor, reduce: tuple[int, ...], acc: torch.dtype, n: int) -> tuple[Tensor, Tensor]:
    """Mean and biased variance over every process's ``n`` values per view and channel, from one all-gather
    of each process's mean m_r and centred sum of squares M_r (Chan et al.'s pairwise combination, equal
    counts): mean = avg_r m_r, var = (sum_r M_r + n * sum_r (m_r - mean)^2) / (n * world). Two-pass exact,
    like the single-process branch, with one collective instead of two."""
    local_mean = xv.sum(reduce, keepdim=True, dtype=acc) / n
    local_m2 = (xv - local_mean).square_().sum(reduce, keepdim=True)
    means, m2s = all_gather_stack(torch.stack([local_mean, local_m2])).unbind(1)  # (world, V, 1, C, 1, ...) each
    mean = means.mean(0)
    return mean, (m2s.sum(0) + n * (means - mean).square().sum(0)) / (n * means.shape[0])


class _PerViewBatchNorm(torch.autograd.Function):
    """Autograd of :func:`per_view_batch_norm` with the batch-norm backward written out, per view v and
    channel c over its n values (xhat = (x - mean) * invstd, k = weight * invstd)::

        dbias = sum(dy)    dweight = sum(dy * xhat)    dx = k * (dy - sum(dy) / n - xhat * sum(dy * xhat) / n)

    i.e. dx = k * dy + b * x + c with per-(v, c) coefficients: a few reductions and two elementwise maps,
    close to the stock kernel (autograd through the forward would take about twice as many). Every
    reduction accumulates in float32 (float64 for float64 input); tests check the gradients against
    finite differences in float64. No ``out=`` and no views returned: torch.compile traces it in one graph
    in any memory format."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, views: int, eps: float,
                sync: bool = False):
        xv = x.unflatten(0, (views, -1))  # (V, N, C, *S): a view, no copy
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # accumulation dtype
        reduce = (1, *range(3, xv.dim()))  # the samples of a view and the spatial positions
        n = xv.numel() // (xv.shape[0] * xv.shape[2])  # values per view and channel
        if sync:  # over every process: one all-gather of each process's mean and centred sum of squares
            mean, var = _global_moments(xv, reduce, acc, n)
            n *= world_size()
        elif xv.device.type == "cpu":  # two passes of plain sums: on the CPU twice as fast as var_mean (Welford)
            mean = xv.sum(reduce, keepdim=True, dtype=acc) / n  # (V, 1, C, 1, ...)
            var = (xv - mean).square_().sum(reduce, keepdim=True) / n  # biased: what batch norm divides by
        else:  # one pass (Welford) on the GPU, as the stock kernels do (on a float32 copy of bf16 input)
            var, mean = torch.var_mean(xv.to(acc), dim=reduce, correction=0, keepdim=True)
        invstd = torch.rsqrt(var + eps)
        shape = (1, 1, -1) + (1,) * (xv.dim() - 3)  # a (C,) parameter broadcast over (V, N, C, *S)
        scale = invstd if weight is None else invstd * weight.view(shape)
        shift = -mean * scale if bias is None else torch.addcmul(bias.view(shape), mean, scale, value=-1)
        y = torch.addcmul(_rows(shift, xv.shape[1]), x, _rows(scale, xv.shape[1])).to(x.dtype)  # x's layout
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.views, ctx.reduce, ctx.shape, ctx.has_bias, ctx.sync = views, reduce, shape, bias is not None, sync
        ctx.n = n
        mean, var = mean.flatten(), var.flatten()
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy: Tensor, _dmean: Tensor, _dvar: Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        xv, dyv = x.unflatten(0, (ctx.views, -1)), dy.unflatten(0, (ctx.views, -1))
        rows, n = xv.shape[1], ctx.n
        sum_dy = dyv.sum(ctx.reduce, keepdim=True, dtype=mean.dtype)
        sum_dy_xhat = (xv - mean).mul_(dyv).sum(ctx.reduce, keepdim=True) * invstd  # centred: exact for large means
        # synced: x's gradient needs the sums over every process; the weight's and bias's stay this process's
        # own (DDP averages them over processes, as it does every other parameter's)
        total_dy, total_dy_xhat = all_reduce_sum(torch.stack([sum_dy, sum_dy_xhat])) if ctx.sync else (sum_dy,
                                                                                                      sum_dy_xhat)
        k = invstd if weight is None else invstd * weight.view(ctx.shape)
        b = -k * invstd * total_dy_xhat / n
        c = -k * total_dy / n - b * mean
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.addcmul(torch.addcmul(_rows(c, rows), x, _rows(b, rows)), dy, _rows(k, rows)).to(x.dtype)
        if weight is not None and ctx.needs_input_grad[1]:
            dw = sum_dy_xhat.sum(0).flatten()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = sum_dy.sum(0).flatten()
        return dx, dw, db, None, None, None


class _PerView:
    """Mixin for batch-norm classes: in training, a (views * N, ...) batch is normalised view by view."""

    views: int = 2
    sync: bool = False  # statistics over every process of the job (set by per_view_batchnorm(sync=True))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or (self.views == 1 and not self.sync):
            return super().forward(x)
        if x.shape[0] % self.views:
            raise ValueError(f"{type(self).__name__} expects {self.views} stacked views of equal size, "
                             f"got a batch of {x.shape[0]} rows")
        self._check_input_dim(x)
        y, mean, var = per_view_batch_norm(x, self.views, self.weight, self.bias, self.eps, self.sync)
        if self.training and self.track_running_stats:
            n = x.numel() // (self.views * x.shape[1]) * (world_size() if self.sync else 1)
            self._update_running_stats(mean.detach().view(self.views, -1), var.detach().view(self.views, -1), n)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        """As the stock layer does once per view, view a first: running <- (1 - m) running + m batch, with
        the unbiased variance; after V views, running * (1 - m)^V + sum_v m (1 - m)^(V-1-v) batch_v.
        ``momentum=None`` (a cumulative average) counts each view as one batch."""
        seen = int(self.num_batches_tracked) if self.momentum is None else 0  # a host sync, only in this mode
        self.num_batches_tracked.add_(self.views)
        unbiased = var * (n / max(n - 1, 1))
        for running, batch in ((self.running_mean, mean), (self.running_var, unbiased)):
            if self.momentum is None:
                for v in range(self.views):
                    running.mul_(1 - 1 / (seen + v + 1)).add_(batch[v].to(running.dtype), alpha=1 / (seen + v + 1))
                continue
            m = self.momentum
            running.mul_((1 - m) ** self.views)
            for v in range(self.views):
                running.add_(batch[v].to(running.dtype), alpha=m * (1 - m) ** (self.views - 1 - v))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, views={self.views}" + (", sync" if self.sync else "")


class PerViewBatchNorm1d(_PerView, nn.BatchNorm1d):
    """nn.BatchNorm1d whose training-mode statistics are per view of a stacked batch (same state_dict keys)."""


class PerViewBatchNorm2d(_PerView, nn.BatchNorm2d):
    """nn.BatchNorm2d whose training-mode statistics are per view of a stacked batch (same state_dict keys)."""


_PER_VIEW = {nn.BatchNorm1d: PerViewBatchNorm1d, nn.BatchNorm2d: PerViewBatchNorm2d}


def per_view_batchnorm(model: nn.Module, views: int = 2, sync: bool = False) -> int:
    """Swap every nn.BatchNorm1d/2d in ``model`` (in place) for its per-view twin; returns how many.

    Parameters and buffers are the same tensors, so the state_dict, the optimiser's parameters and
    checkpoints are unchanged; in eval mode the layers behave exactly as before. Calling it again on a
    converted model only sets ``views`` and ``sync``. sync: statistics over every process of the job.
    """
    if views < 1:
        raise ValueError(f"views={views} must be >= 1")
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _PerView):
                child.views, child.sync = views, sync
                count += 1
            elif type(child) in _PER_VIEW:
                twin = _twin(child, views)
                twin.sync = sync
                setattr(parent, name, twin)
                count += 1
    return count


def _twin(bn: nn.BatchNorm1d | nn.BatchNorm2d, views: int) -> nn.Module:
    """The per-view twin of ``bn``, holding the very same parameters and buffers."""
    twin = _PER_VIEW[type(bn)](bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        twin.weight, twin.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        twin.running_mean, twin.running_var = bn.running_mean, bn.running_var
        twin.num_batches_tracked = bn.num_batches_tracked
    twin.views = views
    return twin.train(bn.training)


def stack_views(xa: Tensor, xb: Tensor, channels_last: bool = False) -> Tensor:
    """(N, C, S, S) twice -> (2N, C, S, S): view a's rows first; channels_last memory format if asked."""
    x = torch.cat([xa, xb])
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_loss_fn(model: nn.Module, loss: LossConfig, stack: bool = True, amp: torch.dtype | None = None,
                 channels_last: bool = False, gather: Callable[[Tensor], Tensor] | None = None) -> LossFn:
    """``loss_fn(xa, xb)``: the VICReg loss terms of a batch of two views (float32 (N, C, S, S) each).

    stack: both views through ``model`` in one call (see the module docstring; convert the model with
        :func:`per_view_batchnorm` first to keep the statistics per view), else one call per view.
    amp: autocast dtype of the model's forward (e.g. torch.bfloat16) or None for full precision.
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


def resolve_compile(train: TrainConfig, device: torch.device) -> tuple[bool, str]:
    """(compile?, torch.compile mode) of ``train.compile``/``compile_mode`` on ``device``: auto compiles on
    CUDA only, with CUDA graphs (reduce-overhead); on the CPU the default mode."""
    enabled = device.type == "cuda" if train.compile == "auto" else bool(train.compile)
    mode = train.compile_mode
    if mode == "auto":
        mode = "reduce-overhead" if device.type == "cuda" else "default"
    return enabled, mode


def compiles_update(train: TrainConfig, device: torch.device) -> bool:
    """Does the optimiser's update run inside the compiled region (compile_scope=step)? Then its learning
    rate must be a device tensor (``build_optimizer(..., lr_tensor=True)``), set in place every step."""
    return resolve_compile(train, device)[0] and train.compile_scope == "step"


def build_loss_fn(model: nn.Module, cfg: Config, amp: torch.dtype | None, channels_last: bool,
                  gather: Callable[[Tensor], Tensor] | None = None) -> LossFn:
    """The (eager) loss function of ``cfg.train``: stacked views with per-view batch norm (converts
    ``model`` in place), or one forward per view. :class:`Step` compiles it when asked."""
    t = cfg.train
    if t.stack_views and t.batchnorm == "per_view":
        per_view_batchnorm(model, views=2, sync=t.sync_batchnorm and world_size() > 1)
    return make_loss_fn(model, cfg.loss, stack=t.stack_views, amp=amp, channels_last=channels_last, gather=gather)


UpdateFn = Callable[[Tensor, Tensor], Tensor]


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
    """One optimisation step as ``cfg.train`` asks for it: ``step(images, augment, generator) -> (4,) terms``.

    ``train.compile`` (auto: on CUDA) compiles, per ``train.compile_scope``, the forward and the loss
    ("loss") or the forward, loss, backward and optimiser update ("step", whose optimiser then reads a
    tensor learning rate, see :func:`compiles_update`). torch.compile works lazily: the first
    call compiles; it is timed (``compile_seconds``, said once through ``log``), and if it fails the step
    runs eagerly from then on, with one warning naming the reason (``fallback``). The batch-norm buffers
    that a failed attempt may have updated are restored first, so the run continues as an eager run would.
    The augmentation stays outside the compiled region (Dynamo cannot take its torch.Generator). Only
    the first call is guarded: a later recompilation (new shapes) that fails raises as usual.
    """

    def __init__(self, model: nn.Module, cfg: Config, optimizer: torch.optim.Optimizer, amp: torch.dtype | None,
                 channels_last: bool, device: torch.device, log: Callable[[str], None] = print,
                 gather: Callable[[Tensor], Tensor] | None = None):
        self.model, self.device, self.log = model, device, log
        self.enabled, self.mode = resolve_compile(cfg.train, device)
        self.scope = cfg.train.compile_scope
        self.loss_fn = build_loss_fn(model, cfg, amp, channels_last, gather)
        self.eager = make_update(self.loss_fn, optimizer)
        self.update = self.eager
        if self.enabled and self.scope == "loss":
            self.update = make_update(torch.compile(self.loss_fn, mode=self.mode), optimizer)
        elif self.enabled:
            compiled = torch.compile(self.eager, mode=self.mode)
            # the (4,) terms come out of the compiled region: under CUDA graphs the next replay reuses
            # their memory, and the training loop keeps them until its next flush, so hand out a copy
            self.update = lambda xa, xb: compiled(xa, xb).clone()
        self.pending = self.enabled  # the next call compiles
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
        self.log(f"compiled the {'forward and loss' if self.scope == 'loss' else 'whole update'} "
                 f"(torch.compile mode {self.mode}) in {self.compile_seconds:.1f} s")
        return terms
