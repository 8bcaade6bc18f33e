import math

import pytest
import torch

from vicreg.diagnostics import brief, collapse_diagnostics, effective_rank, per_dim_std, singular_values


def matrix_with_spectrum(n: int, s: list[float], seed: int = 0) -> torch.Tensor:
    """An (n, len(s)) matrix with zero column means whose singular values are exactly ``s``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, len(s), generator=g, dtype=torch.float64)
    u, _ = torch.linalg.qr(a - a.mean(dim=0))  # orthonormal columns, each orthogonal to the ones vector
    v, _ = torch.linalg.qr(torch.randn(len(s), len(s), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


def test_effective_rank_of_known_spectra():
    # p = (3/4, 1/4): H = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.562335, exp(H) = 1.754765
    assert effective_rank(torch.tensor([3.0, 1.0])) == pytest.approx(1.754765, abs=1e-6)
    assert effective_rank(torch.tensor([5.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_rank(torch.full((7,), 2.0)) == pytest.approx(7.0)
    assert effective_rank(torch.zeros(4)) == 0.0


def test_singular_values_match_svd_and_a_constructed_matrix():
    z = matrix_with_spectrum(40, [4.0, 2.0, 1.0, 0.5]) + 3.0  # a shift: centring must remove it
    s = singular_values(z)
    assert s.tolist() == pytest.approx([4.0, 2.0, 1.0, 0.5], abs=1e-9)
    wide = torch.randn(6, 20, dtype=torch.float64)  # N < D: min(N, D) values
    expected = torch.linalg.svdvals(wide - wide.mean(dim=0))
    assert singular_values(wide).shape == (6,)
    assert torch.allclose(singular_values(wide), expected, atol=1e-7)


def test_points_on_a_line_have_rank_one_and_a_ball_full_rank():
    t = torch.randn(500, 1, dtype=torch.float64)
    line = t @ torch.tensor([[1.0, 2.0, -1.0, 0.5]], dtype=torch.float64)  # dimensional collapse onto a line
    assert collapse_diagnostics(line).effective_rank == pytest.approx(1.0, abs=1e-4)
    ball = matrix_with_spectrum(500, [1.0] * 8)
    assert collapse_diagnostics(ball).effective_rank == pytest.approx(8.0, abs=1e-4)


def test_std_and_per_dimension_std():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4000, 4, generator=g) * torch.tensor([2.0, 0.5, 0.0, 1.5])
    std = per_dim_std(z, eps=1e-4)
    assert std[2].item() == pytest.approx(math.sqrt(1e-4), rel=1e-5)  # the loss's sqrt(var + eps)
    d = collapse_diagnostics(z, target=1.0)
    assert d.dim == 4 and len(d.std) == 4 and len(d.singular_values) == 4
    assert d.std == pytest.approx([2.0, 0.5, 0.01, 1.5], rel=0.05)  # in the order of the dimensions


def test_median_dead_share_and_hinge_by_hand():
    # columns s * (+1, -1, +1, -1): unbiased variance 4/3 s^2 exactly, so std_j = sqrt(4/3 s_j^2 + eps)
    scales = torch.tensor([2.0, 0.5, 0.0, 1.5, 0.03], dtype=torch.float64)
    z = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)[:, None] * scales
    eps = 1e-4
    std = [math.sqrt(4 / 3 * s * s + eps) for s in scales.tolist()]  # 2.3094, 0.5774, 0.01, 1.7321, 0.0361
    d = collapse_diagnostics(z, target=1.0, eps=eps)
    median = sorted(std)[2]  # 0.5774 (five values: the middle one)
    assert d.median_std == pytest.approx(median, abs=1e-6)
    # dead below max(median / 10, 2 sqrt(eps)) = max(0.0577, 0.02) = 0.0577: the 0.0 and 0.03 columns
    assert d.dead_fraction == pytest.approx(2 / 5)
    hinge = sum(max(0.0, 1.0 - v) for v in std) / 5  # (0 + 0.4226 + 0.99 + 0 + 0.9639) / 5
    assert d.mean_hinge == pytest.approx(hinge, abs=1e-6)
    assert collapse_diagnostics(z, target=0.1, eps=eps).mean_hinge == pytest.approx((0.09 + 0.1 - std[4]) / 5, abs=1e-6)


def test_healthy_and_collapsed_are_told_apart():
    g = torch.Generator().manual_seed(0)
    healthy = collapse_diagnostics(0.8 * torch.randn(1000, 32, generator=g))  # just under gamma, as the hinge leaves it
    collapsed = collapse_diagnostics(1e-3 * torch.randn(1000, 32, generator=g))  # every std near sqrt(eps)
    assert healthy.dead_fraction == 0.0 and collapsed.dead_fraction == 1.0
    assert healthy.mean_hinge == pytest.approx(0.2, abs=0.03) and collapsed.mean_hinge > 0.98
    # the effective rank alone cannot tell them apart: noise spreads in every direction
    assert collapsed.effective_rank > 0.9 * 32


def test_complete_collapse():
    d = collapse_diagnostics(torch.ones(16, 3))
    assert d.effective_rank == 0.0 and d.dead_fraction == 1.0 and d.mean_hinge == pytest.approx(0.99)
    assert "rank 0.0/3" in brief(d, d) and "dead 100%" in brief(d, d)


def test_bad_shape_is_one_clear_error():
    with pytest.raises(ValueError, match=r"N >= 2, got shape \(1, 5\)"):
        collapse_diagnostics(torch.zeros(1, 5))
