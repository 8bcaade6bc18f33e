"""The write-up's seed model and the model's three outputs."""

import torch
from torch import nn

from vicreg.config import ModelConfig, build_config
from vicreg.models import build_model, expander


def test_seed_model_matches_the_writeup():
    cfg = build_config("seed").model
    model = build_model(cfg, 3, [0.5] * 3, [0.25] * 3)
    # frozen VGG16 conv stack
    assert not any(p.requires_grad for p in model.backbone.parameters())
    head = [type(m).__name__ for m in model.head]
    assert head == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Linear"]
    linears = [(m.in_features, m.out_features) for m in model.head if isinstance(m, nn.Linear)]
    assert linears == [(512, 128), (128, 32), (32, 50)]
    exp = [type(m).__name__ for m in model.expander]
    assert exp == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert [(m.in_features, m.out_features) for m in model.expander if isinstance(m, nn.Linear)] == [
        (50, 80), (80, 80), (80, 100)]
    out = model(torch.rand(4, 3, 32, 32))
    assert out.representation.shape == (4, 512) and out.embedding.shape == (4, 50) and out.projection.shape == (4, 100)
    # the frozen backbone stays in eval mode and gets no gradient
    model.train()
    assert not model.backbone.training and model.head.training
    out.projection.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())


def test_no_head_embedding_is_representation():
    model = build_model(ModelConfig(backbone="small_cnn", expander=[64, 32]), 1, [0.5], [0.25]).eval()
    out = model(torch.rand(3, 1, 16, 16))
    assert torch.equal(out.embedding, out.representation)
    assert out.projection.shape == (3, 32)
    torch.testing.assert_close(model.embed(torch.zeros(1, 1, 16, 16)), model(torch.zeros(1, 1, 16, 16)).embedding)


def test_expander_from_widths():
    e = expander(50, [8192, 8192, 8192])
    assert [(m.in_features, m.out_features) for m in e if isinstance(m, nn.Linear)] == [
        (50, 8192), (8192, 8192), (8192, 8192)]


def test_model_normalises_its_input():
    model = build_model(ModelConfig(backbone="small_cnn", expander=[8]), 1, [0.5], [0.25]).eval()
    assert model.mean.flatten().tolist() == [0.5] and model.std.flatten().tolist() == [0.25]
    assert "mean" in model.state_dict()
