"""Range checks of typed configs (the types are already right here): each raises :class:`ConfigError` naming the
first bad value and what is allowed."""

from __future__ import annotations

import re
from typing import Any

from ..backbones import backbone_problem, is_timm
from ..presets import RECIPES
from .coercion import shown
from .schema import Config, ConfigError, PlanConfig, PredictorConfig, TrainConfig, ViewAugment

VIDEO = ("sprites", "moving-mnist", "episodes")  # the datasets of sequences (temporal views)


SEED_LIMIT = 2**32 - 1  # numpy's and scikit-learn's seeds (random_state) stop here
MAX_SIDE = 4096  # the largest image side, in pixels (data.image_size, data.video.canvas)
MAX_WORKERS = 256  # the most worker processes (DataLoader, collect, the oracle's simulators; each imports torch)
MAX_LAYERS = 1024  # the deepest predictor (one of 10**12 layers was still being built after two minutes)
NAME_RULE = ("a run name is one folder name: not empty, not '.', not starting with '..', without /, \\ or control "
             "characters, at most 255 bytes")


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={shown(value)} is not valid: {allowed}")


def is_plain_name(name: str) -> bool:
    """A name that is one folder inside its parent: not empty, no separator, not ``.``/``..`` (nor starting with
    ``..``), printable (no NUL, newline or other control character)."""
    return (name not in ("", ".") and not name.startswith("..") and "/" not in name and "\\" not in name
            and name.isprintable() and len(name.encode()) <= 255)


def check_seed(value: int, key: str) -> None:
    check(0 <= value <= SEED_LIMIT, key, value, "a seed must be in [0, 2**32 - 1]")


def check_path(value: str | None, key: str) -> None:
    """A path the OS is given: any text but a NUL byte (which no path can hold)."""
    check(value is None or "\x00" not in value, key, value, "a path cannot hold a NUL byte")


def check_names(cfg: Config) -> None:
    """What the OS and the random generators are given: the preset's name (it starts run directory names), the
    data's path, the data's seeds (train.* is validate_train's)."""
    check(is_plain_name(cfg.preset), "preset", cfg.preset, "a preset's name starts run directory names: it is "
          + NAME_RULE.removeprefix("a run name is "))
    check_path(cfg.data.data_dir, "data.data_dir")
    check_seed(cfg.data.split_seed, "data.split_seed")
    check_seed(cfg.data.video.seed, "data.video.seed")


def check_view(v: ViewAugment, prefix: str) -> None:
    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
        val = getattr(v, name)
        check(0.0 <= val <= 1.0, f"{prefix}.{name}", val, "a probability must be in [0, 1]")
    lo, hi = v.crop_scale
    check(0.0 < lo <= hi <= 1.0, f"{prefix}.crop_scale", list(v.crop_scale), "need 0 < min <= max <= 1")
    lo, hi = v.crop_ratio
    check(0.0 < lo <= hi, f"{prefix}.crop_ratio", list(v.crop_ratio), "need 0 < min <= max")
    lo, hi = v.blur_sigma
    check(0.0 < lo <= hi, f"{prefix}.blur_sigma", list(v.blur_sigma), "need 0 < min <= max")
    check(0.0 <= v.rotation <= 180.0, f"{prefix}.rotation", v.rotation, "degrees must be in [0, 180]")
    for name in ("brightness", "contrast", "saturation"):
        val = getattr(v, name)
        check(0.0 <= val <= 1.0, f"{prefix}.{name}", val, "must be in [0, 1]")
    check(0.0 <= v.hue <= 0.5, f"{prefix}.hue", v.hue, "must be in [0, 0.5]")


DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"  # what train.device and the commands' --device accept


