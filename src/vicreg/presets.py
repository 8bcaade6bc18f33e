"""Presets and augmentation recipes: plain data, merged over the dataclass defaults of vicreg.config.

A preset is a partial config (nested dict). ``vicreg train --preset NAME`` starts from it; any field can
still be overridden (``--train.epochs 10``). Nothing here is code: a new preset is a new dict.
"""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# Augmentation recipes: the two views (view_a, view_b) as partial ViewAugment dicts
# --------------------------------------------------------------------------------------------

_PAPER_VIEW = {
    "crop_scale": [0.08, 1.0],
    "crop_ratio": [0.75, 4 / 3],
    "flip_p": 0.5,
    "rotation": 0.0,
    "jitter_p": 0.8,
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.2,
    "hue": 0.1,
    "grayscale_p": 0.2,
    "blur_sigma": [0.1, 2.0],
}


def _both(view: dict) -> dict:
    """A recipe whose two views share one description."""
    return {"view_a": dict(view), "view_b": dict(view)}


RECIPES: dict[str, dict] = {
    # VICReg paper / official code (BYOL's recipe): asymmetric blur and solarisation.
    "paper": {
        "view_a": {**_PAPER_VIEW, "blur_p": 1.0, "solarize_p": 0.0},
        "view_b": {**_PAPER_VIEW, "blur_p": 0.1, "solarize_p": 0.2},
    },
    # Common CIFAR practice (solo-learn): larger minimum crop, no blur on 32x32 images.
    "cifar": {
        "view_a": {**_PAPER_VIEW, "crop_scale": [0.2, 1.0], "blur_p": 0.0, "solarize_p": 0.0},
        "view_b": {**_PAPER_VIEW, "crop_scale": [0.2, 1.0], "blur_p": 0.0, "solarize_p": 0.2},
    },
    # Lighter recipe for 28x28 grey images (Fashion-MNIST, MNIST): no colour, milder crops.
    "grey28": {
        "view_a": {**_PAPER_VIEW, "crop_scale": [0.3, 1.0], "saturation": 0.0, "hue": 0.0,
                   "grayscale_p": 0.0, "blur_p": 0.0, "solarize_p": 0.0},
        "view_b": {**_PAPER_VIEW, "crop_scale": [0.3, 1.0], "saturation": 0.0, "hue": 0.0,
                   "grayscale_p": 0.0, "blur_p": 0.0, "solarize_p": 0.2},
    },
    # Mild recipe for the 8x8 digits: scale 0.5-1 crops, small rotations, brightness/contrast, no flip.
    "digits": _both({**_PAPER_VIEW, "crop_scale": [0.5, 1.0], "flip_p": 0.0, "rotation": 10.0, "saturation": 0.0,
                     "hue": 0.0, "grayscale_p": 0.0, "blur_p": 0.0, "solarize_p": 0.0}),
    # Video frames: brightness and contrast only; no crop, flip or rotation, which would move the objects
    # (a world model needs to know where things are).
    "video": _both({"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "flip_p": 0.0, "rotation": 0.0,
                    "jitter_p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.0, "hue": 0.0,
                    "grayscale_p": 0.0, "blur_p": 0.0, "solarize_p": 0.0}),
    # No augmentation at all (both views identical): a sanity check, not a training recipe.
    "none": _both({"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "flip_p": 0.0, "rotation": 0.0,
                   "jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0, "solarize_p": 0.0}),
}


def _augment(recipe: str) -> dict:
    return {"recipe": recipe, **RECIPES[recipe]}


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

PRESETS: dict[str, dict] = {
    # Offline, CPU friendly: the bundled 8x8 digits, a small CNN, about a minute on 2 cores.
    "demo": {
        "data": {"dataset": "digits", "image_size": 16},
        "augment": _augment("digits"),
        "model": {"backbone": "small_cnn", "head": "none", "expander": [512, 512, 512]},
        "optim": {"name": "adamw", "lr": 4e-3, "lr_scaling": "none", "weight_decay": 1e-4,
                  "warmup_epochs": 5, "final_lr_ratio": 0.01},
        "train": {"epochs": 40, "batch_size": 128, "knn_every": 10, "checkpoint_every": 10},
    },
    # The write-up's model: frozen random VGG16 conv stack, 512-128-32-E head, E-80-80-R expander.
    "seed": {
        "data": {"dataset": "cifar10"},
        "augment": _augment("cifar"),
        "model": {"backbone": "vgg16", "freeze_backbone": True, "head": "seed", "head_widths": [128, 32],
                  "embedding_dim": 50, "dropout": 0.1, "expander": [80, 80, 100]},
        "optim": {"name": "adamw", "lr": 1e-3, "lr_scaling": "none", "weight_decay": 1e-4,
                  "warmup_epochs": 2, "final_lr_ratio": 0.01},
        "train": {"epochs": 50, "batch_size": 256, "knn_every": 5, "checkpoint_every": 10},
    },
    # The JEPA frame encoder: moving digits (vicreg.data.sprites), temporal views 1-2 frames apart, small CNN,
    # a 64-D embedding for the predictor (vicreg train-predictor). A few minutes on 2 CPU cores.
    "sprites": {
        "data": {"dataset": "sprites", "temporal_offset": 2,
                 "video": {"sequences": 1000, "test_sequences": 250, "length": 16, "canvas": 32, "objects": 1,
                           "distractors": 4}},
        "augment": _augment("video"),
        "model": {"backbone": "small_cnn", "head": "mlp", "head_widths": [256], "embedding_dim": 64,
                  "expander": [256, 256, 256]},
        "optim": {"name": "adamw", "lr": 2e-3, "lr_scaling": "none", "weight_decay": 1e-4,
                  "warmup_epochs": 2, "final_lr_ratio": 0.01},
        "train": {"epochs": 30, "batch_size": 128, "knn_every": 10, "checkpoint_every": 10},
    },
    # ResNet-18 with the CIFAR stem, 3 x 2048 expander, LARS with trust coefficient 0.02 (solo-learn's CIFAR
    # recipe; the paper's 0.001 is for ImageNet-sized batches and barely moves a ResNet-18 in a short run,
    # see the recipe search in the README).
    "resnet18-cifar": {
        "data": {"dataset": "cifar10"},
        "augment": _augment("cifar"),
        "model": {"backbone": "resnet18_cifar", "head": "none", "expander": [2048, 2048, 2048]},
        "optim": {"name": "lars", "lr": 0.3, "lr_scaling": "linear", "weight_decay": 1e-4, "eta": 0.02,
                  "warmup_epochs": 10, "final_lr_ratio": 0.001},
        "train": {"epochs": 200, "batch_size": 256, "knn_every": 10, "checkpoint_every": 10},
    },
    # The same on Fashion-MNIST (28x28 grey, one input channel): 30 epochs, about a minute of training on
    # an H100 by default. Recipe from benchmarks/recipe_search.py (README, "Recipe search").
    "resnet18-fashion": {
        "data": {"dataset": "fashion-mnist"},
        "augment": _augment("grey28"),
        "model": {"backbone": "resnet18_cifar", "head": "none", "expander": [2048, 2048, 2048]},
        "optim": {"name": "lars", "lr": 0.3, "lr_scaling": "linear", "weight_decay": 1e-4, "eta": 0.02,
                  "warmup_epochs": 2, "final_lr_ratio": 0.001},
        "train": {"epochs": 30, "batch_size": 512, "knn_every": 5, "checkpoint_every": 10},
    },
    # A Vision Transformer for small images: timm's ViT-Tiny (12 blocks of width 192, 3 heads) on 4x4 patches
    # (28x28 -> 49 tokens and the class token, whose output is the representation), AdamW with linear warm-up and
    # cosine decay and a weight decay of 0.05, as the ViT SSL recipes (DINO, MoCo v3) train them; no batch norm
    # in the backbone (the expander keeps its own). The same images and epochs as resnet18-fashion; the learning
    # rate from benchmarks/recipe_search.py --preset vit-tiny-fashion (docs/results.md).
    "vit-tiny-fashion": {
        "data": {"dataset": "fashion-mnist"},
        "augment": _augment("grey28"),
        "model": {"backbone": "timm:vit_tiny_patch16_224", "backbone_args": {"patch_size": 4}, "head": "none",
                  "expander": [2048, 2048, 2048]},
        "optim": {"name": "adamw", "lr": 5e-4, "lr_scaling": "linear", "weight_decay": 0.05,
                  "warmup_epochs": 2, "final_lr_ratio": 0.01},
        "train": {"epochs": 30, "batch_size": 512, "knn_every": 5, "checkpoint_every": 10},
    },
}

# Longer schedules of a preset: the same recipe with more epochs (data, merged over the base preset).
PRESETS["resnet18-fashion-long"] = {**PRESETS["resnet18-fashion"],
                                    "train": {**PRESETS["resnet18-fashion"]["train"], "epochs": 80}}
# The sprites encoder with a pushed digit: sprite 0 gets a push at half of the steps, recorded as the action,
# so that a predictor learns what a push does and a planner can search over pushes (vicreg plan).
PRESETS["sprites-control"] = {**PRESETS["sprites"],
                              "data": {"dataset": "sprites", "temporal_offset": 2,
                                       "video": {**PRESETS["sprites"]["data"]["video"], "controlled": True,
                                                 "push_p": 0.5}}}
# The frame encoder of an environment's collected episodes (vicreg collect gym_pusht/PushT-v0 --out data/pusht,
# or any folder given as --data.data_dir): Push-T's 96x96 frames at 64x64 (48, 64 and 96 planned alike; 96 costs
# 3 times 64's training), every 5th frame kept (the 5 actions
# between two kept frames are one action of the predictor; 20 steps ahead, skips 2, 4 and 5 planned alike, 10
# worse: docs/results.md) and sequences started at every one of the 5 phases
# (frame_phases: 5 times the clips of the same episodes), temporal views up to 2 kept frames apart, actions
# relative to the pusher, 64 px a unit (planning 25 steps ahead, 2-core CPU: 19 % of 100 tasks, 8 % at 128 px a
# unit; absolute targets: 3.5 % of 200 in the first measurement), the sprites encoder's model and optimiser. An
# epoch is one clip per training sequence: 400 episodes give 300 x 5 clips, 23 steps of 64; 25 epochs, 580 steps.
PRESETS["pusht"] = {**PRESETS["sprites"],
                    "data": {"dataset": "episodes", "data_dir": "data/pusht", "temporal_offset": 2, "frame_skip": 5,
                             "image_size": 64, "frame_phases": True, "relative_actions": True},
                    "train": {"epochs": 25, "batch_size": 64, "knn_every": 0, "checkpoint_every": 5,
                              "diagnostics_every": 5}}
