"""What the planning baselines share: the world model's predictor architecture and training on other features of
the same sequences (pooled pixels, true poses), trained once and kept in a file of run_dir/plan/ (retrained when
the world model's predictor settings change)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from ..data.video import Sequences
from ..loaded_run import LoadedRun
from .fit import FitResult, fit_predictor, load_predictor, save_predictor
from .sequences import actions_of, load_sequences

__all__ = ["baseline_predictor"]


def baseline_predictor(run: LoadedRun, fit: FitResult, path: Path, features: Callable[[Sequences], Tensor],
                       log: Callable[[str], None] = lambda _: None) -> tuple[FitResult, bool]:
    """(the predictor of ``features`` (N, T, F) of the run's sequences, trained with ``fit.cfg``, whether it was
    trained now); kept in ``path`` and read back from it while its settings are ``fit.cfg``. The file is a
    cache: one that cannot be read (damaged, hand-edited) is said in ``log`` and trained again."""
    if path.exists():
        try:
            cached = load_predictor(path, run.device)
        except (OSError, ValueError) as e:  # ConfigError included
            log(f"{path} cannot be used ({e}): training it again")
        else:
            if cached.cfg == fit.cfg:
                return cached, False
    train, test = load_sequences(run.cfg, "train"), load_sequences(run.cfg, "test")
    result = fit_predictor(features(train), fit.cfg, actions=actions_of(train, fit.cfg), val=features(test),
                           val_actions=actions_of(test, fit.cfg), device=run.device, log=lambda _: None)
    save_predictor(result, path)
    return result, True
