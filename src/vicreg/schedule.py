"""The one learning-rate schedule of the package: linear warm-up, then cosine decay. A pure function of the
step, so a resumed run recomputes it exactly. VICReg pre-training (vicreg.training), the linear probe
(vicreg.evaluate) and the world-model predictor (vicreg.worldmodel.fit) all call it."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float, final_ratio: float = 0.0) -> float:
    """The learning rate of ``step`` (0-based) of ``total_steps``: linear warm-up over ``warmup_steps`` (reaching
    ``peak`` at its last step), then a cosine from ``peak`` to ``peak * final_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    final = peak * final_ratio
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
