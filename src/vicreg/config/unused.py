"""Fields a configuration sets but does not use: said in one line each (``vicreg: note: ...``), not silently
ignored. What validation refuses outright (temporal views of a still-image dataset, frame phases outside
collected episodes) is an error there, not a note here."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .coercion import config_to_dict, shown
from .schema import Config, VideoConfig

VIDEO_KEYS = tuple(f"data.video.{f.name}" for f in dataclasses.fields(VideoConfig))
SPLIT_DATASETS = ("digits", "folder", "episodes")  # the datasets without a test split of their own
SEEDED_SPLITS = ("digits", "folder")  # ... of those, split at random (episodes: the last ones are the test split)


Rule = tuple[tuple[str, ...], Callable[[Config], bool], Callable[[Config], str]]

# (fields, when a config does not use them, why: said after "is not used: ")
RULES: list[Rule] = [
    (("model.embedding_dim", "model.head_widths"), lambda c: c.model.head == "none",
     lambda c: "model.head is 'none'"),
    (("model.dropout",), lambda c: c.model.head != "seed",
     lambda c: f"only the seed head has dropout (model.head is {c.model.head!r})"),
    (VIDEO_KEYS, lambda c: c.data.dataset != "sprites",
     lambda c: f"data.video is for data.dataset 'sprites', not {c.data.dataset!r}"),
    (("data.video.push_p", "data.video.push", "data.video.max_speed"),
     lambda c: c.data.dataset == "sprites" and not c.data.video.controlled,
     lambda c: "data.video.controlled is false (nothing is pushed)"),
    (("data.video.distractor_size",), lambda c: c.data.dataset == "sprites" and c.data.video.distractors == 0,
     lambda c: "data.video.distractors is 0"),
    (("data.frame_skip",), lambda c: c.data.dataset != "episodes",
     lambda c: f"frames are skipped in collected episodes (data.dataset 'episodes'), not in {c.data.dataset!r}"),
    (("data.test_fraction",), lambda c: c.data.dataset not in SPLIT_DATASETS,
     lambda c: f"{c.data.dataset!r} has a test split of its own"),
    (("data.split_seed",), lambda c: c.data.dataset not in SEEDED_SPLITS,
     lambda c: f"{c.data.dataset!r} is not split at random"),
    (("data.decode", "data.skip_bad_images"), lambda c: c.data.dataset != "folder",
     lambda c: f"it is for an image folder (data.dataset 'folder'), not {c.data.dataset!r}"),
    (("data.num_workers",), lambda c: c.data.placement == "device",
     lambda c: "data.placement is 'device' (no loader, no workers)"),
    (("data.max_device_fraction",), lambda c: c.data.placement != "auto",
     lambda c: f"data.placement is {c.data.placement!r}, not 'auto'"),
    (("optim.momentum",), lambda c: c.optim.name == "adamw",
     lambda c: "optim.name is 'adamw' (momentum is for lars and sgd)"),
    (("optim.betas",), lambda c: c.optim.name != "adamw",
     lambda c: f"optim.name is {c.optim.name!r} (betas are for adamw)"),
    (("optim.eta",), lambda c: c.optim.name != "lars",
     lambda c: f"optim.name is {c.optim.name!r} (eta is the trust coefficient of lars)"),
    (("train.compile_mode", "train.compile_scope"), lambda c: c.train.compile is False,
     lambda c: "train.compile is false"),
    (("train.batchnorm",), lambda c: not c.train.stack_views,
     lambda c: "train.stack_views is false (each view has its own forward pass)"),
]


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def unused_fields(cfg: Config, baseline: Config | None = None) -> list[str]:
    """One line per field that ``cfg`` sets but does not use, e.g. ``model.embedding_dim=64 is not used:
    model.head is 'none'``, in the order of RULES. Only fields whose value differs from the dataclass default
    and from ``baseline``'s (the preset's config: what the user did not set is not said) are named."""
    values = _flat(config_to_dict(cfg))
    defaults = _flat(config_to_dict(Config()))
    base = _flat(config_to_dict(baseline)) if baseline is not None else defaults
    notes, said = [], set()
    for keys, unused, why in RULES:
        for key in keys if unused(cfg) else ():
            if key not in said and values[key] != defaults[key] and values[key] != base[key]:
                notes.append(f"{key}={shown(values[key])} is not used: {why(cfg)}")
                said.add(key)
    return notes
