"""Per-view batch norm: batch-norm layers that normalise each view of a stacked batch with its own statistics.

The fast step sends both views through the model as one (2N, ...) batch (see vicreg.step). A stock
batch-norm layer would then normalise the 2N rows together, which changes the maths; the layers here
normalise view a's N rows with view a's statistics and view b's with view b's, and update their running
statistics once per view, view a first: the numbers of one forward per view (tests/test_batchnorm.py,
in float64). The statistics are read from a (V, N, C, ...) view of the stacked batch and the affine map is
applied to it as a whole, so no view is split off and concatenated back.

- :func:`per_view_normalize` is the functional form (an autograd function with the backward written out);
- :class:`PerViewBatchNorm1d` / :class:`PerViewBatchNorm2d` are drop-in twins of nn.BatchNorm1d/2d with
  the same parameters, buffers and state_dict keys;
- :meth:`PerViewBatchNorm.convert_per_view_batchnorm` swaps every batch-norm layer of a model for its
  twin, as ``nn.SyncBatchNorm.convert_sync_batchnorm`` does for synced batch norm; ``sync=True``
  takes each view's statistics over every process of a data-parallel job.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .distributed import all_gather_stack, all_reduce_sum, world_size

__all__ = ["per_view_normalize", "PerViewBatchNorm", "PerViewBatchNorm1d", "PerViewBatchNorm2d"]


def per_view_normalize(x: Tensor, views: int, weight: Tensor | None, bias: Tensor | None,
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
    return _PerViewNormalize.apply(x, weight, bias, views, eps, sync and world_size() > 1)


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


class _PerViewNormalize(torch.autograd.Function):
    """Autograd of :func:`per_view_normalize` with the batch-norm backward written out, per view v and
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


class PerViewBatchNorm:
    """Mixin for batch-norm classes: in training, a (views * N, ...) batch is normalised view by view."""

    views: int = 2
    sync: bool = False  # statistics over every process of the job (set by convert_per_view_batchnorm(sync=True))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or (self.views == 1 and not self.sync):
            return super().forward(x)
        if x.shape[0] % self.views:
            raise ValueError(f"{type(self).__name__} expects {self.views} stacked views of equal size, "
                             f"got a batch of {x.shape[0]} rows")
        self._check_input_dim(x)
        y, mean, var = per_view_normalize(x, self.views, self.weight, self.bias, self.eps, self.sync)
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

    @classmethod
    def convert_per_view_batchnorm(cls, module: nn.Module, views: int = 2, sync: bool = False) -> nn.Module:
        """``module`` with every nn.BatchNorm1d/2d in it swapped for its per-view twin (in place; a batch-norm
        layer passed itself comes back as its twin), as ``nn.SyncBatchNorm.convert_sync_batchnorm`` does.

        The twins hold the very same parameters and buffers, so the state_dict, the optimiser's parameters
        and checkpoints are unchanged; in eval mode they behave exactly as before. Layers converted already
        only get the new ``views`` and ``sync``. sync: each view's statistics over every process of the job.
        """
        if views < 1:
            raise ValueError(f"views={views} must be >= 1")
        if isinstance(module, PerViewBatchNorm):
            module.views, module.sync = views, sync
            return module
        if type(module) in _TWINS:
            return _twin(module, views, sync)
        for name, child in module.named_children():
            converted = cls.convert_per_view_batchnorm(child, views, sync)
            if converted is not child:
                setattr(module, name, converted)
        return module


class PerViewBatchNorm1d(PerViewBatchNorm, nn.BatchNorm1d):
    """nn.BatchNorm1d whose training-mode statistics are per view of a stacked batch (same state_dict keys)."""


class PerViewBatchNorm2d(PerViewBatchNorm, nn.BatchNorm2d):
    """nn.BatchNorm2d whose training-mode statistics are per view of a stacked batch (same state_dict keys)."""


_TWINS = {nn.BatchNorm1d: PerViewBatchNorm1d, nn.BatchNorm2d: PerViewBatchNorm2d}


def _twin(bn: nn.BatchNorm1d | nn.BatchNorm2d, views: int, sync: bool) -> nn.Module:
    """The per-view twin of ``bn``, holding the very same parameters and buffers."""
    twin = _TWINS[type(bn)](bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        twin.weight, twin.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        twin.running_mean, twin.running_var = bn.running_mean, bn.running_var
        twin.num_batches_tracked = bn.num_batches_tracked
    twin.views, twin.sync = views, sync
    return twin.train(bn.training)
