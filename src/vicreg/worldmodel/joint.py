"""Joint training of the predictor and the encoder (predictor.joint): the prediction error plus the VICReg
variance and covariance terms that keep the encoder from collapsing to something trivially predictable."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from ..config import PredictorConfig
from ..data.video import Sequences
from ..image_ops import resize_images
from ..loaded_run import LoadedRun
from ..schedule import warmup_cosine
from .fit import FitResult, prediction_loss
from .predictor import EmbeddingNorm, build_predictor
from .sequences import actions_of, embed_sequences

__all__ = ["fit_joint"]

Log = Callable[[str], None]


def fit_joint(run: LoadedRun, seq: Sequences, cfg: PredictorConfig, log: Log) -> FitResult:
    """Train the predictor and the encoder together: the prediction error of the next frame's embedding plus
    the VICReg variance and covariance terms on the predicted and the target embeddings (vicreg.worldmodel.
    fit.prediction_loss), which keep the encoder from collapsing to a constant that is trivially predictable.

    A step embeds whole sequences once (about ``batch_size`` windows' worth) and uses every window of
    ``context + 1`` frames in them. The embedding normalisation is fitted once, before training."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    encoder, device, k = run.model, run.device, cfg.context
    n, t = seq.frames.shape[:2]
    if t <= k:
        raise ValueError(f"sequences of {t} frames are too short for predictor.context={k} (need more than {k})")
    norm = EmbeddingNorm.fit(embed_sequences(run, seq))  # fixed: the units the predictor works in
    actions = actions_of(seq, cfg)
    predictor = build_predictor(cfg, norm.dim, 0 if actions is None else actions.shape[-1]).to(device)
    per_step = max(2, min(n, cfg.batch_size // (t - k)))  # sequences per step
    steps_per_epoch = max(1, n // per_step)
    optimizer = torch.optim.AdamW([{"params": predictor.parameters(), "lr": cfg.lr},
                                   {"params": [p for p in encoder.parameters() if p.requires_grad],
                                    "lr": cfg.encoder_lr}], weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, 0, 1.0))
    frames_dev, norm_dev = seq.frames.to(device), norm.to(device)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    bar = tqdm(total=total, desc="joint training", unit="step", disable=None)
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        encoder.train(), predictor.train()
        order = torch.randperm(n, generator=g)
        sums: dict[str, Tensor] = {}
        for i in range(steps_per_epoch):
            idx = order[i * per_step:(i + 1) * per_step]
            x = resize_images(frames_dev[idx.to(device)].flatten(0, 1), run.input_size)  # (S*T, C, H, W)
            with torch.autocast(device.type, dtype=run.amp or torch.float32, enabled=run.amp is not None):
                z = norm_dev.normalize(encoder.embed(x).float().view(len(idx), t, -1))  # (S, T, E)
                windows = z.unfold(1, k + 1, 1).permute(0, 1, 3, 2).flatten(0, 1)  # (S*(T-k), k+1, E)
                a = None
                if actions is not None:
                    a = actions[idx].to(device).unfold(1, k, 1)[:, :t - k].permute(0, 1, 3, 2).flatten(0, 1)
                pred = predictor(windows[:, :k], a)
            terms = prediction_loss(pred.float(), windows[:, k].float(), run.cfg.loss, cfg.vicreg_weight)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            schedule.step()
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + v.detach()
            bar.update(1)
        row = {"epoch": epoch + 1, **{f"train_{key}": float(v) / steps_per_epoch for key, v in sums.items()},
               "seconds": round(time.perf_counter() - t0, 2)}
        history.append(row)
        bar.set_postfix_str(f"prediction {row['train_prediction']:.4f}", refresh=False)
        log(f"epoch {epoch + 1}: "
            + ", ".join(f"{key[6:]} {v:.4f}" for key, v in row.items() if key.startswith("train_")))
    bar.close()
    encoder.eval()
    return FitResult(model=predictor.eval(), norm=norm, history=history, cfg=cfg, dim=norm.dim,
                     action_dim=0 if actions is None else actions.shape[-1])
