"""Training VICReg: ``train(cfg)`` runs one run end to end and writes its run directory.

- loop: the loop a reader holds in mind (train, the epochs, one epoch, an epoch's end, the finish);
- setup: what is built once (run directory, device, data, model, augmentation, the step);
- state: the session, the progress and the result, built with keywords;
- monitor: k-NN and collapse diagnostics at an epoch's end;
- checkpoints: a running job's checkpoints, written and restored;
- control: job control (clock, metering, stop agreement, signals, divergence policy, resume messages).
"""

from .loop import train
from .state import RunResult

__all__ = ["train", "RunResult"]
