"""The JEPA world model on a trained frame encoder: embed the sequences, train the predictor, evaluate it.

    vicreg train --preset sprites                           the frame encoder (VICReg, temporal views)
    vicreg train-predictor runs/<run> [--predictor.model transformer ...]
    vicreg eval-predictor runs/<run>

The encoder run's own config says which sequences it saw (data.dataset sprites or moving-mnist, and
data.video); they are made again here, seeded, with their labels (positions, velocities, pushes, the
distractors' positions). Everything goes to ``runs/<run>/predictor/``:

    config.yaml     the PredictorConfig
    predictor.pt    predictor weights, embedding normalisation, training history (vicreg.predictor)
    encoder.pt      the encoder's weights after joint training (predictor.joint); else the run's checkpoint is used
    history.csv     loss per epoch
    eval.json       roll-out errors per horizon (predictor, next = last, linear extrapolation) and the probes
    rollout_error.png/.svg, predictions.png    the pictures of ``eval-predictor``
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from .augment import resize_images
from .config import Config, PredictorConfig, predictor_config, save_yaml
from .data.video import Sequences, generate_sprites, load_moving_mnist
from .evaluate import extract_outputs, ridge_r2
from .predictor import (
    EmbeddingNorm,
    FitResult,
    build_predictor,
    fit_predictor,
    load_predictor,
    prediction_loss,
    rollout,
    rollout_errors,
    save_predictor,
)
from .runs import LoadedRun, load_run
from .train import load_run_config

__all__ = ["load_sequences", "embed_sequences", "train_predictor", "evaluate_predictor", "format_rollout_table",
           "probe_report", "PREDICTOR_DIR"]

PREDICTOR_DIR = "predictor"
VIDEO_DATASETS = ("sprites", "moving-mnist")
MOVING_MNIST_FRAMES = 20
Log = Callable[[str], None]


def load_sequences(cfg: Config, split: str) -> Sequences:
    """The sequences (with labels where the source has them) of an encoder run's dataset."""
    if cfg.data.dataset == "sprites":
        return generate_sprites(cfg.data.video, split, cfg.data.data_dir)
    if cfg.data.dataset == "moving-mnist":
        return load_moving_mnist(cfg.data.data_dir, cfg.data.download, split)
    raise ValueError(f"the run was trained on data.dataset={cfg.data.dataset!r}, not on video: a world model needs "
                     "a run on sprites or moving-mnist (e.g. vicreg train --preset sprites)")


def _check_video_run(run_dir: Path, cfg: PredictorConfig | None = None) -> Config:
    """The run's config, after checking (before any work) that it is a video run whose sequences are long
    enough for the predictor's context and training horizon."""
    run_cfg = load_run_config(run_dir)
    if run_cfg.data.dataset not in VIDEO_DATASETS:
        load_sequences(run_cfg, "train")  # raises the explanation
    length = run_cfg.data.video.length if run_cfg.data.dataset == "sprites" else MOVING_MNIST_FRAMES
    if cfg is not None and cfg.context + cfg.train_horizon > length:
        raise ValueError(f"predictor.context={cfg.context} plus predictor.train_horizon={cfg.train_horizon} does "
                         f"not fit in the run's sequences of {length} frames (need context + horizon <= {length})")
    return run_cfg


@torch.no_grad()
def embed_sequences(run: LoadedRun, seq: Sequences, batch_size: int = 1024) -> Tensor:
    """Embeddings (N, T, E), float32 on the CPU, of every frame of ``seq`` by the run's frozen encoder."""
    n, t = seq.frames.shape[:2]
    frames = seq.frames_flat()
    chunks = ((frames[i:i + batch_size].to(run.device), torch.zeros(0)) for i in range(0, len(frames), batch_size))
    out, _ = extract_outputs(run.model, chunks, run.input_size, run.amp, run.channels_last, ("embedding",))
    return out["embedding"].cpu().view(n, t, -1)


