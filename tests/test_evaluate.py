"""Weighted k-NN on toy sets with known answers."""

import pytest
import torch

from vicreg.evaluate import knn_accuracy, linear_probe


def test_knn_on_separated_clusters_is_perfect():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 10
    train_y = torch.arange(4).repeat_interleave(25)
    train_x = centres[train_y] + torch.randn(100, 4, generator=g)
    test_y = torch.arange(4).repeat(5)
    test_x = centres[test_y] + torch.randn(20, 4, generator=g)
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(1, 20)) == {1: 100.0, 20: 100.0}


def test_weighted_vote_by_hand():
    # query [1, 0]; neighbours: one of class 0 at cosine 1, two of class 1 at cosine 0.6
    train_x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [-1.0, 0.0]])
    train_y = torch.tensor([0, 1, 1, 0])
    test_x, test_y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    # T = 0.1: exp(10) = 22026 > 2 * exp(6) = 807: class 0 wins with k = 3
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(3,), temperature=0.1) == {3: 100.0}
    # T = 10: exp(0.1) = 1.105 < 2 * exp(0.06) = 2.12: class 1 wins
    assert knn_accuracy(train_x, train_y, test_x, test_y, ks=(3,), temperature=10.0) == {3: 0.0}


def test_unlabelled_bank_entries_are_ignored_and_k_beyond_the_bank_is_refused():
    train_x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    train_y = torch.tensor([-1, 1, 0])
    acc = knn_accuracy(train_x, train_y, torch.tensor([[1.0, 0.0]]), torch.tensor([1]), ks=(1, 2))
    assert acc == {1: 100.0, 2: 100.0}
    with pytest.raises(ValueError, match="k=200 is not valid for a k-NN bank of 2 labelled images: choose k in 1..2"):
        knn_accuracy(train_x, train_y, torch.tensor([[1.0, 0.0]]), torch.tensor([1]), ks=(1, 200))


def test_chunking_does_not_change_the_answer():
    g = torch.Generator().manual_seed(1)
    tx, ty = torch.randn(200, 8, generator=g), torch.randint(0, 5, (200,), generator=g)
    qx, qy = torch.randn(50, 8, generator=g), torch.randint(0, 5, (50,), generator=g)
    assert knn_accuracy(tx, ty, qx, qy, chunk=7) == knn_accuracy(tx, ty, qx, qy, chunk=1024)


def test_linear_probe_separates_linearly_separable_classes():
    # 5 classes, each a half-space region along its own direction: linearly separable but not by k-NN-friendly
    # blobs (features are scaled very differently per dimension, which the standardisation must undo)
    g = torch.Generator().manual_seed(0)
    n, d, c = 1000, 12, 5
    y = torch.randint(0, c, (n,), generator=g)
    x = torch.randn(n, d, generator=g) * 0.3
    x[torch.arange(n), y] += 3.0
    x = x * torch.logspace(-3, 3, d)  # six decades of scale between dimensions
    result = linear_probe(x[:800], y[:800], x[800:], y[800:], epochs=20)
    assert result.top1 >= 99.0 and result.train_top1 >= 99.0
    assert result.seconds > 0


def test_linear_probe_is_reproducible_and_ignores_unlabelled():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 6, generator=g), torch.randint(0, 3, (300,), generator=g)
    a = linear_probe(x, y, x[:50], y[:50], epochs=3, seed=7)
    b = linear_probe(x, y, x[:50], y[:50], epochs=3, seed=7)
    assert (a.top1, a.train_top1) == (b.top1, b.train_top1)
    y_unl = y.clone()
    y_unl[:100] = -1
    c = linear_probe(x, y_unl, x[:50], y[:50], epochs=3)
    assert 0.0 <= c.top1 <= 100.0


def test_linear_probe_on_random_labels_stays_near_chance():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(2000, 8, generator=g), torch.randint(0, 4, (2000,), generator=g)
    assert linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], epochs=5).top1 < 35.0  # chance: 25 %


