"""What the loop measures at an epoch's end: k-NN accuracy of the embedding and collapse diagnostics.

In a data-parallel job every process extracts its share of the batches and rank 0 measures, so the figures
are those one process would give.
"""

from __future__ import annotations

import torch

from ..data import Batches
from ..diagnostics import brief, collapse_diagnostics
from ..distributed import broadcast_object, gather_rows
from ..evaluate import extract_outputs, knn_accuracy
from ..rundir import MetricsWriter
from .state import Progress, Session

__all__ = ["outputs_on_rank0", "evaluate_knn", "diagnose", "measure"]


def outputs_on_rank0(s: Session, batches: Batches, levels: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    """The model's outputs at ``levels`` and the labels (key "labels") for every image of the unshuffled
    ``batches``, on rank 0; None on the other ranks. In a data-parallel job each process extracts a contiguous
    run of the batches and rank 0 gathers them in rank order: the very batches, in the very order, that one
    process sees, so the figures are one process's."""
    n, (r, w) = len(batches), (s.dist.rank, s.dist.world)
    lo, hi = n * r // w, n * (r + 1) // w
    found: dict[str, torch.Tensor | None] = dict.fromkeys((*levels, "labels"))
    if hi > lo:
        plan = s.step_fn.plan
        outputs, labels = extract_outputs(s.model, batches.epoch(0, lo, hi), s.input_size, plan.amp,
                                          plan.channels_last, levels)
        found = {**outputs, "labels": labels}
    if w > 1:
        found = {key: gather_rows(value) for key, value in found.items()}
    return found if s.dist.main else None  # type: ignore[return-value]


def evaluate_knn(s: Session) -> dict[int, float]:
    """Weighted k-NN top-1 (%) of the embedding: training bank -> test split ({} without labels), the same
    on every process."""
    if not s.labelled:
        return {}
    bank = outputs_on_rank0(s, s.batches.bank, ("embedding",))
    test = outputs_on_rank0(s, s.batches.test, ("embedding",))
    t = s.cfg.train
    acc = {}
    if bank is not None and test is not None:
        acc = knn_accuracy(bank["embedding"], bank["labels"], test["embedding"], test["labels"], ks=t.knn_k,
                           temperature=t.knn_temperature)
    return broadcast_object(acc)


def diagnose(s: Session, p: Progress, metrics: MetricsWriter, epoch_done: int) -> None:
    """Collapse diagnostics of the embedding and the projection of the fixed test sample: diagnostics.jsonl,
    and a few words in ``p.collapse`` (rank 0)."""
    outputs = outputs_on_rank0(s, s.batches.diagnostics, ("embedding", "projection"))
    if outputs is None:
        return
    outputs.pop("labels")
    found = {level: collapse_diagnostics(z, s.cfg.loss.gamma, s.cfg.loss.eps) for level, z in outputs.items()}
    metrics.diagnostics({"step": p.step, "epoch": epoch_done, "target": s.cfg.loss.gamma,
                         **{level: d.to_dict() for level, d in found.items()}})
    p.collapse_final = {level: d.scalars() for level, d in found.items()}
    p.collapse = brief(found["embedding"], found["projection"])


def measure(s: Session, p: Progress, metrics: MetricsWriter, train_seconds: float, epoch_done: int,
            last: bool) -> None:
    """Collapse diagnostics and k-NN evaluation after ``epoch_done`` epochs, as train.* asks (the last epoch
    does both), logged; ``train_seconds`` so far go beside the k-NN figures in knn.csv."""
    t = s.cfg.train
    if last or (t.diagnostics_every and epoch_done % t.diagnostics_every == 0):
        diagnose(s, p, metrics, epoch_done)
    if last or (t.knn_every and epoch_done % t.knn_every == 0):
        p.knn = evaluate_knn(s)
        if p.knn:
            metrics.knn(p.step, epoch_done, train_seconds, p.knn)
        parts = ["k-NN " + ", ".join(f"@{k} {v:.2f}%" for k, v in p.knn.items())] if p.knn else []
        parts += [p.collapse] if p.collapse else []
        s.log(f"epoch {epoch_done}: " + "; ".join(parts))