def validate(cfg: Config) -> None:
    """Range checks of a typed Config; raises ConfigError naming the first bad value."""
    check(cfg.augment.recipe in RECIPES or cfg.augment.recipe == "custom", "augment.recipe", cfg.augment.recipe,
          f"expected one of {', '.join(RECIPES)}, or custom")
    check_view(cfg.augment.view_a, "augment.view_a")
    check_view(cfg.augment.view_b, "augment.view_b")

    check_names(cfg)
    d = cfg.data
    check(d.image_size is None or 8 <= d.image_size <= MAX_SIDE, "data.image_size", d.image_size,
          f"must be in [8, {MAX_SIDE}] or null")
    check(d.limit_train is None or d.limit_train >= 2, "data.limit_train", d.limit_train, "must be >= 2 or null")
    check(d.limit_test is None or d.limit_test >= 1, "data.limit_test", d.limit_test, "must be >= 1 or null")
    check(0 <= d.num_workers <= MAX_WORKERS, "data.num_workers", d.num_workers, f"must be in [0, {MAX_WORKERS}]")
    check(0.0 < d.test_fraction < 1.0, "data.test_fraction", d.test_fraction, "must be in (0, 1)")
    check(0.0 < d.max_device_fraction <= 1.0, "data.max_device_fraction", d.max_device_fraction, "must be in (0, 1]")
    check(d.dataset != "folder" or d.data_dir is not None, "data.data_dir", d.data_dir,
          "dataset 'folder' needs --data.data_dir pointing at a folder with one sub-folder per class")

    check(d.temporal_offset >= 0, "data.temporal_offset", d.temporal_offset, "must be >= 0 (0: augmented views)")
    check(d.temporal_offset == 0 or d.dataset in VIDEO, "data.temporal_offset", d.temporal_offset,
          f"temporal views need a video dataset ({', '.join(VIDEO)}), not {d.dataset!r}")
    check(d.dataset != "episodes" or d.data_dir is not None, "data.data_dir", d.data_dir,
          "dataset 'episodes' needs --data.data_dir pointing at a folder made by vicreg collect")
    check(d.frame_skip >= 1, "data.frame_skip", d.frame_skip, "must be >= 1")
    check(not d.frame_phases or d.dataset == "episodes", "data.frame_phases", d.frame_phases,
          f"frame phases are for collected episodes (data.dataset episodes), not {d.dataset!r}")
    check(not d.relative_actions or d.dataset == "episodes", "data.relative_actions", d.relative_actions,
          f"relative actions are for collected episodes (data.dataset episodes), not {d.dataset!r}")
    v = d.video
    check(v.sequences >= 1, "data.video.sequences", v.sequences, "must be >= 1")
    check(v.test_sequences >= 1, "data.video.test_sequences", v.test_sequences, "must be >= 1")
    check(v.length >= 2, "data.video.length", v.length, "must be >= 2 (a next frame is needed)")
    check(d.dataset != "sprites" or d.temporal_offset < v.length, "data.temporal_offset", d.temporal_offset,
          f"must be smaller than data.video.length={v.length}")
    check(v.sprite_size >= 2, "data.video.sprite_size", v.sprite_size, "must be >= 2")
    check(v.sprite_size < v.canvas <= MAX_SIDE, "data.video.canvas", v.canvas,
          f"must be larger than data.video.sprite_size={v.sprite_size} and at most {MAX_SIDE}")
    check(v.objects >= 1, "data.video.objects", v.objects, "must be >= 1")
    check(0.0 <= v.speed[0] <= v.speed[1], "data.video.speed", list(v.speed), "need 0 <= min <= max")
    check(v.distractors >= 0, "data.video.distractors", v.distractors, "must be >= 0")
    check(1 <= v.distractor_size < v.canvas, "data.video.distractor_size", v.distractor_size,
          "must be >= 1 and smaller than the canvas")
    check(0.0 <= v.push_p <= 1.0, "data.video.push_p", v.push_p, "a probability must be in [0, 1]")
    check(v.push >= 0.0, "data.video.push", v.push, "must be >= 0")
    check(v.max_speed > 0.0, "data.video.max_speed", v.max_speed, "must be > 0")

    m = cfg.model
    problem = backbone_problem(m.backbone)
    check(problem is None, "model.backbone", m.backbone, problem or "")
    check(not m.backbone_args or is_timm(m.backbone), "model.backbone_args", m.backbone_args,
          f"only timm backbones (timm:NAME) take arguments, not {m.backbone!r}")
    if m.head != "none":
        check(m.embedding_dim is not None and m.embedding_dim >= 1, "model.embedding_dim", m.embedding_dim,
               f"head {m.head!r} needs a positive embedding_dim")
    check(m.head != "seed" or len(m.head_widths) == 2, "model.head_widths", m.head_widths,
          "the seed head has exactly two hidden widths (write-up: 128,32)")
    check(all(w >= 1 for w in m.head_widths), "model.head_widths", m.head_widths, "widths must be >= 1")
    check(len(m.expander) >= 1 and all(w >= 1 for w in m.expander), "model.expander", m.expander,
          "need at least one width, each >= 1")
    check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")

    lo = cfg.loss
    for name in ("lam", "mu", "nu"):
        check(getattr(lo, name) >= 0.0, f"loss.{name}", getattr(lo, name), "a loss weight must be >= 0")
    check(lo.eps > 0.0, "loss.eps", lo.eps, "must be > 0")
    check(lo.gamma > 0.0, "loss.gamma", lo.gamma, "must be > 0")

    o = cfg.optim
    check(o.lr > 0.0, "optim.lr", o.lr, "must be > 0")
    check(o.weight_decay >= 0.0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    check(0.0 <= o.momentum < 1.0, "optim.momentum", o.momentum, "must be in [0, 1)")
    check(all(0.0 <= b < 1.0 for b in o.betas), "optim.betas", list(o.betas), "each must be in [0, 1)")
    check(o.eta > 0.0, "optim.eta", o.eta, "must be > 0")
    check(o.warmup_epochs >= 0.0, "optim.warmup_epochs", o.warmup_epochs, "must be >= 0")
    check(0.0 <= o.final_lr_ratio <= 1.0, "optim.final_lr_ratio", o.final_lr_ratio, "must be in [0, 1]")

    validate_train(cfg.train)


def validate_train(t: TrainConfig) -> None:
    check(t.name is None or is_plain_name(t.name), "train.name", t.name,
          f"{NAME_RULE} (the run directory is train.out_dir/train.name; null: <preset>-<date>-<time>)")
    check_path(t.out_dir, "train.out_dir")
    check_seed(t.seed, "train.seed")
    check(t.epochs >= 1, "train.epochs", t.epochs, "must be >= 1")
    check(t.batch_size >= 2, "train.batch_size", t.batch_size, "must be >= 2 (the variance needs two samples)")
    check(re.fullmatch(DEVICE_PATTERN, t.device) is not None,
          "train.device", t.device, "expected auto, cpu, cuda, cuda:N (N a GPU index) or mps")
    check(t.knn_every >= 0, "train.knn_every", t.knn_every, "must be >= 0")
    check(len(t.knn_k) >= 1 and all(k >= 1 for k in t.knn_k), "train.knn_k", t.knn_k, "need positive k values")
    check(t.knn_temperature > 0.0, "train.knn_temperature", t.knn_temperature, "must be > 0")
    check(t.checkpoint_every >= 0, "train.checkpoint_every", t.checkpoint_every, "must be >= 0")
    check(t.checkpoint_minutes >= 0, "train.checkpoint_minutes", t.checkpoint_minutes, "must be >= 0 (0: off)")
    check(t.divergence_factor == 0 or t.divergence_factor > 1, "train.divergence_factor", t.divergence_factor,
          "must be > 1, or 0 (off)")
    check(t.log_every >= 1, "train.log_every", t.log_every, "must be >= 1")
    check(t.diagnostics_every >= 0, "train.diagnostics_every", t.diagnostics_every, "must be >= 0")
    check(t.diagnostics_samples >= 2, "train.diagnostics_samples", t.diagnostics_samples,
          "must be >= 2 (a std needs two samples)")


def validate_predictor(cfg: PredictorConfig) -> None:
    """Range checks of a typed PredictorConfig; raises ConfigError naming the first bad value."""
    check_seed(cfg.seed, "predictor.seed")
    check(cfg.context >= 1, "predictor.context", cfg.context, "must be >= 1")
    check(cfg.width >= 1, "predictor.width", cfg.width, "must be >= 1")
    check(1 <= cfg.layers <= MAX_LAYERS, "predictor.layers", cfg.layers, f"must be in [1, {MAX_LAYERS}]")
    check(cfg.heads >= 1 and cfg.width % cfg.heads == 0, "predictor.heads", cfg.heads,
          f"must be >= 1 and divide predictor.width={cfg.width}")
    check(0.0 <= cfg.dropout < 1.0, "predictor.dropout", cfg.dropout, "must be in [0, 1)")
    check(cfg.train_horizon >= 1, "predictor.train_horizon", cfg.train_horizon, "must be >= 1")
    check(cfg.epochs >= 1, "predictor.epochs", cfg.epochs, "must be >= 1")
    check(cfg.batch_size >= 2, "predictor.batch_size", cfg.batch_size, "must be >= 2")
    check(cfg.lr > 0 and cfg.encoder_lr > 0, "predictor.lr", cfg.lr, "learning rates must be > 0")
    check(cfg.weight_decay >= 0, "predictor.weight_decay", cfg.weight_decay, "must be >= 0")
    check(cfg.vicreg_weight >= 0, "predictor.vicreg_weight", cfg.vicreg_weight, "must be >= 0")


def validate_plan(cfg: PlanConfig) -> None:
    """Range checks of a typed PlanConfig; raises ConfigError naming the first bad value."""
    check_seed(cfg.seed, "plan.seed")
    for name in ("horizon", "iterations", "replan_every", "episodes", "steps", "goal_steps", "workers"):
        check(getattr(cfg, name) >= 1, f"plan.{name}", getattr(cfg, name), "must be >= 1")
    check(cfg.workers <= MAX_WORKERS, "plan.workers", cfg.workers, f"must be in [1, {MAX_WORKERS}]")
    check(cfg.samples >= 2, "plan.samples", cfg.samples, "must be >= 2")
    check(cfg.elites >= 2, "plan.elites", cfg.elites, "must be >= 2 (the cross-entropy method refits a spread)")
    check(cfg.elites <= cfg.samples, "plan.elites", cfg.elites, f"must be <= plan.samples={cfg.samples}")
    check(cfg.replan_every <= cfg.horizon, "plan.replan_every", cfg.replan_every,
          f"must be <= plan.horizon={cfg.horizon} (a plan holds horizon pushes)")
    check(cfg.oracle_samples >= 2, "plan.oracle_samples", cfg.oracle_samples, "must be >= 2")
    check(cfg.temperature > 0, "plan.temperature", cfg.temperature, "must be > 0")
    check(cfg.gd_lr > 0, "plan.gd_lr", cfg.gd_lr, "must be > 0")
    check(cfg.gd_starts >= 1, "plan.gd_starts", cfg.gd_starts, "must be >= 1")
    check(cfg.success_distance > 0, "plan.success_distance", cfg.success_distance, "must be > 0 (pixels)")