def _actions(seq: Sequences, cfg: PredictorConfig) -> Tensor | None:
    return seq.actions if (cfg.use_actions and seq.actions is not None) else None


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train_predictor(run_dir: Path | str, cfg: PredictorConfig | None = None, device: str = "auto",
                    log: Log = print) -> FitResult:
    """Train the predictor of ``cfg`` on the embeddings of the run's training sequences (the encoder frozen,
    or trained with it when ``cfg.joint``) and save it under run_dir/predictor/."""
    cfg = cfg or PredictorConfig()
    run_dir = Path(run_dir)
    _check_video_run(run_dir, cfg)
    run = load_run(run_dir, device, log=lambda _: None)
    out = run_dir / PREDICTOR_DIR
    out.mkdir(exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    t0 = time.perf_counter()
    train_seq, test_seq = load_sequences(run.cfg, "train"), load_sequences(run.cfg, "test")
    log(f"sequences: {len(train_seq)} train, {len(test_seq)} test, {train_seq.frames.shape[1]} frames of "
        f"{tuple(train_seq.frames.shape[2:])}{', with actions' if train_seq.actions is not None else ''} "
        f"({time.perf_counter() - t0:.1f} s)")
    if cfg.joint:
        result = _fit_joint(run, train_seq, cfg, log)
        torch.save(run.model.state_dict(), out / "encoder.pt")
    else:
        (out / "encoder.pt").unlink(missing_ok=True)  # a joint run's encoder would not match this predictor
        t = time.perf_counter()
        emb_train, emb_test = embed_sequences(run, train_seq), embed_sequences(run, test_seq)
        log(f"embedded {emb_train.shape[0] * emb_train.shape[1] + emb_test.shape[0] * emb_test.shape[1]} frames "
            f"to {emb_train.shape[2]}-D in {time.perf_counter() - t:.1f} s")
        result = fit_predictor(emb_train, cfg, actions=_actions(train_seq, cfg), val=emb_test,
                               val_actions=_actions(test_seq, cfg), device=run.device, log=log)
    save_predictor(result, out / "predictor.pt")
    _write_history(result.history, out / "history.csv")
    log(f"predictor ({cfg.model}, context {cfg.context}) trained in {time.perf_counter() - t0:.1f} s; "
        f"wrote {out}")
    return result


def _write_history(history: list[dict], path: Path) -> None:
    if not history:
        return
    keys = list(history[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def _fit_joint(run: LoadedRun, seq: Sequences, cfg: PredictorConfig, log: Log) -> FitResult:
    """Train the predictor and the encoder together: the prediction error of the next frame's embedding plus
    the VICReg variance and covariance terms on the predicted and the target embeddings (vicreg.predictor.
    prediction_loss), which keep the encoder from collapsing to a constant that is trivially predictable.

    A step embeds whole sequences once (about ``batch_size`` windows' worth) and uses every window of
    ``context + 1`` frames in them. The embedding normalisation is fitted once, before training."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    encoder, device, k = run.model, run.device, cfg.context
    n, t = seq.frames.shape[:2]
    if t <= k:
        raise ValueError(f"sequences of {t} frames are too short for predictor.context={k} (need more than {k})")
    norm = EmbeddingNorm.fit(embed_sequences(run, seq))  # fixed: the units the predictor works in
    actions = _actions(seq, cfg)
    predictor = build_predictor(cfg, norm.dim, 0 if actions is None else actions.shape[-1]).to(device)
    per_step = max(2, min(n, cfg.batch_size // (t - k)))  # sequences per step
    steps_per_epoch = max(1, n // per_step)
    optimizer = torch.optim.AdamW([{"params": predictor.parameters(), "lr": cfg.lr},
                                   {"params": [p for p in encoder.parameters() if p.requires_grad],
                                    "lr": cfg.encoder_lr}], weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1, s / total))))
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


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _rows(x: Tensor, limit: int) -> Tensor:
    """At most ``limit`` rows of x, evenly spread (the probes' training sets)."""
    if len(x) <= limit:
        return torch.arange(len(x))
    return torch.linspace(0, len(x) - 1, limit).round().long()


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
            keep = _rows(xa, max_rows)
            report[name][source] = ridge_r2(xa[keep], ya[keep], x_test.flatten(0, 1), y_test.flatten(0, 1))
    return report


@torch.no_grad()
def _nearest_frames(pred: Tensor, bank: Tensor) -> Tensor:
    """Index into ``bank`` (M, E) of the nearest row (Euclidean) to every row of ``pred`` (..., E)."""
    flat = pred.reshape(-1, pred.shape[-1])
    idx = torch.cat([torch.cdist(flat[i:i + 256], bank).argmin(1) for i in range(0, len(flat), 256)])
    return idx.view(pred.shape[:-1])


def evaluate_predictor(run_dir: Path | str, device: str = "auto", horizons: tuple[int, ...] = (1, 2, 4, 8),
                       figure_sequences: int = 4, log: Log = print) -> dict:
    """Roll-out errors of the trained predictor and the two baselines, the probes, and the pictures;
    writes run_dir/predictor/eval.json and returns it."""
    from .plots import fig_predicted_frames, fig_rollout_errors, save_figure

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    _check_video_run(run_dir)
    out = run_dir / PREDICTOR_DIR
    if not (out / "predictor.pt").exists():
        raise FileNotFoundError(f"no predictor in {out}: train one first with vicreg train-predictor {run_dir}")
    run = load_run(run_dir, device, log=lambda _: None)
    fit = load_predictor(out / "predictor.pt")
    if (out / "encoder.pt").exists():  # joint training changed the encoder
        run.model.load_state_dict(torch.load(out / "encoder.pt", map_location=run.device, weights_only=True))
    cfg = fit.cfg
    train_seq, test_seq = load_sequences(run.cfg, "train"), load_sequences(run.cfg, "test")
    emb_train, emb_test = embed_sequences(run, train_seq), embed_sequences(run, test_seq)
    frames = test_seq.frames.shape[1]
    horizons = tuple(h for h in horizons if max(cfg.context, 2) + h <= frames)
    if not horizons:
        raise ValueError(f"sequences of {frames} frames leave no room to roll out after {cfg.context} context frames")
    test_actions = _actions(test_seq, cfg) if fit.action_dim else None
    errors = rollout_errors(fit.model, fit.norm, emb_test, test_actions, horizons)
    probes = probe_report(emb_train, emb_test, train_seq, test_seq)

    # the picture: real next frames beside the training frames nearest to the predicted embeddings
    h_max, k = max(horizons), cfg.context
    shown = torch.linspace(0, len(test_seq) - 1, min(figure_sequences, len(test_seq))).round().long()
    pred = rollout(fit.model, fit.norm, emb_test[shown], k, h_max,
                   None if test_actions is None else test_actions[shown])
    bank = fit.norm.normalize(emb_train.flatten(0, 1))
    nearest = _nearest_frames(fit.norm.normalize(pred), bank)  # (S, H) indices of training frames
    train_frames = train_seq.frames_flat()
    what = f"{cfg.model} predictor, context {k}{', trained jointly with the encoder' if cfg.joint else ''}"
    leaves = test_seq.distractors is not None
    paths = save_figure(fig_predicted_frames(test_seq.frames[shown, :k + h_max], train_frames[nearest], k,
                                             title=f"{run_dir.name}: {what}", distractors=leaves),
                        out / "predictions", formats=("png",))
    paths += save_figure(fig_rollout_errors(errors, title=f"{run_dir.name}: roll-out error on the test sequences\n"
                                                          f"{what}"), out / "rollout_error")
    report = {"run_dir": str(run_dir), "predictor": asdict(cfg), "horizons": list(horizons),
              "rollout_mse": {m: {str(h): v for h, v in e.items()} for m, e in errors.items()},
              "probes_r2": probes, "figures": [str(p) for p in paths], "device": str(run.device),
              "seconds": round(time.perf_counter() - t0, 2)}
    with open(out / "eval.json", "w") as f:
        json.dump(report, f, indent=2)
    return report


def format_rollout_table(report: dict) -> str:
    """The roll-out errors (rows: method, columns: horizon) and the probes as plain-text tables."""
    names = {"predictor": "predictor", "last": "next = last", "linear": "linear extrapolation"}
    horizons = report["horizons"]
    lines = ["roll-out MSE of the predicted embedding (standardised units; lower is better)",
             f"{'':<22}" + "".join(f"{'h=' + str(h):>9}" for h in horizons)]
    for method, errs in report["rollout_mse"].items():
        lines.append(f"{names.get(method, method):<22}" + "".join(f"{errs[str(h)]:>9.4f}" for h in horizons))
    if report["probes_r2"]:
        lines += ["", "linear-probe R^2 on the test frames (1 = fully decodable, 0 = not at all)",
                  f"{'':<14}{'embedding':>11}{'raw pixels':>12}"]
        for target, r in report["probes_r2"].items():
            lines.append(f"{target:<14}{r['embedding']:>11.3f}{r['raw pixels']:>12.3f}")
    return "\n".join(lines)


def load_predictor_config(overrides: dict) -> PredictorConfig:
    """PredictorConfig from ``--predictor.key value`` overrides (the prefix is optional)."""
    return predictor_config({k.removeprefix("predictor."): v for k, v in overrides.items()})