def test_extract_outputs_gives_every_level():
    from vicreg.config import ModelConfig
    from vicreg.evaluate import extract_outputs
    from vicreg.models import build_model

    model = build_model(ModelConfig(backbone="small_cnn", head="mlp", head_widths=[8], embedding_dim=3,
                                    expander=[16, 5]), 1, [0.5], [0.25])
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    batches = [(images[:6], torch.arange(6)), (images[6:], torch.arange(6, 10))]
    feats, labels = extract_outputs(model, batches, 8)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {"representation": (10, 512), "embedding": (10, 3),
                                                            "projection": (10, 5)}
    assert labels.tolist() == list(range(10)) and model.training  # the mode is restored
    only, _ = extract_outputs(model, batches, 8, levels=("embedding",))
    assert torch.allclose(only["embedding"], feats["embedding"], atol=1e-6)
    with pytest.raises(ValueError, match="unknown feature level 'logits'"):
        extract_outputs(model, batches, 8, levels=("logits",))


def _ridge_reference(x, y, xt, yt, alphas):
    """ridge_r2 written the slow, obvious way (float64): the strength picked by refitting without each
    training row in turn (a linear solve per row and alpha), then one solve on all rows."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x, xt = (x - mean) / std, (xt - mean) / std
    y_mean = y.mean(0)
    y = y - y_mean

    def fit(a, b, alpha):
        return torch.linalg.solve(a.T @ a + alpha * len(x) * torch.eye(a.shape[1], dtype=a.dtype), a.T @ b)

    def loo(alpha):
        rows = torch.arange(len(x))
        return sum(float(((x[i] @ fit(x[rows != i], y[rows != i], alpha) - y[i]) ** 2).sum()) for i in rows)

    best = min(alphas, key=loo)
    pred = xt @ fit(x, y, best) + y_mean
    return float((1 - ((yt - pred) ** 2).sum(0) / ((yt - yt.mean(0)) ** 2).sum(0)).mean()), best


def test_ridge_r2_decomposes_once_and_equals_refits_without_each_row(monkeypatch):
    from vicreg.evaluate import ridge_r2

    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 2, generator=g, dtype=torch.float64)
    y = x @ w + 0.5 * torch.randn(80, 2, generator=g, dtype=torch.float64)
    alphas = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
    calls = []
    eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda m: calls.append(1) or eigh(m))
    got = ridge_r2(x[:60], y[:60], x[60:], y[60:], alphas)
    assert len(calls) == 1  # one eigendecomposition, whatever the number of alphas
    # float64: the closed-form leave-one-out and 60 x 7 direct refits agree to rounding of 6x6 systems
    expected, best = _ridge_reference(x[:60], y[:60], x[60:], y[60:], alphas)
    assert got == pytest.approx(expected, abs=1e-10)
    assert 0.5 < got < 1.0
    assert best <= 1.0  # a strong signal: a weak ridge
    noise = torch.randn(80, 1, generator=g, dtype=torch.float64)
    assert _ridge_reference(x[:60], noise[:60], x[60:], noise[60:], alphas)[1] >= 10.0  # noise: shrink it all
    assert ridge_r2(x[:60], noise[:60], x[60:], noise[60:]) < 0.1


def test_ridge_r2_with_more_features_than_rows_decomposes_the_rows_and_equals_refits(monkeypatch):
    from vicreg.evaluate import ridge_r2

    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 120, generator=g, dtype=torch.float64)  # 40 training rows, 120 features (raw pixels)
    y = x[:, :3] @ torch.randn(3, 2, generator=g, dtype=torch.float64) + 0.3 * torch.randn(50, 2, generator=g,
                                                                                           dtype=torch.float64)
    alphas = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    sizes = []
    eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda m: sizes.append(tuple(m.shape)) or eigh(m))
    got = ridge_r2(x[:40], y[:40], x[40:], y[40:], alphas)
    assert sizes == [(40, 40)]  # the rows' Gram matrix, not the 120 x 120 one
    # float64, 120 x 120 direct refits against the 40 x 40 spectrum: equal to rounding, far inside 1e-9
    expected, _ = _ridge_reference(x[:40], y[:40], x[40:], y[40:], alphas)
    assert got == pytest.approx(expected, abs=1e-9)
