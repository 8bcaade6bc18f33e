"""vicreg: a fast, faithful, well-tested toolkit for VICReg self-supervised representation learning."""

from .loss import (
    LossTerms,
    VICRegLoss,
    covariance_term,
    invariance_term,
    variance_term,
    vicreg_loss,
)

__version__ = "0.1.0"

__all__ = [
    "vicreg_loss",
    "VICRegLoss",
    "LossTerms",
    "invariance_term",
    "variance_term",
    "covariance_term",
    "__version__",
]
