"""The VICReg loss against values worked out by hand and against its sources' formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from vicreg import VICRegLoss, covariance_term, invariance_term, variance_term, vicreg_loss

EPS = 1e-4


def test_writeup_example_identical_rows_have_high_variance_loss():
    same = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    spread = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # identical rows: var = 0, std = sqrt(1e-4) = 0.01, hinge 1 - 0.01 on each dimension
    assert variance_term(same).item() == pytest.approx(0.99, abs=1e-6)
    # [0,0,0],[1,1,1]: unbiased var 0.5 per dimension, std sqrt(0.5001)
    assert variance_term(spread).item() == pytest.approx(1 - math.sqrt(0.5 + EPS), abs=1e-6)
    assert variance_term(same) > variance_term(spread)
    # covariance: centred rows -/+0.5, C = 0.5 everywhere; 6 off-diagonal entries of 0.25, / D = 3
    assert covariance_term(spread).item() == pytest.approx(0.5, abs=1e-6)
    assert covariance_term(same).item() == pytest.approx(0.0, abs=1e-9)
    # invariance between the two batches: mean of squares of (1,2,3,0,1,2)
    assert invariance_term(same, spread).item() == pytest.approx(19 / 6, abs=1e-6)

    terms = vicreg_loss(same, spread)
    var = 0.99 + 1 - math.sqrt(0.5 + EPS)
    assert terms.invariance.item() == pytest.approx(19 / 6, abs=1e-5)
    assert terms.variance.item() == pytest.approx(var, abs=1e-5)
    assert terms.covariance.item() == pytest.approx(0.5, abs=1e-5)
    assert terms.loss.item() == pytest.approx(25 * 19 / 6 + 25 * var + 0.5, abs=1e-4)

    mean = vicreg_loss(same, spread, variance_reduction="mean")
    assert mean.variance.item() == pytest.approx(var / 2, abs=1e-5)
    assert mean.loss.item() == pytest.approx(25 * 19 / 6 + 25 * var / 2 + 0.5, abs=1e-4)


def test_decorrelated_unit_variance_batch():
    # columns with mean 0 and unbiased variance 1; covariance 0.5 off the diagonal
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    assert variance_term(z).item() == pytest.approx(0.0, abs=1e-9)  # std = sqrt(1.0001) > 1
    assert covariance_term(z).item() == pytest.approx(2 * 0.5**2 / 2, abs=1e-6)
    assert variance_term(z, gamma=2.0).item() == pytest.approx(2 - math.sqrt(1 + EPS), abs=1e-6)


def _official(x, y, sim=25.0, std=25.0, cov=1.0):
    """facebookresearch/vicreg main_vicreg.py, written out: variance terms averaged over the views."""
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    def off(c: torch.Tensor) -> torch.Tensor:
        return c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()

    cov_loss = off(cov_x).pow(2).sum() / d + off(cov_y).pow(2).sum() / d
    return sim * repr_loss + std * std_loss + cov * cov_loss


def _paper(x, y, lam=25.0, mu=25.0, nu=1.0):
    """The paper's equations (and the write-up): s(Z, Z') + v(Z) + v(Z') + c(Z) + c(Z'), loops over entries."""
    n, d = x.shape

    def v(z):
        return sum(max(0.0, 1 - math.sqrt(z[:, j].var().item() + EPS)) for j in range(d)) / d

    def c(z):
        zc = z - z.mean(0)
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    total += ((zc[:, i] * zc[:, j]).sum().item() / (n - 1)) ** 2
        return total / d

    s = ((x - y) ** 2).sum().item() / n / d
    return lam * s + mu * (v(x) + v(y)) + nu * (c(x) + c(y))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_variant_matches_official_code(seed):
    # float64: two formulations of the same maths agree to rounding (~1e-15) on any machine
    g = torch.Generator().manual_seed(seed)
    x, y = (torch.randn(16, 8, generator=g, dtype=torch.float64) * 0.5 for _ in range(2))
    got = vicreg_loss(x, y, variance_reduction="mean").loss
    assert got.item() == pytest.approx(_official(x, y).item(), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_sum_variant_matches_paper_formula(seed):
    g = torch.Generator().manual_seed(seed)
    x, y = (torch.randn(10, 6, generator=g, dtype=torch.float64) * 0.7 for _ in range(2))  # float64, as above
    assert vicreg_loss(x, y).loss.item() == pytest.approx(_paper(x, y), rel=1e-12)
    assert vicreg_loss(x, y, lam=1, mu=1, nu=1).loss.item() == pytest.approx(_paper(x, y, 1, 1, 1), rel=1e-12)


def test_terms_are_unweighted_and_weights_apply():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
    a = vicreg_loss(x, y)
    b = vicreg_loss(x, y, lam=2.0, mu=3.0, nu=4.0)
    torch.testing.assert_close(a.invariance, b.invariance)
    torch.testing.assert_close(b.loss, 2 * b.invariance + 3 * b.variance + 4 * b.covariance)
    module = VICRegLoss(lam=2.0, mu=3.0, nu=4.0)
    torch.testing.assert_close(module(x, y).loss, b.loss)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 4, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    y = (torch.randn(6, 4, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: vicreg_loss(a, b).loss, (x, y))
    assert torch.autograd.gradcheck(lambda a, b: vicreg_loss(a, b, variance_reduction="mean").loss, (x, y))


def test_float32_under_bf16_input():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = vicreg_loss(x.bfloat16(), y.bfloat16())
    assert all(t.dtype == torch.float32 for t in terms)
    ref = vicreg_loss(x.bfloat16().float(), y.bfloat16().float())
    torch.testing.assert_close(terms.loss, ref.loss)


def test_gather_computes_variance_and_covariance_on_the_global_batch():
    # two "processes" each holding half of a batch of 8: with a gather that returns the full batch,
    # variance and covariance equal the single-process values; invariance stays local.
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    full = vicreg_loss(x, y)
    other_halves = iter([x[4:], y[4:]])  # what process 1 would contribute, za's half then zb's

    def gather(z):  # process 0's all-gather: its own half first, then process 1's
        return torch.cat([z, next(other_halves)])

    local = vicreg_loss(x[:4], y[:4], gather=gather)
    torch.testing.assert_close(local.variance, full.variance)
    torch.testing.assert_close(local.covariance, full.covariance)
    torch.testing.assert_close(local.invariance, invariance_term(x[:4], y[:4]))


@pytest.mark.parametrize(
    "za, zb, match",
    [
        (torch.zeros(1, 3), torch.zeros(1, 3), "N >= 2"),
        (torch.zeros(4, 3), torch.zeros(4, 2), "same shape"),
        (torch.zeros(4), torch.zeros(4), r"\(N, D\)"),
        (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), torch.zeros(2, 2), "non-finite"),
        (torch.tensor([[0.0, float("inf")], [1.0, 2.0]]), torch.zeros(2, 2), "non-finite"),
    ],
)
def test_bad_input_errors(za, zb, match):
    with pytest.raises(ValueError, match=match):
        vicreg_loss(za, zb)


def test_bad_variance_reduction():
    with pytest.raises(ValueError, match="variance_reduction='avg'"):
        vicreg_loss(torch.randn(4, 2), torch.randn(4, 2), variance_reduction="avg")
