"""A trained encoder as a plain module, with the preprocessing it expects: back into Python, or out to
safetensors and ONNX.

    encoder, preprocess = load_encoder("runs/demo-...")   # a run, its checkpoint.pt, or an exported folder
    embeddings = encoder(preprocess(images))               # images: PIL images or uint8 (N, C, H, W) -> (N, E)

:class:`Encoder` holds the backbone and the head (the expander is only for training) and normalises its input
itself with the training set's channel mean and std, so :class:`Preprocess` only turns images into floats in
[0, 1] of the right size and channels. :func:`export_encoder` writes ``encoder.safetensors`` (the weights,
loaded without unpickling) and ``encoder.json`` (the architecture and the preprocessing), or ``encoder.onnx``,
checked in onnxruntime against PyTorch on the same input.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from . import __version__
from .backbones import input_size
from .config import ConfigError, ModelConfig, config_from_dict
from .data import image_array, native_size
from .errors import first_line
from .image_ops import resize_images
from .models import build_model
from .rundir import CHECKPOINT, first_non_finite, load_checkpoint, load_weights, read_json, write_json
from .rundir.parse import DAMAGED

__all__ = ["Encoder", "Preprocess", "load_encoder", "export_encoder", "EXPORT_JSON", "EXPORT_WEIGHTS", "EXPORT_ONNX"]

EXPORT_JSON, EXPORT_WEIGHTS, EXPORT_ONNX = "encoder.json", "encoder.safetensors", "encoder.onnx"
EXPORT_FORMAT = 1


class Encoder(nn.Module):
    """float images (N, C, S, S) in [0, 1] -> embeddings (N, E), or representations (N, D) (the backbone's
    output) with ``level="representation"``. Normalises with the training set's per-channel mean and std."""

    def __init__(self, backbone: nn.Module, head: nn.Module, mean: Tensor, std: Tensor, level: str = "embedding"):
        super().__init__()
        if level not in ("embedding", "representation"):
            raise ValueError(f"level={level!r} is not valid: expected 'embedding' or 'representation'")
        self.backbone, self.head, self.level = backbone, head, level
        self.register_buffer("mean", mean.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("std", std.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        r = self.backbone((x - self.mean) / self.std)
        return r if self.level == "representation" else self.head(r)


@dataclass(frozen=True)
class Preprocess:
    """What an :class:`Encoder` expects: ``channels`` (1 grey, 3 RGB) images of ``size`` x ``size``, as float32 in
    [0, 1]. Training saw each image as its dataset stores it (``native`` x ``native``: digits 8, CIFAR 32, an
    image folder data.image_size) and resized to ``size``; so does this. ``mean``/``std`` are what the encoder
    normalises with itself (inside the model: do not normalise again)."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    native: int = 0  # 0: the same as size

    def __call__(self, images) -> Tensor:
        """PIL images (a list, or one), or a uint8 (N, C, H, W) / (C, H, W) tensor -> float (N, C, size, size): the
        centred square of each image at the native size (antialiased), then resized to ``size``, in [0, 1]."""
        native = self.native or self.size
        if isinstance(images, Tensor):
            x = images if images.dim() == 4 else images[None]
            if x.dtype != torch.uint8 or x.shape[1] != self.channels:
                raise ValueError(f"expected uint8 images (N, {self.channels}, H, W), got {x.dtype} {tuple(x.shape)}")
            h, w = x.shape[-2:]
            side = min(h, w)
            x = x[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
            if side != native:  # as the dataset stored it: uint8 at the native size
                x = resize_images(x, native).mul_(255).round_().to(torch.uint8)
        else:
            x = torch.stack([torch.from_numpy(image_array(im, native, self.channels == 1)) for im in _as_list(images)])
        return resize_images(x, self.size)  # as training fed it

    def to_dict(self) -> dict:
        return {**asdict(self), "native": self.native or self.size, "dtype": "float32", "range": [0.0, 1.0],
                "layout": "NCHW", "channel_order": "grey" if self.channels == 1 else "RGB",
                "resize": "centre square; to native x native (antialiased when shrinking), then bilinear to size",
                "normalisation": "inside the model: (x - mean) / std; feed [0, 1] values"}


def _as_list(images) -> list:
    return list(images) if isinstance(images, Sequence) else [images]


def _build(model_cfg: ModelConfig, channels: int, size: int, level: str) -> Encoder:
    """An Encoder of this architecture for ``size`` x ``size`` images, with placeholder weights (no download of
    pretrained ones)."""
    model = build_model(replace(model_cfg, pretrained=False), channels, [0.0] * channels, [1.0] * channels, size)
    return Encoder(model.backbone, model.head, model.mean, model.std, level).eval()


def _from_checkpoint(path: Path, level: str) -> tuple[Encoder, Preprocess, dict]:
    ckpt = load_checkpoint(path, require=("config", "model", "step"))
    try:
        cfg = config_from_dict(ckpt["config"])
    except ConfigError as e:
        raise ConfigError(f"{path}: its config: {e}") from None
    state = ckpt["model"]
    size = ckpt.get("input_size")
    if "mean" not in state or not (size is None or (type(size) is int and size >= 1)):
        raise ValueError(f"{path} is not a vicreg checkpoint (its model has no channel mean, or input_size={size!r} "
                         f"is not a size)")
    channels = int(state["mean"].numel())
    native = native_size(cfg.data)
    size = size or input_size(cfg.model.backbone, native, cfg.data.image_size, log=lambda m: None)
    kept = {k: v for k, v in state.items() if not k.startswith("expander.")}
    try:
        encoder = _build(cfg.model, channels, int(size), level)
        load_weights(encoder, kept)
    except (RuntimeError, ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{path} does not fit the model of its own config ({first_line(e)})") from None
    pre = Preprocess(int(size), channels, tuple(encoder.mean.flatten().tolist()), tuple(encoder.std.flatten().tolist()),
                     native)
    return encoder, pre, {"model": ckpt["config"]["model"], "step": int(ckpt["step"]), "dataset": cfg.data.dataset}


def _export_meta(path: Path, level: str | None) -> tuple[dict, Preprocess, ModelConfig, str]:
    """encoder.json, checked: (its content, the preprocessing, the model's config, the level to load)."""
    meta = read_json(path)
    found = meta.get("format", 0)
    if type(found) is int and found > EXPORT_FORMAT:
        raise ValueError(f"{path} has export format {found}, newer than this vicreg reads")
    try:
        p = meta["preprocess"]
        pre = Preprocess(int(p["size"]), int(p["channels"]), tuple(float(x) for x in p["mean"]),
                         tuple(float(x) for x in p["std"]), int(p.get("native", 0)))
        model_cfg = config_from_dict({"model": meta["model"]}).model
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path} does not describe an exported encoder ({type(e).__name__}: {first_line(e, 120)}): "
                         f"{DAMAGED}") from None
    numbers = (*pre.mean, *pre.std)
    level = level or meta.get("level")
    if (type(found) is not int or found < 1 or pre.size < 1 or pre.channels < 1 or pre.native < 0
            or len(pre.mean) != pre.channels or len(pre.std) != pre.channels
            or not all(math.isfinite(x) for x in numbers) or min(pre.std) <= 0
            or level not in ("embedding", "representation")):
        raise ValueError(f"{path} does not describe an exported encoder (format {found!r}, level {level!r}, "
                         f"preprocessing {pre}): {DAMAGED}")
    return meta, pre, model_cfg, level


def _from_export(folder: Path, level: str | None) -> tuple[Encoder, Preprocess, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta, pre, model_cfg, level = _export_meta(folder / EXPORT_JSON, level)
    path = folder / EXPORT_WEIGHTS
    try:
        weights = load_file(str(path))
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or not one: {first_line(e)})") from None
    bad = first_non_finite(weights)
    if bad:
        raise ValueError(f"{path} is not a usable encoder: {bad} (a damaged file: vicreg export never writes it)")
    try:
        encoder = _build(model_cfg, pre.channels, pre.size, level)
        load_weights(encoder, weights)
    except (RuntimeError, ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{path} does not fit the encoder that {folder / EXPORT_JSON} describes "
                         f"({first_line(e)})") from None
    return encoder, pre, meta


def load_encoder(path: Path | str, device: str | torch.device = "cpu", level: str | None = None
                 ) -> tuple[Encoder, Preprocess]:
    """The trained encoder of a run directory, a checkpoint.pt, or a folder written by ``vicreg export``
    (safetensors: nothing is unpickled), in eval mode on ``device``, and the preprocessing it expects.

    encoder: float (N, C, S, S) in [0, 1] -> (N, E) embeddings (``level="representation"``: the backbone's (N, D);
    default: the embedding, or the level an export was written at).
    preprocess: PIL images or uint8 (N, C, H, W) -> float (N, C, S, S), with S = preprocess.size."""
    path = Path(path)
    if path.is_dir() and (path / EXPORT_JSON).exists():
        encoder, pre, _ = _from_export(path, level)
    elif path.is_dir() or path.suffix == ".pt":
        encoder, pre, _ = _from_checkpoint(path / CHECKPOINT if path.is_dir() else path, level or "embedding")
    else:
        raise FileNotFoundError(f"{path} is neither a run directory, a checkpoint (.pt) nor an exported encoder "
                                f"folder ({EXPORT_JSON})")
    return encoder.to(device).eval(), pre


def export_encoder(run_dir: Path | str, fmt: str = "safetensors", out: Path | str | None = None,
                   level: str = "embedding") -> dict:
    """Write the run's encoder to ``out`` (default RUN_DIR/export): encoder.safetensors and encoder.json always
    (what :func:`load_encoder` reads back, with no unpickling), and encoder.onnx for ``fmt="onnx"``; and check
    them: the safetensors file reloads to equal weights, the ONNX graph runs in onnxruntime within a stated
    tolerance of PyTorch on the same input. Returns what encoder.json says, the checks included."""
    if fmt not in ("safetensors", "onnx"):
        raise ValueError(f"format {fmt!r} is not valid: expected safetensors or onnx")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "export"
    source = run_dir / CHECKPOINT if run_dir.is_dir() else run_dir
    try:
        encoder, pre, about = _from_checkpoint(source, level)
    except KeyError as e:
        raise ValueError(f"{source} is not a vicreg checkpoint (no {e} in it)") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create {out}: {e.strerror or e}") from None
    with torch.no_grad():
        dim = int(encoder(torch.zeros(1, pre.channels, pre.size, pre.size)).shape[1])
    meta = {"format": EXPORT_FORMAT, "vicreg": __version__, "source": str(run_dir), **about, "level": level,
            "preprocess": pre.to_dict(), "input": {"name": "images", "shape": [None, pre.channels, pre.size, pre.size]},
            "output": {"name": _output_name(level), "shape": [None, dim]}}
    try:
        meta["check"] = {"safetensors": _write_safetensors(encoder, out)}  # always: load_encoder reads the folder
        if fmt == "onnx":
            meta["check"]["onnx"] = _write_onnx(encoder, pre, out)
    except ImportError as e:
        raise ValueError(f"vicreg export needs {e.name or 'its extras'}: pip install \"vicreg[export]\"") from None
    except RuntimeError as e:
        raise ValueError(f"export of {source} failed: {first_line(e)}") from None
    write_json(out / EXPORT_JSON, meta)
    return meta


def _output_name(level: str) -> str:
    return "embeddings" if level == "embedding" else "representations"


def _write_safetensors(encoder: Encoder, out: Path) -> dict:
    from safetensors.torch import load_file, save_file

    state = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    save_file(state, str(out / EXPORT_WEIGHTS), metadata={"vicreg": __version__})
    back = load_file(str(out / EXPORT_WEIGHTS))
    equal = set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    if not equal:
        raise RuntimeError(f"{out / EXPORT_WEIGHTS} does not read back to the same weights")
    return {"file": EXPORT_WEIGHTS, "tensors": len(state), "round_trip_equal": equal}


def _write_onnx(encoder: Encoder, pre: Preprocess, out: Path, batch: int = 4) -> dict:
    import numpy as np
    import onnxruntime as ort

    x = torch.rand(batch, pre.channels, pre.size, pre.size, generator=torch.Generator().manual_seed(0))
    path = out / EXPORT_ONNX
    # torch.export-based exporter (onnxscript); the batch size is a dynamic axis
    torch.onnx.export(encoder, (x,), str(path), input_names=["images"], output_names=[_output_name(encoder.level)],
                      dynamo=True,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    with torch.no_grad():
        expected = encoder(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]  # the one output, whatever its name
    diff = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max())
    # float32 through two runtimes whose kernels sum in different orders: a few ulps of the largest value per
    # layer; 1e-4 of the output's scale leaves room for deep backbones and still catches a wrong graph
    tolerance = 1e-4 * max(scale, 1.0)
    if not diff <= tolerance:
        raise RuntimeError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} (tolerance {tolerance:.3g})")
    return {"file": EXPORT_ONNX, "onnxruntime_max_abs_diff": diff, "output_max_abs": scale, "tolerance": tolerance,
            "batch": batch}
