"""Per-view batch norm: each view of a stacked batch normalised by its own statistics, exactly (float64)."""

import copy

import pytest
import torch
from torch import nn

from vicreg.batchnorm import PerViewBatchNorm, PerViewBatchNorm1d, PerViewBatchNorm2d, per_view_normalize
from vicreg.config import ModelConfig
from vicreg.models import build_model

from numerics import FLOAT64_REL, assert_rel_close

convert = PerViewBatchNorm.convert_per_view_batchnorm
SMALL_CNN = ModelConfig(backbone="small_cnn", expander=[32, 32])
MLP_HEAD = ModelConfig(backbone="small_cnn", head="mlp", head_widths=[24], embedding_dim=8, expander=[16, 16])


def _converted(cfg: ModelConfig):
    torch.manual_seed(0)
    plain = build_model(cfg, 3, [0.5] * 3, [0.25] * 3).train()
    return plain, convert(copy.deepcopy(plain))


def test_the_converter_swaps_every_batch_norm_layer_and_a_layer_passed_itself():
    plain, fast = _converted(MLP_HEAD)
    stock = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in plain.modules())
    assert stock == sum(isinstance(m, PerViewBatchNorm) for m in fast.modules()) > 0
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in fast.modules())
    bn = nn.BatchNorm1d(3)
    twin = convert(bn, views=3, sync=True)  # as nn.SyncBatchNorm.convert_sync_batchnorm: the new layer back
    assert isinstance(twin, PerViewBatchNorm1d) and (twin.views, twin.sync) == (3, True)
    assert twin.weight is bn.weight and twin.running_var is bn.running_var
    with pytest.raises(ValueError, match="views=0 must be >= 1"):
        convert(nn.BatchNorm1d(3), views=0)


def test_converted_model_keeps_its_state_and_eval_outputs():
    plain, fast = _converted(MLP_HEAD)
    assert list(plain.state_dict()) == list(fast.state_dict())
    for (n, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        assert torch.equal(a, b), n
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    plain.eval(), fast.eval()
    with torch.no_grad():
        for a, b in zip(plain(x), fast(x)):
            assert torch.equal(a, b)
    # the twin shares its tensors with the layer it replaced: the optimiser's parameters are unchanged
    torch.manual_seed(0)
    model = build_model(SMALL_CNN, 3, [0.5] * 3, [0.25] * 3)
    before = [id(p) for p in model.parameters()]
    convert(model)
    assert [id(p) for p in model.parameters()] == before
    assert any(isinstance(m, PerViewBatchNorm2d) for m in model.modules())
    convert(model, views=3)  # converted already: only the views change
    layers = [m for m in model.modules() if isinstance(m, PerViewBatchNorm)]
    assert len(layers) == 5 and all(m.views == 3 for m in layers)  # 4 in the CNN, 1 in the expander


def test_per_view_batch_norm_normalises_each_view_by_itself():
    layer = nn.Sequential(nn.BatchNorm1d(3))
    convert(layer)
    bn = layer[0]
    assert isinstance(bn, PerViewBatchNorm1d)
    a, b = torch.randn(5, 3), torch.randn(5, 3) * 4 + 10
    y = bn(torch.cat([a, b]))
    for part in y.chunk(2):  # each half: mean 0, biased std 1
        torch.testing.assert_close(part.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(part.var(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="2 stacked views"):
        bn(torch.randn(5, 3))


def test_per_view_batch_norm_gradients_are_exact_in_float64():
    """The function behind the per-view layers: autograd's gradients against finite differences, for a
    conv-shaped (2N, C, H, W) batch in channels_last and a (2N, D) batch, with and without affine."""
    g = torch.Generator().manual_seed(0)
    x4 = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x2 = torch.randn(8, 5, generator=g, dtype=torch.float64)
    for x in (x4, x2):
        c = x.shape[1]
        w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
        b = torch.randn(c, generator=g, dtype=torch.float64)
        args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
        assert torch.autograd.gradcheck(lambda x, w, b: per_view_normalize(x, 2, w, b, 1e-5)[0], args)
        assert torch.autograd.gradcheck(lambda x: per_view_normalize(x, 2, None, None, 1e-5)[0], (x,))


def test_per_view_batch_norm_keeps_the_memory_format_and_copies_no_view():
    """No ``aten::cat`` (the copy the stacked batch used to pay per layer) and channels_last preserved."""
    bn = nn.Sequential(nn.BatchNorm2d(4))
    convert(bn)
    x = torch.randn(6, 4, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.profiler.profile() as prof:
        y = bn(x)
        y.sum().backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::cat" not in ops and not any("batch_norm" in op for op in ops), sorted(ops)
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_per_view_running_statistics_follow_the_stock_layer_view_by_view(momentum):
    """Running mean/var after three stacked batches equal the stock layer's after the same six per-view
    batches (view a, then view b), also for momentum=None (a cumulative average); float64."""
    stock = nn.BatchNorm2d(3, momentum=momentum).double()
    layer = nn.Sequential(copy.deepcopy(stock))
    convert(layer)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        a, b = (torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64) * 3 + 1 for _ in range(2))
        stock(a), stock(b)
        layer(torch.cat([a, b]))
    for name in ("running_mean", "running_var"):
        assert_rel_close(getattr(layer[0], name), getattr(stock, name), FLOAT64_REL, name)
    assert int(layer[0].num_batches_tracked) == int(stock.num_batches_tracked) == 6
