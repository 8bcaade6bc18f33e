"""The configuration's schema: one dataclass per section, their defaults and what each field means.

A run's configuration is one :class:`Config` made of sections (``data``, ``augment``, ``model``, ``loss``,
``optim``, ``train``); the world model's commands have their own (:class:`PredictorConfig`, :class:`PlanConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A bad configuration key or value; the message is one line meant for the user."""


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
                      "moving-mnist", "episodes"]


@dataclass
class VideoConfig:
    """Moving-sprite sequences (data.dataset "sprites", see vicreg.data.sprites): sprites bouncing in a square
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
    frame_skip: int = 1  # data.dataset "episodes": keep every k-th frame; the k actions between two kept frames
    #                      become one action (concatenated)
    frame_phases: bool = False  # data.dataset "episodes": the training split also starts sequences 1..frame_skip-1
    #                             frames in (frame_skip times the sequences from the same episodes)
    relative_actions: bool = False  # data.dataset "episodes": actions as the agent's target minus its position
    #                                 (environments whose spec has relative_to: Push-T; vicreg.envs.action_units)
    video: VideoConfig = field(default_factory=VideoConfig)  # data.dataset "sprites"


@dataclass
class ModelConfig:
    """backbone -> (head) -> embedding -> expander -> projection.

    The *embedding* (output of the head; the backbone's output when ``head`` is "none") is the
    representation used for k-NN evaluation and plots. The loss is applied to the *projection*.
    """

    backbone: str = "small_cnn"  # a name in vicreg.backbones.BACKBONES, or timm:NAME (any timm model, e.g.
    #                               timm:vit_tiny_patch16_224; vicreg presets lists both)
    backbone_args: dict[str, Any] = field(default_factory=dict)  # timm backbones: keyword arguments of the model
    #   (e.g. --model.backbone_args.patch_size 4); the channels and, for ViTs, the image size are passed already
    pretrained: bool = False  # timm's or torchvision's weights where the backbone has them (downloads)
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
    """Planning toward a goal frame with the world model (vicreg.worldmodel.plan_command, ``vicreg plan``):
    model-predictive control over the predictor's roll-outs, executed closed loop in the sprite simulator."""

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
    goal_steps: int = 25  # environments (a run on collected episodes): the goal is the state this many environment
    #                       steps after the start in a held-out episode; success thresholds: vicreg.envs.specs
    oracle_samples: int = 32  # environments: the oracle's candidates per task and iteration (each one simulated
    #                           by the environment itself: about 1000 times a predictor roll-out's cost)
    workers: int = 2  # environments: processes that simulate the oracle's candidates
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
