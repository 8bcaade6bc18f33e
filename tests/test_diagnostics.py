import math

import pytest
import torch

from vicreg.diagnostics import collapse_diagnostics, effective_rank, per_dim_std, singular_values


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


def test_std_and_fraction_below_target():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4000, 4, generator=g) * torch.tensor([2.0, 0.5, 0.0, 1.5])
    std = per_dim_std(z, eps=1e-4)
    assert std[2].item() == pytest.approx(math.sqrt(1e-4), rel=1e-5)  # the loss's sqrt(var + eps)
    d = collapse_diagnostics(z, target=1.0)
    assert d.dim == 4 and len(d.std) == 4 and len(d.singular_values) == 4
    assert d.frac_below_target == 0.5  # the 0.5 and 0.0 dimensions
    assert collapse_diagnostics(z, target=0.1).frac_below_target == 0.25
    assert d.std == pytest.approx([2.0, 0.5, 0.01, 1.5], rel=0.05)  # in the order of the dimensions


def test_complete_collapse():
    d = collapse_diagnostics(torch.ones(16, 3))
    assert d.effective_rank == 0.0 and d.frac_below_target == 1.0
    assert "0/3" in d.summary() or "0.0/3" in d.summary()


def test_bad_shape_is_one_clear_error():
    with pytest.raises(ValueError, match=r"N >= 2, got shape \(1, 5\)"):
        collapse_diagnostics(torch.zeros(1, 5))
