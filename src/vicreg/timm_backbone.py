"""Any timm model as a backbone: ``model.backbone timm:NAME`` (e.g. ``timm:vit_tiny_patch16_224``, ``timm:resnet18``).

timm builds the model without its classifier (``num_classes=0``: the pooled features), with the dataset's number of
channels (``in_chans``) and, for models that take one (Vision Transformers and the like), the image size the run
feeds (``img_size``); ``model.backbone_args`` are passed on as further keyword arguments (``patch_size: 4`` for a ViT
on 28x28 images). One image is pushed through the new model to read its output width and to say in one line when
the model cannot take images this small. timm is imported only here, and only for ``timm:`` backbones.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import first_line

__all__ = ["TIMM_PREFIX", "is_timm", "timm_name", "check_timm_name", "build_timm", "weights_cache"]

TIMM_PREFIX = "timm:"


def is_timm(backbone: str) -> bool:
    return backbone.startswith(TIMM_PREFIX)


def timm_name(backbone: str) -> str:
    """``"timm:vit_tiny_patch16_224"`` -> ``"vit_tiny_patch16_224"``."""
    return backbone[len(TIMM_PREFIX):]


def _import_timm():
    try:
        import timm
    except ImportError:
        raise ValueError("timm backbones need timm: pip install timm (or pip install \"vicreg[timm]\")") from None
    return timm


def check_timm_name(backbone: str) -> str | None:
    """None when timm knows the model of ``backbone`` (a pretrained tag such as ``resnet18.a1_in1k`` included),
    else what is wrong, in words."""
    name = timm_name(backbone)
    if not name:
        return "expected timm:NAME with NAME a timm model (python -c \"import timm; print(timm.list_models())\")"
    try:
        timm = _import_timm()
    except ValueError as e:
        return str(e)
    if timm.is_model(name):
        return None
    near = timm.list_models(f"*{name.split('.')[0][:12]}*")[:5]
    hint = f" (similar: {', '.join(near)})" if near else ""
    return f"timm has no model {name!r}{hint}; timm.list_models() lists them"


def weights_cache(name: str) -> str:
    """Where timm looks for ``name``'s pretrained weights: the Hugging Face cache, or torch.hub's for a URL."""
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(name)
    if pretrained is not None and pretrained.hf_hub_id:
        from huggingface_hub import constants

        return f"{constants.HF_HUB_CACHE} (the Hugging Face cache; HF_HOME moves it)"
    return f"{torch.hub.get_dir()}/checkpoints"


def _create(timm, name: str, in_channels: int, pretrained: bool, image_size: int | None, args: dict) -> nn.Module:
    kwargs = {"num_classes": 0, "in_chans": in_channels, **args}
    if image_size is not None and "img_size" not in args:
        try:  # Vision Transformers and the like fix their image size (position embeddings) at construction
            return timm.create_model(name, pretrained=pretrained, img_size=image_size, **kwargs)
        except TypeError as e:
            if "img_size" not in str(e):
                raise
    return timm.create_model(name, pretrained=pretrained, **kwargs)  # convolutional models take any size


def build_timm(backbone: str, in_channels: int, pretrained: bool = False, image_size: int | None = None,
               args: dict[str, Any] | None = None) -> tuple[nn.Module, int]:
    """(timm model of ``backbone`` mapping (B, in_channels, S, S) to (B, D), D)."""
    timm = _import_timm()
    name, args = timm_name(backbone), dict(args or {})
    try:
        model = _create(timm, name, in_channels, pretrained, image_size, args)
    except TypeError as e:  # a keyword the model does not take
        raise ValueError(f"model.backbone_args={args} is not valid for {backbone}: {first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - offline, a missing file, a failed hub request: many types, one line
        if not pretrained:
            raise ValueError(f"{backbone} cannot be built: {first_line(e)}") from None
        raise OSError(f"cannot load the pretrained weights of {backbone} ({type(e).__name__}: {first_line(e)}): "
                      f"put them in {weights_cache(name)} from a machine online, or use --model.pretrained false"
                      ) from None
    return model, _out_dim(model, backbone, in_channels, image_size or 224)


def _out_dim(model: nn.Module, backbone: str, in_channels: int, size: int) -> int:
    """The width of the model's output, read from one image of side ``size`` (eval mode, no gradient)."""
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if patch is not None and size % patch[0]:
        raise ValueError(f"{size}x{size} images do not split into {patch[0]}x{patch[0]} patches of {backbone}: set "
                         f"model.backbone_args.patch_size to a divisor of {size}, or data.image_size to a multiple "
                         f"of {patch[0]}")
    training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, in_channels, size, size))
    except RuntimeError as e:
        raise ValueError(f"{backbone} cannot take {size}x{size} images ({first_line(e)}): set data.image_size "
                         f"larger") from None
    finally:
        model.train(training)
    if out.dim() != 2:
        raise ValueError(f"{backbone} gives features of shape {tuple(out.shape)} for one image, not (1, D): choose a "
                         f"model with pooled features, or set model.backbone_args.global_pool")
    return int(out.shape[1])
