"""checkpoint.pt: everything a resumed run needs, written atomically and loaded without unpickling code."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..config import Config, config_to_dict
from ..errors import first_line
from .atomic import atomic_save
from .layout import CHECKPOINT


def load_checkpoint(path: Path | str, map_location="cpu", require: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint (a run directory or the file) without unpickling arbitrary objects
    (torch.load(weights_only=True)). Whatever it holds of a vicreg checkpoint's "config" (a mapping), "model"
    (a mapping of names to tensors, all finite), "step" (an integer >= 0), and each key of ``require``, is
    checked: what is wrong is a one-line ValueError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses anything but tensors and plain values
        if "Unsupported global" in str(e):
            raise ValueError(f"refused {path}: it holds objects other than tensors and plain values, which could "
                             f"run code when loaded (torch.load with weights_only=True refused it)") from None
        # not a pickle at all (random bytes, a picture): what the unpickler choked on
        reason = str(e).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0][:120] if str(e) else ""
        raise ValueError(f"{path} is not a readable checkpoint (truncated or not a checkpoint: "
                         f"{reason or 'UnpicklingError'})") from None
    except Exception as e:  # noqa: BLE001 - whatever torch.load raises on a file that is not a checkpoint
        reason = first_line(e, 160, default=type(e).__name__)
        raise ValueError(f"{path} is not a readable checkpoint (truncated or not a checkpoint: {reason})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a vicreg checkpoint (it holds a {type(ckpt).__name__})")
    missing = [key for key in require if key not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a vicreg checkpoint (no {missing[0]!r} in it)")
    problem = _problem(ckpt)
    if problem:
        raise ValueError(f"{path} is not a usable checkpoint: {problem}")
    return ckpt


def _problem(ckpt: dict) -> str | None:
    """What is wrong with the parts of a checkpoint every reader uses, or None."""
    if "config" in ckpt and not isinstance(ckpt["config"], dict):
        return f"its config is a {type(ckpt['config']).__name__}, not a mapping"
    step = ckpt.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step={step!r} is not a number of steps"
    if "model" in ckpt:
        model = ckpt["model"]
        if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
            return "its model is not a mapping of names to tensors"
        bad = first_non_finite(model, "model")
        if bad:
            return f"{bad} (a damaged file: training never saves non-finite weights)"
    return None


def first_non_finite(tree, name: str = "") -> str | None:
    """'<name> has NaN' (or inf) for the first floating-point tensor in a tree of dicts and lists with a
    non-finite value, None when every one is finite."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point() or tree.is_complex():
            finite = torch.isfinite(tree)
            if not bool(finite.all()):
                what = "NaN" if bool(torch.isnan(tree).any()) else "an infinite value"
                return f"{name} has {what}"
        return None
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{name}.{key}" if name else str(key))
        if found:
            return found
    return None


def load_weights(module: torch.nn.Module, state: dict) -> None:
    """``module.load_state_dict(state)`` (strict), refusing what it would convert silently: an integer tensor
    where the module holds floating point, or the other way round (a RuntimeError, as load_state_dict's)."""
    own = module.state_dict()
    for name, value in state.items():
        if (name in own and isinstance(value, torch.Tensor)
                and value.is_floating_point() != own[name].is_floating_point()):
            raise RuntimeError(f"{name} is {value.dtype} where the model holds {own[name].dtype}")
    module.load_state_dict(state)


def rng_state(augment_generator: torch.Generator) -> dict:
    """This process's random states: torch's, the augmentations' generator's and CUDA's."""
    rng = {"torch": torch.get_rng_state(), "augment": augment_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def save_checkpoint(run_dir: Path, cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    step: int, schedule: dict, augment_generator: torch.Generator, knn: dict[int, float],
                    train_seconds: float = 0.0, rank_rngs: list[dict] | None = None,
                    input_size: int | None = None) -> None:
    """Everything a resumed run needs, written atomically to run_dir/checkpoint.pt. ``rank_rngs``: the random
    states of every process of a data-parallel run, in rank order (``rng["ranks"]``; rank 0's are ``rng``)."""
    rng = rank_rngs[0] if rank_rngs else rng_state(augment_generator)
    if rank_rngs and len(rank_rngs) > 1:
        rng = {**rng, "ranks": rank_rngs}
    atomic_save(
        {
            "format": 1,
            "config": config_to_dict(cfg),
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": {**schedule, "step": step},
            "rng": rng,
            "knn": {str(k): v for k, v in knn.items()},
            "train_seconds": train_seconds,
            "input_size": input_size,  # the side of the images the model was fed (vicreg.encoder reads it)
        },
        Path(run_dir) / CHECKPOINT,
    )
