"""LARS against its update written out by hand, parameter groups, the schedule."""

import math

import pytest
import torch
from torch import nn

from vicreg.config import OptimConfig
from vicreg.optim import (
    LARS,
    build_optimizer,
    exclude_bias_and_norm,
    load_optimizer_state,
    param_groups,
    peak_lr,
    set_learning_rate,
)

from numerics import FLOAT64_REL, assert_rel_close


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_update_by_hand(foreach):
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, -1.0]))  # a bias: no decay, no adaptation
    opt = LARS([w, b], lr=0.1, weight_decay=0.5, momentum=0.9, eta=0.01, foreach=foreach)
    w.grad = torch.tensor([[1.0, 0.0]])
    b.grad = torch.tensor([0.5, 0.5])
    opt.step()
    g = torch.tensor([[1.0, 0.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])  # [[2.5, 2.0]]
    trust = 0.01 * 5.0 / math.sqrt(2.5**2 + 2.0**2)
    torch.testing.assert_close(w.data, torch.tensor([[3.0, 4.0]]) - 0.1 * trust * g)
    torch.testing.assert_close(b.data, torch.tensor([1.0, -1.0]) - 0.1 * torch.tensor([0.5, 0.5]))
    # second step: momentum accumulates
    w.grad, b.grad = None, torch.tensor([0.5, 0.5])
    opt.step()
    torch.testing.assert_close(b.data, torch.tensor([1.0, -1.0]) - 0.1 * 0.5 - 0.1 * (0.9 * 0.5 + 0.5))


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_zero_weight_uses_trust_one(foreach):
    w = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([w], lr=1.0, weight_decay=0.0, momentum=0.0, eta=0.001, foreach=foreach)
    w.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(w.data, -torch.ones(2, 2))


def test_lars_foreach_equals_the_loop_over_parameters():
    """The multi-tensor update gives the per-parameter loop's weights and momenta, step after step."""
    # float64: the multi-tensor norms may sum in another order than the loop's; equal to ~1e-15 in float64
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3)).double() for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    with torch.no_grad():
        nets[0][0].weight.zero_(), nets[1][0].weight.zero_()  # a zero weight: trust ratio 1 in both
    opts = [LARS(n.parameters(), lr=0.2, weight_decay=1e-2, momentum=0.9, eta=0.02, foreach=f)
            for n, f in zip(nets, (True, False))]
    for _ in range(5):
        x = torch.randn(16, 5, dtype=torch.float64)
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for pa, pb in zip(nets[0].parameters(), nets[1].parameters()):
        assert_rel_close(pa, pb, FLOAT64_REL, "weights")
        assert_rel_close(opts[0].state[pa]["momentum_buffer"], opts[1].state[pb]["momentum_buffer"], FLOAT64_REL,
                         "momentum")
    assert nets[0][0].weight.abs().sum() > 0  # the zero weight moved


def test_exclusion_filter_and_groups():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    assert [exclude_bias_and_norm(p) for p in model.parameters()] == [False, True, True, True]
    groups = param_groups(model, 1e-4)
    assert len(groups[0]["params"]) == 1 and len(groups[1]["params"]) == 3 and groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("name, cls", [("lars", LARS), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_build_optimizer(name, cls):
    opt = build_optimizer(OptimConfig(name=name, lr=0.3), nn.Linear(2, 2), batch_size=512)
    assert isinstance(opt, cls)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.6)  # linear scaling: 0.3 * 512 / 256


def test_peak_learning_rate_scales_with_the_batch():
    assert peak_lr(OptimConfig(lr=0.2, lr_scaling="none"), 1024) == 0.2


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_with_a_tensor_learning_rate_equals_a_float_one(foreach):
    """A compiled update reads the learning rate from a device tensor set in place (set_learning_rate):
    the same weights as a float learning rate, step after step at changing rates (float64)."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3)).double() for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [LARS(nets[0].parameters(), lr=torch.tensor(0.0, dtype=torch.float64), eta=0.02, foreach=foreach),
            LARS(nets[1].parameters(), lr=0.0, eta=0.02, foreach=foreach)]
    for lr in (0.3, 0.1, 0.05):
        x = torch.randn(16, 5, dtype=torch.float64)
        for net, opt in zip(nets, opts):
            set_learning_rate(opt, lr)
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    assert isinstance(opts[0].param_groups[0]["lr"], torch.Tensor) and opts[0].param_groups[0]["lr"].item() == 0.05
    for pa, pb in zip(nets[0].parameters(), nets[1].parameters()):
        assert_rel_close(pa, pb, FLOAT64_REL, "weights")


def test_loading_a_state_keeps_the_learning_rate_kind_the_optimiser_was_built_with():
    """A run saved with a float learning rate and resumed with train.compile_scope=step (a tensor), or the
    other way round, keeps the kind its new optimiser needs, with the saved value."""
    net = nn.Linear(3, 2)
    as_float = build_optimizer(OptimConfig(lr=0.5, lr_scaling="none"), net, 256)
    as_tensor = build_optimizer(OptimConfig(lr=0.5, lr_scaling="none"), net, 256, lr_tensor=True)
    set_learning_rate(as_float, 0.125)
    set_learning_rate(as_tensor, 0.25)
    tensor_lr = as_tensor.param_groups[0]["lr"]
    load_optimizer_state(as_tensor, as_float.state_dict())
    assert as_tensor.param_groups[0]["lr"] is tensor_lr and tensor_lr.item() == 0.125
    load_optimizer_state(as_float, build_optimizer(OptimConfig(lr=0.5, lr_scaling="none"), net, 256,
                                                   lr_tensor=True).state_dict())
    assert as_float.param_groups[0]["lr"] == 0.5 and isinstance(as_float.param_groups[0]["lr"], float)
