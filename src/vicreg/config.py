"""Typed configuration of a run: dataclasses, validation, YAML in and out, ``--a.b value`` overrides.

A run's configuration is one :class:`Config` made of sections (``data``, ``augment``, ``model``,
``loss``, ``optim``, ``train``). It is built in three layers, each overriding the one before:

1. the dataclass defaults below,
2. a preset (plain data in :mod:`vicreg.presets`),
3. overrides from the command line or a YAML file (``--loss.mu 1``, ``--model.expander 512,512``).

Everything is checked once, at the edge (:func:`build_config`): an unknown key or a bad value raises
:class:`ConfigError` with a one-line message naming the key, the value and what is allowed.
The resolved configuration is saved as ``config.yaml`` beside every run.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import yaml

from .backbones import BACKBONES
from .presets import PRESETS, RECIPES

__all__ = [
    "ConfigError",
    "ViewAugment",
    "VideoConfig",
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "Config",
    "PlanConfig",
    "PredictorConfig",
    "plan_config",
    "predictor_config",
    "build_config",
    "config_from_dict",
    "config_to_dict",
    "parse_overrides",
    "with_overrides",
    "load_yaml",
    "save_yaml",
]


class ConfigError(ValueError):
    """A bad configuration key or value; the message is one line meant for the user."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class ViewAugment:
    """Random augmentation of one view. Every sample of a batch draws its own parameters.

    Applied in this order: random resized crop (with optional flip and rotation, one resampling),
    colour jitter (brightness, contrast, saturation, hue, with probability ``jitter_p``),
    grayscale, Gaussian blur, solarisation.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)  # fraction of the image area kept by the crop
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)  # aspect ratio (w/h) range, log-uniform
    flip_p: float = 0.5  # probability of a horizontal flip
    rotation: float = 0.0  # degrees; angle uniform in [-rotation, rotation]
    jitter_p: float = 0.8  # probability of colour jitter
    brightness: float = 0.4  # factor uniform in [1-b, 1+b]
    contrast: float = 0.4  # factor uniform in [1-c, 1+c]
    saturation: float = 0.2  # factor uniform in [1-s, 1+s] (no-op on grey images)
    hue: float = 0.1  # shift uniform in [-h, h] turns of the colour wheel (no-op on grey images)
    grayscale_p: float = 0.2  # probability of converting to grey (no-op on grey images)
    blur_p: float = 0.0  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # blur std in output pixels, uniform
    solarize_p: float = 0.0  # probability of solarisation (x -> 1 - x where x >= 0.5)


@dataclass
class AugmentConfig:
    """The two views. ``recipe`` names the preset recipe the views came from (see presets.RECIPES);
    setting it on the command line replaces both views with that recipe before other overrides."""

    recipe: str = "paper"
    view_a: ViewAugment = field(default_factory=ViewAugment)
    view_b: ViewAugment = field(default_factory=ViewAugment)


DatasetName = Literal["digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "stl10", "folder", "sprites",
                      "moving-mnist"]


@dataclass
class VideoConfig:
    """Moving-sprite sequences (data.dataset "sprites", see vicreg.data.video): sprites bouncing in a square
    canvas, with their positions, velocities, pushes (actions) and the distractors kept as labels."""

    sprites: Literal["digits", "fashion-mnist"] = "digits"  # where the sprites come from (their class is the label)
    sequences: int = 2000  # training sequences
    test_sequences: int = 500  # test sequences (sprites from the source's test images)
    length: int = 16  # frames per sequence
    canvas: int = 32  # side of the square frame, pixels
    sprite_size: int = 12  # side of a sprite, pixels
    objects: int = 1  # sprites per sequence
    speed: tuple[float, float] = (1.0, 3.0)  # initial speed range, pixels per frame (direction uniform)
    distractors: int = 0  # "leaves": small squares redrawn at random places every frame (carry no information)
    distractor_size: int = 2  # side of a leaf, pixels
    controlled: bool = False  # object 0 gets random pushes; each step records the push as an action
    push_p: float = 0.3  # probability of a push at each step
    push: float = 1.0  # a push adds a velocity change uniform in [-push, push] per axis
    max_speed: float = 4.0  # speed limit of the controlled object, pixels per frame
    seed: int = 0


@dataclass
class DataConfig:
    dataset: DatasetName = "digits"
    data_dir: str | None = None  # existing copy / download target; for "folder" the image root
    download: bool = True  # let torchvision download a dataset that is not found in data_dir
    image_size: int | None = None  # side fed to the model; None: native size (raised to the backbone's minimum)
    placement: Literal["auto", "device", "stream"] = "auto"  # whole dataset on the device, or streamed
    num_workers: int = 4  # DataLoader workers when streaming
    decode: Literal["auto", "workers", "device"] = "auto"  # a streamed image folder: decode in the DataLoader's
    #   workers (PIL), or read the files there and decode each batch on the training device (torchvision's
    #   decode_jpeg, JPEG only); auto: on the device when CUDA is available and every file is a JPEG
    skip_bad_images: bool = False  # an image folder with files that cannot be decoded: train without them (true),
    #   or stop with the list of them (false)
    test_fraction: float = 0.25  # held-out fraction where a dataset has no test split (digits, folder)
    split_seed: int = 0  # seed of that stratified split
    limit_train: int | None = None  # use only the first N training images (quick runs)
    limit_test: int | None = None  # use only the first N test images (quick runs)
    max_device_fraction: float = 0.5  # "auto" keeps data on the device if it fits in this share of its memory
    temporal_offset: int = 0  # video datasets: 0 = two augmentations of one frame; k >= 1 = temporal views,
    #                           the second view is a frame 1..k frames later in the same sequence
    video: VideoConfig = field(default_factory=VideoConfig)  # data.dataset "sprites"


@dataclass
class ModelConfig:
    """backbone -> (head) -> embedding -> expander -> projection.

    The *embedding* (output of the head; the backbone's output when ``head`` is "none") is the
    representation used for k-NN evaluation and plots. The loss is applied to the *projection*.
    """

    backbone: str = "small_cnn"  # a name in vicreg.backbones.BACKBONES
    pretrained: bool = False  # torchvision weights where the backbone has them (downloads)
    freeze_backbone: bool = False
    head: Literal["none", "seed", "mlp"] = "none"  # seed: the write-up's Linear/ReLU/Dropout/BN head
    head_widths: list[int] = field(default_factory=list)  # hidden widths of the head (seed: 128, 32)
    embedding_dim: int | None = None  # E; required when head is not "none"
    dropout: float = 0.1  # dropout of the seed head
    expander: list[int] = field(default_factory=lambda: [2048, 2048, 2048])  # widths, last = R
    channels_last: bool = True  # memory format for conv backbones on GPU


@dataclass
class LossConfig:
    lam: float = 25.0  # lambda: weight of the invariance term
    mu: float = 25.0  # weight of the variance term
    nu: float = 1.0  # weight of the covariance term
    eps: float = 1e-4  # inside sqrt(var + eps)
    gamma: float = 1.0  # std target of the variance hinge
    variance_reduction: Literal["sum", "mean"] = "sum"  # sum (paper) or mean (official code, lightly) of the two views


@dataclass
class OptimConfig:
    name: Literal["lars", "adamw", "sgd"] = "lars"
    lr: float = 0.2  # base learning rate; see lr_scaling
    lr_scaling: Literal["linear", "none"] = "linear"  # linear: lr * batch_size / 256 (the paper's rule)
    weight_decay: float = 1e-6
    momentum: float = 0.9  # LARS and SGD
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    eta: float = 0.001  # LARS trust coefficient
    warmup_epochs: float = 10.0  # linear warm-up from 0
    final_lr_ratio: float = 0.001  # cosine decays to lr * final_lr_ratio


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256  # the global batch (images per step): with N processes, each takes batch_size / N
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on cuda, fp32 on cpu
    stack_views: bool = True  # both views through the model in one call (see vicreg.step); false: one per view
    batchnorm: Literal["per_view", "joint"] = "per_view"  # with stack_views: BN statistics per view (exact) or joint
    sync_batchnorm: bool = True  # several processes (torchrun): batch norm over the global batch, as the paper does
    compile: bool | Literal["auto"] = "auto"  # torch.compile the step (see compile_scope); auto: on CUDA only
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "auto"
    #   auto: reduce-overhead (CUDA graphs) on CUDA, default elsewhere
    compile_scope: Literal["loss", "step"] = "loss"  # loss: forward + loss in one graph (measured on GPUs);
    #   step: forward, loss, backward and the optimiser update in one compiled region (opt-in, see README)
    knn_every: int = 10  # epochs between k-NN evaluations (0: only at the end)
    knn_k: list[int] = field(default_factory=lambda: [20, 200])
    knn_temperature: float = 0.1
    checkpoint_every: int = 10  # epochs between checkpoints (the first and the last epoch always save)
    checkpoint_minutes: float = 5.0  # also a checkpoint (after any step) when this long has passed since the last
    #   one; 0: epochs only
    divergence_factor: float = 5.0  # stop when a step's loss exceeds this times the lowest loss so far (a blow-up,
    #   caught before anything is saved over the last checkpoint); 0: only a non-finite loss stops the run
    diagnostics_every: int = 1  # epochs between collapse diagnostics (0: only at the end)
    diagnostics_samples: int = 2048  # test images (evenly spaced) embedded for the diagnostics
    log_every: int = 10  # steps between flushes of the per-step metrics (no host sync in between)
    out_dir: str = "runs"  # parent directory of run directories
    name: str | None = None  # run directory name; default: <preset>-<timestamp>
    progress: bool = True  # progress bar


@dataclass
class PredictorConfig:
    """The JEPA predictor (vicreg.worldmodel): the embeddings of the last ``context`` frames (and the pushes,
    when the sequences have actions) -> the embedding of the next frame. Saved as predictor/config.yaml."""

    model: Literal["mlp", "transformer"] = "mlp"
    context: int = 4  # frames seen (k)
    width: int = 256  # MLP hidden width / transformer model width
    layers: int = 2  # MLP hidden layers / transformer blocks
    heads: int = 4  # transformer attention heads
    dropout: float = 0.0
    use_actions: bool = True  # feed the recorded pushes when the data has them
    train_horizon: int = 1  # steps of autoregressive roll-out in the training loss (1: teacher forcing)
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3  # AdamW, cosine decay
    weight_decay: float = 1e-4
    joint: bool = False  # also train the encoder, with the VICReg variance and covariance terms on the
    #                      predicted and the target embeddings to keep the target from collapsing
    encoder_lr: float = 1e-4  # joint training: the encoder's learning rate
    vicreg_weight: float = 0.04  # joint training: weight of the VICReg terms (loss.mu, loss.nu inside); 0.04 =
    #                              1/25, the paper's balance of lambda=25 on the prediction term against mu, nu
    seed: int = 0
    device: str = "auto"


@dataclass
class PlanConfig:
    """Planning toward a goal frame with the world model (vicreg.worldmodel.plan, ``vicreg plan``): model-
    predictive control over the predictor's roll-outs, executed closed loop in the sprite simulator."""

    planner: Literal["cem", "mppi", "gd"] = "cem"  # cross-entropy method, MPPI, or gradient descent on actions
    horizon: int = 4  # pushes planned ahead (steps of the predictor's roll-out)
    samples: int = 100  # cem/mppi: candidate push sequences per episode and iteration
    iterations: int = 4  # cem/mppi: refits of the sampling distribution; gd: iterations x 5 gradient steps
    elites: int = 10  # cem: the best samples the distribution is refitted to
    temperature: float = 0.05  # mppi: softmax temperature on the costs, as a fraction of their spread
    gd_lr: float = 0.2  # gd: Adam's learning rate on the pushes
    gd_starts: int = 16  # gd: push sequences descended in parallel per episode (the cheapest is kept)
    replan_every: int = 1  # simulator steps between plans (closed loop: each plan starts from real frames)
    episodes: int = 200  # the fixed, seeded set of start states and goals
    steps: int = 20  # pushes per episode
    success_distance: float = 3.0  # pixels between the sprite's final position and its position in the goal frame
    seed: int = 0  # episodes, leaves and the planners' sampling
    device: str = "auto"


@dataclass
class Config:
    preset: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------------------------
# dict <-> dataclass, with type checks
# --------------------------------------------------------------------------------------------


def config_to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict of YAML-friendly values (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    return obj


def _plural(described: str) -> str:
    """ "an integer" -> "integers", "a number" -> "numbers" (the other descriptions as they are)."""
    for article in ("an ", "a "):
        if described.startswith(article):
            return described[len(article):] + "s"
    return described


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a comma-separated list of {_plural(_describe(args[0]))}"
    if origin is tuple:
        return f"{len(args)} comma-separated {_plural(_describe(args[0]))}"
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint``; convert where it is lossless; else ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def bad() -> ConfigError:
        return ConfigError(f"{key}={value!r} is not valid: expected {_describe(hint)}")

    if origin is Literal:
        if value in args:
            return value
        raise bad()
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise bad()
    if origin in (list, tuple):
        if isinstance(value, str):  # "64,64" or "[64, 64]"
            text = value.strip().removeprefix("[").removesuffix("]") if value.strip().startswith("[") else value
            try:
                value = [yaml.safe_load(v) for v in text.split(",")] if text.strip() else []
            except yaml.YAMLError:
                raise bad() from None
        elif not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple:
            if len(value) != len(args):
                raise bad()
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        return [_coerce(v, args[0], key) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if hint in (int, float) and isinstance(value, str):
        try:
            value = float(value) if hint is float else int(value)
        except ValueError:
            raise bad() from None
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise bad()


def _from_dict(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(
                f"unknown config key '{path}' (known keys{' in ' + prefix[:-1] if prefix else ''}: {', '.join(names)})"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value, path + ".")
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    """Build and validate a Config from a (possibly partial) nested dict."""
    cfg = _from_dict(Config, data, "")
    validate(cfg)
    return cfg


def predictor_config(data: dict | None = None) -> PredictorConfig:
    """Build and validate a PredictorConfig from a (possibly partial) dict (e.g. dotted CLI overrides
    without their ``predictor.`` prefix, or a saved predictor/config.yaml)."""
    cfg = _from_dict(PredictorConfig, dict(data or {}), "predictor.")
    _check(cfg.context >= 1, "predictor.context", cfg.context, "must be >= 1")
    _check(cfg.width >= 1, "predictor.width", cfg.width, "must be >= 1")
    _check(cfg.layers >= 1, "predictor.layers", cfg.layers, "must be >= 1")
    _check(cfg.heads >= 1 and cfg.width % cfg.heads == 0, "predictor.heads", cfg.heads,
           f"must be >= 1 and divide predictor.width={cfg.width}")
    _check(0.0 <= cfg.dropout < 1.0, "predictor.dropout", cfg.dropout, "must be in [0, 1)")
    _check(cfg.train_horizon >= 1, "predictor.train_horizon", cfg.train_horizon, "must be >= 1")
    _check(cfg.epochs >= 1, "predictor.epochs", cfg.epochs, "must be >= 1")
    _check(cfg.batch_size >= 2, "predictor.batch_size", cfg.batch_size, "must be >= 2")
    _check(cfg.lr > 0 and cfg.encoder_lr > 0, "predictor.lr", cfg.lr, "learning rates must be > 0")
    _check(cfg.weight_decay >= 0, "predictor.weight_decay", cfg.weight_decay, "must be >= 0")
    _check(cfg.vicreg_weight >= 0, "predictor.vicreg_weight", cfg.vicreg_weight, "must be >= 0")
    return cfg


def plan_config(data: dict | None = None) -> PlanConfig:
    """Build and validate a PlanConfig from a (possibly partial) dict (``--plan.key value`` overrides without
    their prefix)."""
    cfg = _from_dict(PlanConfig, dict(data or {}), "plan.")
    for name in ("horizon", "iterations", "replan_every", "episodes", "steps"):
        _check(getattr(cfg, name) >= 1, f"plan.{name}", getattr(cfg, name), "must be >= 1")
    _check(cfg.samples >= 2, "plan.samples", cfg.samples, "must be >= 2")
    _check(cfg.elites >= 2, "plan.elites", cfg.elites, "must be >= 2 (the cross-entropy method refits a spread)")
    _check(cfg.elites <= cfg.samples, "plan.elites", cfg.elites, f"must be <= plan.samples={cfg.samples}")
    _check(cfg.replan_every <= cfg.horizon, "plan.replan_every", cfg.replan_every,
           f"must be <= plan.horizon={cfg.horizon} (a plan holds horizon pushes)")
    _check(cfg.temperature > 0, "plan.temperature", cfg.temperature, "must be > 0")
    _check(cfg.gd_lr > 0, "plan.gd_lr", cfg.gd_lr, "must be > 0")
    _check(cfg.gd_starts >= 1, "plan.gd_starts", cfg.gd_starts, "must be >= 1")
    _check(cfg.success_distance > 0, "plan.success_distance", cfg.success_distance, "must be > 0 (pixels)")
    return cfg


def _merge(base: dict, update: dict, path: str = "") -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(out.get(k), dict) and not isinstance(v, dict):  # a section given a value: never dropped
            raise ConfigError(f"{path}{k}={v!r} is not valid: {path}{k} is a section, expected a mapping of its "
                              f"keys ({', '.join(out[k])})")
        out[k] = _merge(out[k], v, f"{path}{k}.") if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["--loss.mu", "1", "--model.expander=512,512"]`` -> ``{"loss.mu": 1, "model.expander": "512,512"}``.

    Values are read as YAML scalars (``1`` -> int, ``true`` -> bool, ``null`` -> None); a bare flag
    ``--train.compile`` means true.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}: config overrides look like --section.key value")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:
            raw = "true"
            i += 1
        key = key.replace("-", "_")
        try:
            value = yaml.safe_load(raw) if "," not in raw else raw
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def build_config(preset: str | None = None, overrides: dict[str, Any] | None = None,
                 base: dict | None = None) -> Config:
    """Defaults <- preset <- base (e.g. a YAML file) <- dotted overrides; validated."""
    tree = config_to_dict(Config())
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (known presets: {', '.join(PRESETS)})")
        tree = _merge(tree, PRESETS[preset])
        tree["preset"] = preset
    if base:
        tree = _merge(tree, base)
    overrides = dict(overrides or {})
    recipe = overrides.pop("augment.recipe", None)
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"augment.recipe={recipe!r} is not valid: expected one of {', '.join(RECIPES)}")
        tree["augment"] = _merge(tree["augment"], {"recipe": recipe, **RECIPES[recipe]})
    for key, value in overrides.items():
        _set_path(tree, key, value)
    return config_from_dict(tree)


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted overrides applied, validated."""
    tree = config_to_dict(cfg)
    for key, value in overrides.items():
        _set_path(tree, key, value)
    return config_from_dict(tree)


# --------------------------------------------------------------------------------------------
# Range checks (types are already right here)
# --------------------------------------------------------------------------------------------


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid: {allowed}")


def _check_view(v: ViewAugment, prefix: str) -> None:
    for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
        val = getattr(v, name)
        _check(0.0 <= val <= 1.0, f"{prefix}.{name}", val, "a probability must be in [0, 1]")
    lo, hi = v.crop_scale
    _check(0.0 < lo <= hi <= 1.0, f"{prefix}.crop_scale", list(v.crop_scale), "need 0 < min <= max <= 1")
    lo, hi = v.crop_ratio
    _check(0.0 < lo <= hi, f"{prefix}.crop_ratio", list(v.crop_ratio), "need 0 < min <= max")
    lo, hi = v.blur_sigma
    _check(0.0 < lo <= hi, f"{prefix}.blur_sigma", list(v.blur_sigma), "need 0 < min <= max")
    _check(0.0 <= v.rotation <= 180.0, f"{prefix}.rotation", v.rotation, "degrees must be in [0, 180]")
    for name in ("brightness", "contrast", "saturation"):
        val = getattr(v, name)
        _check(0.0 <= val <= 1.0, f"{prefix}.{name}", val, "must be in [0, 1]")
    _check(0.0 <= v.hue <= 0.5, f"{prefix}.hue", v.hue, "must be in [0, 0.5]")


DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"  # what train.device and the commands' --device accept


def validate(cfg: Config) -> None:
    """Range checks of a typed Config; raises ConfigError naming the first bad value."""
    _check(cfg.augment.recipe in RECIPES or cfg.augment.recipe == "custom", "augment.recipe", cfg.augment.recipe,
           f"expected one of {', '.join(RECIPES)}, or custom")
    _check_view(cfg.augment.view_a, "augment.view_a")
    _check_view(cfg.augment.view_b, "augment.view_b")

    d = cfg.data
    _check(d.image_size is None or d.image_size >= 8, "data.image_size", d.image_size, "must be >= 8 or null")
    _check(d.limit_train is None or d.limit_train >= 2, "data.limit_train", d.limit_train, "must be >= 2 or null")
    _check(d.limit_test is None or d.limit_test >= 1, "data.limit_test", d.limit_test, "must be >= 1 or null")
    _check(d.num_workers >= 0, "data.num_workers", d.num_workers, "must be >= 0")
    _check(0.0 < d.test_fraction < 1.0, "data.test_fraction", d.test_fraction, "must be in (0, 1)")
    _check(0.0 < d.max_device_fraction <= 1.0, "data.max_device_fraction", d.max_device_fraction, "must be in (0, 1]")
    _check(d.dataset != "folder" or d.data_dir is not None, "data.data_dir", d.data_dir,
           "dataset 'folder' needs --data.data_dir pointing at a folder with one sub-folder per class")

    _check(d.temporal_offset >= 0, "data.temporal_offset", d.temporal_offset, "must be >= 0 (0: augmented views)")
    _check(d.temporal_offset == 0 or d.dataset in ("sprites", "moving-mnist"), "data.temporal_offset",
           d.temporal_offset, f"temporal views need a video dataset (sprites, moving-mnist), not {d.dataset!r}")
    v = d.video
    _check(v.sequences >= 1, "data.video.sequences", v.sequences, "must be >= 1")
    _check(v.test_sequences >= 1, "data.video.test_sequences", v.test_sequences, "must be >= 1")
    _check(v.length >= 2, "data.video.length", v.length, "must be >= 2 (a next frame is needed)")
    _check(d.temporal_offset < v.length, "data.temporal_offset", d.temporal_offset,
           f"must be smaller than data.video.length={v.length}")
    _check(v.sprite_size >= 2, "data.video.sprite_size", v.sprite_size, "must be >= 2")
    _check(v.canvas > v.sprite_size, "data.video.canvas", v.canvas,
           f"must be larger than data.video.sprite_size={v.sprite_size}")
    _check(v.objects >= 1, "data.video.objects", v.objects, "must be >= 1")
    _check(0.0 <= v.speed[0] <= v.speed[1], "data.video.speed", list(v.speed), "need 0 <= min <= max")
    _check(v.distractors >= 0, "data.video.distractors", v.distractors, "must be >= 0")
    _check(1 <= v.distractor_size < v.canvas, "data.video.distractor_size", v.distractor_size,
           "must be >= 1 and smaller than the canvas")
    _check(0.0 <= v.push_p <= 1.0, "data.video.push_p", v.push_p, "a probability must be in [0, 1]")
    _check(v.push >= 0.0, "data.video.push", v.push, "must be >= 0")
    _check(v.max_speed > 0.0, "data.video.max_speed", v.max_speed, "must be > 0")

    m = cfg.model
    _check(m.backbone in BACKBONES, "model.backbone", m.backbone, f"expected one of {', '.join(sorted(BACKBONES))}")
    if m.head != "none":
        _check(m.embedding_dim is not None and m.embedding_dim >= 1, "model.embedding_dim", m.embedding_dim,
               f"head {m.head!r} needs a positive embedding_dim")
    _check(m.head != "seed" or len(m.head_widths) == 2, "model.head_widths", m.head_widths,
           "the seed head has exactly two hidden widths (write-up: 128,32)")
    _check(all(w >= 1 for w in m.head_widths), "model.head_widths", m.head_widths, "widths must be >= 1")
    _check(len(m.expander) >= 1 and all(w >= 1 for w in m.expander), "model.expander", m.expander,
           "need at least one width, each >= 1")
    _check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")

    lo = cfg.loss
    for name in ("lam", "mu", "nu"):
        _check(getattr(lo, name) >= 0.0, f"loss.{name}", getattr(lo, name), "a loss weight must be >= 0")
    _check(lo.eps > 0.0, "loss.eps", lo.eps, "must be > 0")
    _check(lo.gamma > 0.0, "loss.gamma", lo.gamma, "must be > 0")

    o = cfg.optim
    _check(o.lr > 0.0, "optim.lr", o.lr, "must be > 0")
    _check(o.weight_decay >= 0.0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    _check(0.0 <= o.momentum < 1.0, "optim.momentum", o.momentum, "must be in [0, 1)")
    _check(all(0.0 <= b < 1.0 for b in o.betas), "optim.betas", list(o.betas), "each must be in [0, 1)")
    _check(o.eta > 0.0, "optim.eta", o.eta, "must be > 0")
    _check(o.warmup_epochs >= 0.0, "optim.warmup_epochs", o.warmup_epochs, "must be >= 0")
    _check(0.0 <= o.final_lr_ratio <= 1.0, "optim.final_lr_ratio", o.final_lr_ratio, "must be in [0, 1]")

    _validate_train(cfg.train)


def _validate_train(t: TrainConfig) -> None:
    _check(t.epochs >= 1, "train.epochs", t.epochs, "must be >= 1")
    _check(t.batch_size >= 2, "train.batch_size", t.batch_size, "must be >= 2 (the variance needs two samples)")
    _check(re.fullmatch(DEVICE_PATTERN, t.device) is not None,
           "train.device", t.device, "expected auto, cpu, cuda, cuda:N (N a GPU index) or mps")
    _check(t.knn_every >= 0, "train.knn_every", t.knn_every, "must be >= 0")
    _check(len(t.knn_k) >= 1 and all(k >= 1 for k in t.knn_k), "train.knn_k", t.knn_k, "need positive k values")
    _check(t.knn_temperature > 0.0, "train.knn_temperature", t.knn_temperature, "must be > 0")
    _check(t.checkpoint_every >= 0, "train.checkpoint_every", t.checkpoint_every, "must be >= 0")
    _check(t.checkpoint_minutes >= 0, "train.checkpoint_minutes", t.checkpoint_minutes, "must be >= 0 (0: off)")
    _check(t.divergence_factor == 0 or t.divergence_factor > 1, "train.divergence_factor", t.divergence_factor,
           "must be > 1, or 0 (off)")
    _check(t.log_every >= 1, "train.log_every", t.log_every, "must be >= 1")
    _check(t.diagnostics_every >= 0, "train.diagnostics_every", t.diagnostics_every, "must be >= 0")
    _check(t.diagnostics_samples >= 2, "train.diagnostics_samples", t.diagnostics_samples,
           "must be >= 2 (a std needs two samples)")


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------


def save_yaml(cfg: Config, path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)


def load_yaml(path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping of config sections")
    return data
