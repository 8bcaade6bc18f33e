"""The world model on a run directory: ``train_predictor`` (``vicreg train-predictor``) and
``evaluate_predictor`` (``vicreg eval-predictor``); what they write is listed in :mod:`vicreg.worldmodel`."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from ..config import PredictorConfig, predictor_config, save_yaml
from ..errors import first_line
from ..loaded_run import LoadedRun, load_run
from ..plots.style import save_figure
from ..plots.worldmodel import fig_predicted_frames, fig_probe_table, fig_rollout_errors
from ..rundir import (
    CONFIG,
    EVAL,
    PREDICTOR,
    PREDICTOR_ENCODER,
    PREDICTOR_HISTORY,
    PREDICTOR_WEIGHTS,
    first_non_finite,
    load_checkpoint,
    load_weights,
    write_json,
)
from .fit import FitResult, fit_predictor, load_predictor, save_predictor
from .joint import fit_joint
from .probes import probe_report
from .rollout import rollout, rollout_errors
from .sequences import actions_of, check_video_run, embed_sequences, load_sequences, spread

__all__ = ["train_predictor", "evaluate_predictor", "format_rollout_table", "load_predictor_config",
           "load_run_with_predictor"]

Log = Callable[[str], None]

PROBE_FRAMES = 3200  # training frames embedded by eval-predictor: the probes' training set


def train_predictor(run_dir: Path | str, cfg: PredictorConfig | None = None, device: str = "auto",
                    log: Log = print) -> FitResult:
    """Train the predictor of ``cfg`` on the embeddings of the run's training sequences (the encoder frozen,
    or trained with it when ``cfg.joint``) and save it under run_dir/predictor/."""
    cfg = cfg or PredictorConfig()
    run_dir = Path(run_dir)
    check_video_run(run_dir, cfg)
    run = load_run(run_dir, device, log=lambda _: None)
    out = run_dir / PREDICTOR
    out.mkdir(exist_ok=True)
    save_yaml(cfg, out / CONFIG)
    t0 = time.perf_counter()
    train_seq, test_seq = load_sequences(run.cfg, "train"), load_sequences(run.cfg, "test")
    log(f"sequences: {len(train_seq)} train, {len(test_seq)} test, {train_seq.frames.shape[1]} frames of "
        f"{tuple(train_seq.frames.shape[2:])}{', with actions' if train_seq.actions is not None else ''} "
        f"({time.perf_counter() - t0:.1f} s)")
    if cfg.joint:
        result = fit_joint(run, train_seq, cfg, log)
        torch.save(run.model.state_dict(), out / PREDICTOR_ENCODER)
    else:
        (out / PREDICTOR_ENCODER).unlink(missing_ok=True)  # a joint run's encoder would not match this predictor
        t = time.perf_counter()
        emb_train, emb_test = embed_sequences(run, train_seq), embed_sequences(run, test_seq)
        log(f"embedded {emb_train.shape[0] * emb_train.shape[1] + emb_test.shape[0] * emb_test.shape[1]} frames "
            f"to {emb_train.shape[2]}-D in {time.perf_counter() - t:.1f} s")
        result = fit_predictor(emb_train, cfg, actions=actions_of(train_seq, cfg), val=emb_test,
                               val_actions=actions_of(test_seq, cfg), device=run.device, log=log)
    save_predictor(result, out / PREDICTOR_WEIGHTS)
    _write_history(result.history, out / PREDICTOR_HISTORY)
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


@torch.no_grad()
def nearest_frames(pred: Tensor, bank: Tensor) -> Tensor:
    """Index into ``bank`` (M, E) of the nearest row (Euclidean) to every row of ``pred`` (..., E)."""
    flat = pred.reshape(-1, pred.shape[-1])
    idx = torch.cat([torch.cdist(flat[i:i + 256], bank).argmin(1) for i in range(0, len(flat), 256)])
    return idx.view(pred.shape[:-1])


def load_run_with_predictor(run_dir: Path | str, device: str = "auto",
                            predictor_device: str | None = None) -> tuple[LoadedRun, FitResult]:
    """A run's encoder and the predictor trained on it (run_dir/predictor/), with the encoder that joint training
    left when there is one. The predictor goes to ``predictor_device`` (None: the run's device)."""
    run_dir = Path(run_dir)
    out = run_dir / PREDICTOR
    if not (out / PREDICTOR_WEIGHTS).exists():
        raise FileNotFoundError(f"no predictor in {out}: train one first with vicreg train-predictor {run_dir}")
    run = load_run(run_dir, device, log=lambda _: None)
    fit = load_predictor(out / PREDICTOR_WEIGHTS, predictor_device or run.device)
    if (out / PREDICTOR_ENCODER).exists():  # joint training changed the encoder
        path = out / PREDICTOR_ENCODER
        state = load_checkpoint(path, run.device)  # the encoder's state dict: names to tensors
        bad = first_non_finite(state)
        if bad:
            raise ValueError(f"{path} is not a usable encoder: {bad} (a damaged file: training never saves it)")
        try:
            load_weights(run.model, state)
        except (RuntimeError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path} does not fit the model of {run_dir / CONFIG} ({first_line(e)})") from None
    return run, fit


class _Stages:
    """One log line per finished stage of a long command, with its seconds: the command's progress."""

    def __init__(self, log: Log):
        self.log, self.t = log, time.perf_counter()

    def done(self, what: str) -> None:
        now = time.perf_counter()
        self.log(f"{what} ({now - self.t:.1f} s)")
        self.t = now


def evaluate_predictor(run_dir: Path | str, device: str = "auto", horizons: tuple[int, ...] = (1, 2, 4, 8),
                       figure_sequences: int = 4, probe_frames: int = PROBE_FRAMES, log: Log = print) -> dict:
    """Roll-out errors of the trained predictor and the two baselines, the probes, and the pictures;
    writes run_dir/predictor/eval.json and returns it.

    Every test sequence is embedded; of the training sequences only an evenly spread subset of about
    ``probe_frames`` frames, which trains the probes and is the bank of the picture's nearest frames.
    ``log`` gets one line per finished stage."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    check_video_run(run_dir)
    out = run_dir / PREDICTOR
    stage = _Stages(log)
    run, fit = load_run_with_predictor(run_dir, device, predictor_device="cpu")
    cfg = fit.cfg
    train_all, test_seq = load_sequences(run.cfg, "train"), load_sequences(run.cfg, "test")
    frames = test_seq.frames.shape[1]
    train_seq = train_all.select(spread(len(train_all), probe_frames // frames))
    stage.done(f"loaded the run, its predictor and {len(train_all)} + {len(test_seq)} sequences on {run.device}")
    emb_train, emb_test = embed_sequences(run, train_seq), embed_sequences(run, test_seq)
    stage.done(f"embedded {len(test_seq)} test and {len(train_seq)} training sequences "
               f"({(len(test_seq) + len(train_seq)) * frames} frames)")
    horizons = tuple(h for h in horizons if max(cfg.context, 2) + h <= frames)
    if not horizons:
        raise ValueError(f"sequences of {frames} frames leave no room to roll out after {cfg.context} context frames")
    test_actions = actions_of(test_seq, cfg) if fit.action_dim else None
    errors = rollout_errors(fit.model, fit.norm, emb_test, test_actions, horizons)
    stage.done(f"roll-out errors at horizons {', '.join(map(str, horizons))}")
    probes = probe_report(emb_train, emb_test, train_seq, test_seq)
    stage.done(f"linear probes of {', '.join(probes) or 'nothing (no labels)'}")

    # the picture: real next frames beside the training frames nearest to the predicted embeddings
    h_max, k = max(horizons), cfg.context
    shown = spread(len(test_seq), figure_sequences)
    pred = rollout(fit.model, fit.norm, emb_test[shown], k, h_max,
                   None if test_actions is None else test_actions[shown])
    bank = fit.norm.normalize(emb_train.flatten(0, 1))
    nearest = nearest_frames(fit.norm.normalize(pred), bank)  # (S, H) indices of training frames
    train_frames = train_seq.frames_flat()
    what = f"{cfg.model} predictor, context {k}{', trained jointly with the encoder' if cfg.joint else ''}"
    leaves = test_seq.distractors is not None
    paths = save_figure(fig_predicted_frames(test_seq.frames[shown, :k + h_max], train_frames[nearest], k,
                                             title=f"{run_dir.name}: {what}", distractors=leaves),
                        out / "predictions", formats=("png",))
    paths += save_figure(fig_rollout_errors(errors, title=f"{run_dir.name}: roll-out error on the test sequences\n"
                                                          f"{what}"), out / "rollout_error")
    if probes:
        paths += save_figure(fig_probe_table({run_dir.name: probes}), out / "probes", formats=("png",))
    stage.done("drew the pictures")
    report = {"run_dir": str(run_dir), "predictor": asdict(cfg), "horizons": list(horizons),
              "rollout_mse": {m: {str(h): v for h, v in e.items()} for m, e in errors.items()},
              "probes_r2": probes, "probe_train_sequences": len(train_seq),
              "figures": [str(p) for p in paths], "device": str(run.device),
              "seconds": round(time.perf_counter() - t0, 2)}
    write_json(out / EVAL, report)
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
