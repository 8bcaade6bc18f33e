"""What the embedding keeps of what the frames show: linear-probe R^2 of positions, velocities and the
distractors, from the embedding and from raw pixels."""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.video import Sequences
from ..evaluate import ridge_r2
from .sequences import spread

__all__ = ["probe_report"]


def probe_report(emb_train: Tensor, emb_test: Tensor, train_seq: Sequences, test_seq: Sequences,
                 max_rows: int = 20_000) -> dict[str, dict[str, float]]:
    """Linear-probe R^2 (ridge, test split) of what the frames show, from the embedding and from raw pixels:

    - position: every object's (x, y) at frame t, from frame t;
    - velocity: every object's velocity at frame t, from frames t and t+1 (one frame cannot show motion);
    - distractors: the centroid of the leaves at frame t, from frame t (a good embedding drops them).
    """
    if train_seq.positions is None:
        return {}
    n, t = emb_train.shape[:2]

    def pixels(seq: Sequences) -> Tensor:
        return seq.frames.flatten(2).float().div(255)  # (N, T, C*H*W)

    sources = {"embedding": (emb_train, emb_test), "raw pixels": (pixels(train_seq), pixels(test_seq))}
    targets = {"position": (train_seq.positions.flatten(2), test_seq.positions.flatten(2), False),
               "velocity": (train_seq.velocities[:, :-1].flatten(2), test_seq.velocities[:, :-1].flatten(2), True)}
    if train_seq.distractors is not None:
        targets["distractors"] = (train_seq.distractors.mean(2), test_seq.distractors.mean(2), False)
    report: dict[str, dict[str, float]] = {}
    for name, (y_train, y_test, pairs) in targets.items():
        report[name] = {}
        for source, (x_train, x_test) in sources.items():
            if pairs:  # frames t and t+1 side by side
                x_train = torch.cat([x_train[:, :-1], x_train[:, 1:]], dim=2)
                x_test = torch.cat([x_test[:, :-1], x_test[:, 1:]], dim=2)
            xa, ya = x_train.flatten(0, 1), y_train.flatten(0, 1)
            keep = spread(len(xa), max_rows)
            report[name][source] = ridge_r2(xa[keep], ya[keep], x_test.flatten(0, 1), y_test.flatten(0, 1))
    return report
