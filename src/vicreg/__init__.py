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

# The rest of the public API is imported on first use (name -> (module, attribute)), so that `import vicreg`
# stays light and no module of the package imports the package back.
_LAZY = {
    "train": ("vicreg.training", "train"), "RunResult": ("vicreg.training", "RunResult"),
    "build_config": ("vicreg.config", "build_config"), "Config": ("vicreg.config", "Config"),
    "build_model": ("vicreg.models", "build_model"), "VICReg": ("vicreg.models", "VICReg"),
    "load_encoder": ("vicreg.encoder", "load_encoder"), "export_encoder": ("vicreg.encoder", "export_encoder"),
    "Encoder": ("vicreg.encoder", "Encoder"), "Preprocess": ("vicreg.encoder", "Preprocess"),
    "load_run": ("vicreg.loaded_run", "load_run"), "evaluate_run": ("vicreg.loaded_run", "evaluate_run"),
    "load_world_model": ("vicreg.worldmodel.plan_command", "load_world_model"),
    "plan_pushes": ("vicreg.worldmodel.plan_command", "plan_pushes"), "PlanConfig": ("vicreg.config", "PlanConfig"),
}


# Documented names that moved: they still work, with a DeprecationWarning, for one release (0.1.x), then go.
_MOVED = {"fit": "train"}  # vicreg.fit was the trainer's name in 0.1.0's README


def __getattr__(name: str):
    if name in _MOVED:
        import warnings

        warnings.warn(f"vicreg.{name} is now vicreg.{_MOVED[name]}; vicreg.{name} goes in the next release",
                      DeprecationWarning, stacklevel=2)
        name = _MOVED[name]
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'vicreg' has no attribute {name!r}")


__all__ = [
    *_LAZY,
    "vicreg_loss",
    "VICRegLoss",
    "LossTerms",
    "invariance_term",
    "variance_term",
    "covariance_term",
    "__version__",
]
