"""vicreg: a fast, faithful, well-tested toolkit for VICReg self-supervised representation learning."""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

from .loss import (
    LossTerms,
    VICRegLoss,
    covariance_term,
    invariance_term,
    variance_term,
    vicreg_loss,
)

__all__ = [
    "vicreg_loss",
    "VICRegLoss",
    "LossTerms",
    "invariance_term",
    "variance_term",
    "covariance_term",
    "__version__",
]
