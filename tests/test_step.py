"""The fast step (both views in one call, per-view batch norm) against the plain step (one call per view)."""

import copy
import shutil

import pytest
import torch
from torch import nn

from vicreg.config import LossConfig, ModelConfig
from vicreg.models import build_model
from vicreg.step import PerViewBatchNorm1d, PerViewBatchNorm2d, make_loss_fn, per_view_batchnorm, stack_views

MODELS = {
    "small_cnn": ModelConfig(backbone="small_cnn", expander=[32, 32]),
    "resnet18_cifar": ModelConfig(backbone="resnet18_cifar", expander=[32, 32]),
    "small_cnn+mlp_head": ModelConfig(backbone="small_cnn", head="mlp", head_widths=[24], embedding_dim=8,
                                      expander=[16, 16]),
    "small_cnn+seed_head": ModelConfig(backbone="small_cnn", head="seed", head_widths=[16, 8], embedding_dim=4,
                                       expander=[16, 16], dropout=0.0),
}


def _views(n=6, channels=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g), torch.rand(n, channels, size, size, generator=g)


def _pair(name, channels=3):
    torch.manual_seed(0)
    plain = build_model(MODELS[name], channels, [0.5] * channels, [0.25] * channels).train()
    fast = copy.deepcopy(plain)
    assert per_view_batchnorm(fast) == sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in plain.modules())
    return plain, fast


def _step(model, stack, xa, xb, amp=None):
    terms = make_loss_fn(model, LossConfig(), stack=stack, amp=amp)(xa, xb)
    model.zero_grad(set_to_none=True)
    terms.loss.backward()
    return torch.stack(tuple(terms)).detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", list(MODELS))
def test_fast_step_gives_the_plain_step_loss_gradients_and_running_stats(name):
    plain, fast = _pair(name)
    xa, xb = _views()
    terms_plain, grads_plain = _step(plain, False, xa, xb)
    terms_fast, grads_fast = _step(fast, True, xa, xb)
    torch.testing.assert_close(terms_fast, terms_plain, rtol=1e-5, atol=1e-6)
    for n, g in grads_plain.items():
        torch.testing.assert_close(grads_fast[n], g, rtol=1e-4, atol=1e-6, msg=n)
    buffers = dict(fast.named_buffers())
    for n, b in plain.named_buffers():  # running mean/var updated view a then view b, batches counted twice
        torch.testing.assert_close(buffers[n], b, rtol=1e-5, atol=1e-6, msg=n)


def test_fast_step_under_bf16_autocast_matches_the_plain_step_within_bf16_tolerance():
    plain, fast = _pair("resnet18_cifar")
    xa, xb = _views(n=8)
    terms_plain, grads_plain = _step(plain, False, xa, xb, amp=torch.bfloat16)
    terms_fast, grads_fast = _step(fast, True, xa, xb, amp=torch.bfloat16)
    torch.testing.assert_close(terms_fast, terms_plain, rtol=2e-2, atol=1e-3)
    for n, g in grads_plain.items():  # gradient directions agree to bf16 precision
        cos = nn.functional.cosine_similarity(grads_fast[n].flatten(), g.flatten(), dim=0)
        assert cos > 0.99 or g.norm() < 1e-6, (n, cos.item())
    # and the bf16 fast step stays close to the fp32 plain one: the loss is computed in float32
    terms_fp32, _ = _step(copy.deepcopy(plain), False, xa, xb)
    torch.testing.assert_close(terms_fast, terms_fp32, rtol=3e-2, atol=1e-2)


def test_joint_batch_norm_changes_the_numbers():
    """Stacking without the per-view twin normalises both views together: a different loss (what
    train.batchnorm=joint trades for speed)."""
    torch.manual_seed(0)
    plain = build_model(MODELS["small_cnn"], 3, [0.5] * 3, [0.25] * 3).train()
    joint = copy.deepcopy(plain)
    xa, xb = _views()
    xb = xb * 0.3 + 0.6  # views with different statistics
    terms_plain, _ = _step(plain, False, xa, xb)
    terms_joint, _ = _step(joint, True, xa, xb)
    assert (terms_joint - terms_plain).abs().max() > 1e-3


def test_converted_model_keeps_its_state_and_eval_outputs():
    plain, fast = _pair("small_cnn+mlp_head")
    assert list(plain.state_dict()) == list(fast.state_dict())
    for (n, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        assert torch.equal(a, b), n
    x = _views()[0]
    plain.eval(), fast.eval()
    with torch.no_grad():
        for a, b in zip(plain(x), fast(x)):
            assert torch.equal(a, b)
    # the twin shares its tensors with the layer it replaced: the optimiser's parameters are unchanged
    torch.manual_seed(0)
    model = build_model(MODELS["small_cnn"], 3, [0.5] * 3, [0.25] * 3)
    before = [id(p) for p in model.parameters()]
    per_view_batchnorm(model)
    assert [id(p) for p in model.parameters()] == before
    assert any(isinstance(m, PerViewBatchNorm2d) for m in model.modules())
    assert per_view_batchnorm(model, views=3) == 5 and all(  # 4 in the CNN, 1 in the expander
        m.views == 3 for m in model.modules() if isinstance(m, PerViewBatchNorm2d))


def test_per_view_batch_norm_normalises_each_view_by_itself():
    layer = nn.Sequential(nn.BatchNorm1d(3))
    per_view_batchnorm(layer)
    bn = layer[0]
    assert isinstance(bn, PerViewBatchNorm1d)
    a, b = torch.randn(5, 3), torch.randn(5, 3) * 4 + 10
    y = bn(torch.cat([a, b]))
    for part in y.chunk(2):  # each half: mean 0, biased std 1
        torch.testing.assert_close(part.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(part.var(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="2 stacked views"):
        bn(torch.randn(5, 3))


def test_stack_views_order_and_memory_format():
    xa, xb = _views(n=2)
    x = stack_views(xa, xb, channels_last=True)
    assert torch.equal(x[:2], xa) and torch.equal(x[2:], xb)
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="torch.compile on the CPU needs a C compiler")
def test_compiled_fast_step_is_one_graph_and_matches_eager():
    """train.compile hands make_loss_fn to torch.compile: one graph (no breaks), the same loss and gradients."""
    plain, fast = _pair("small_cnn")
    xa, xb = _views()
    fn = make_loss_fn(fast, LossConfig(), stack=True)
    explained = torch._dynamo.explain(fn)(xa, xb)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    terms_eager, grads_eager = _step(plain, False, xa, xb)
    compiled = torch.compile(fn)
    terms = compiled(xa, xb)
    fast.zero_grad(set_to_none=True)
    terms.loss.backward()
    torch.testing.assert_close(torch.stack(tuple(terms)).detach(), terms_eager, rtol=1e-4, atol=1e-5)
    for n, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, grads_eager[n], rtol=1e-3, atol=1e-5, msg=n)
