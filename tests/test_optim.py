"""LARS against its update written out by hand, parameter groups, the schedule."""

import math

import pytest
import torch
from torch import nn

from vicreg.config import OptimConfig
from vicreg.optim import LARS, build_optimizer, exclude_bias_and_norm, learning_rate, param_groups, peak_lr


def test_lars_update_by_hand():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, -1.0]))  # a bias: no decay, no adaptation
    opt = LARS([w, b], lr=0.1, weight_decay=0.5, momentum=0.9, eta=0.01)
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


def test_lars_zero_weight_uses_trust_one():
    w = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([w], lr=1.0, weight_decay=0.0, momentum=0.0, eta=0.001)
    w.grad = torch.ones(2, 2)
    opt.step()
    torch.testing.assert_close(w.data, -torch.ones(2, 2))


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


def test_schedule():
    assert peak_lr(OptimConfig(lr=0.2, lr_scaling="none"), 1024) == 0.2
    lrs = [learning_rate(s, 100, 10, 1.0, 0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert learning_rate(100, 100, 10, 1.0, 0.01) == pytest.approx(0.01)
    assert learning_rate(0, 10, 0, 1.0, 0.0) == pytest.approx(1.0)
