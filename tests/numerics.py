"""How the tests compare two floating-point paths (imported by the test modules; tests/ is on sys.path).

- An *exactness* claim (two formulations compute the same maths) is checked in float64, where both paths
  agree to ~1e-12 relative on any machine whatever the summation order: ``FLOAT64_REL``.
- A float32 or bf16 comparison allows the rounding of that precision: a *relative norm*
  ||a - b|| / ||b|| against ``rel``, derived at each call site from the unit roundoff of the dtype, the
  length of the reductions involved and how much the computation amplifies it (said in a comment there).
  Elementwise tolerances are avoided: a gradient entry near zero has no meaningful relative error, and an
  absolute tolerance tuned to one machine's numbers fails on another whose kernels sum in another order.
- The failure message keeps the numbers: the gap, the tolerance, the largest difference and the scale.
"""

from __future__ import annotations

import torch

FLOAT64_REL = 1e-10  # float64 unit roundoff 1.1e-16; reductions of <= 1e4 terms and BN/whitening amplification
# of <= 1e3 stay below 1e-11: a gap above 1e-10 is a difference in the maths, not rounding.
FLOAT32_EPS = torch.finfo(torch.float32).eps  # 1.19e-7
BFLOAT16_EPS = torch.finfo(torch.bfloat16).eps  # 7.8e-3 (8 bits of mantissa)


def relative_gap(a: torch.Tensor, b: torch.Tensor, floor: float = 0.0) -> float:
    """||a - b|| / max(||b||, floor) in float64 (the plain difference when both are 0)."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    scale = max(b.norm().item(), floor)
    diff = (a - b).norm().item()
    return diff / scale if scale > 0 else diff


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, rel: float, what: str = "", floor: float = 0.0) -> None:
    """Fail unless ||a - b|| <= rel * max(||b||, floor), saying the numbers (gap, tolerance, max |a - b|,
    max |b|). ``floor`` is the scale below which a tensor counts as zero, e.g. a small share of the whole
    gradient's norm: the gradient of a bias that batch norm cancels is exactly 0 in the maths and only
    rounding noise in both paths, whose relative gap means nothing."""
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} != {tuple(b.shape)}"
    gap = relative_gap(a, b, floor)
    if not gap <= rel:
        diff = (a.detach().double() - b.detach().double()).abs().max().item()
        raise AssertionError(f"{what}: relative gap {gap:.3e} > {rel:.1e} (max |a-b| {diff:.3e}, "
                             f"max |b| {b.detach().double().abs().max().item():.3e}, {a.dtype})")
