"""timm backbones (``model.backbone timm:NAME``): built for the dataset's channels and image size, their output width
read from the model, one-line errors for a bad name, bad arguments, images too small and weights out of reach; a
ViT trained end to end, exported and checked in onnxruntime. Tiny models (one or two blocks) keep this quick."""

import urllib.error
import urllib.request

import pytest
import torch

from vicreg.backbones import backbone_problem, create_backbone
from vicreg.cli import main
from vicreg.config import ConfigError, build_config, parse_overrides
from vicreg.encoder import export_encoder, load_encoder
from vicreg.models import build_model
from vicreg.optim import param_groups
from vicreg.step import Step
from vicreg.training import train

timm = pytest.importorskip("timm")

VIT = "timm:vit_tiny_patch16_224"
TINY_VIT = {"patch_size": 4, "depth": 1}  # one block: the same code path, a fraction of the time


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_a_vit_is_built_for_the_images_channels_and_size(channels, size):
    net, dim = create_backbone(VIT, channels, image_size=size, args=TINY_VIT)
    assert dim == 192 and net.patch_embed.proj.in_channels == channels
    assert net.patch_embed.grid_size == (size // 4, size // 4)  # 4x4 patches: 49 tokens at 28, 64 at 32
    assert net.pos_embed.shape == (1, (size // 4) ** 2 + 1, 192)  # and the class token
    with torch.no_grad():
        assert net.eval()(torch.rand(3, channels, size, size)).shape == (3, 192)


def test_the_output_width_is_read_from_the_model_not_its_name():
    # mobilenetv3 pools 576 channels and maps them to 1024 before its classifier: the features are 1024-D
    net, dim = create_backbone("timm:mobilenetv3_small_100", 1, image_size=32)
    assert dim == 1024 and net.num_features == 576
    net, dim = create_backbone("timm:resnet18", 1, image_size=28)
    assert dim == 512 and net.conv1.in_channels == 1
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 1, 28, 28)).shape == (2, 512)


def test_bad_names_arguments_and_sizes_are_one_line():
    assert backbone_problem(VIT) is None and backbone_problem("timm:resnet18.a1_in1k") is None  # a weights tag
    assert backbone_problem("timm:vit_tiny_patch16_2244").startswith(
        "timm has no model 'vit_tiny_patch16_2244' (similar: vit_tiny_patch16_224")
    assert backbone_problem("vit").startswith("expected one of resnet18, resnet18_cifar, resnet50, small_cnn, vgg16, "
                                              "or timm:NAME")
    with pytest.raises(ValueError, match=r"^model.backbone_args=\{'depthh': 2\} is not valid for timm:vit_tiny_patch16_"
                                         r"224: VisionTransformer.__init__\(\) got an unexpected keyword argument"):
        create_backbone(VIT, 1, image_size=28, args={"depthh": 2})
    with pytest.raises(ValueError, match=r"^28x28 images do not split into 16x16 patches of timm:vit_tiny_patch16_224: "
                                         r"set model.backbone_args.patch_size to a divisor of 28"):
        create_backbone(VIT, 1, image_size=28, args={"depth": 1})
    with pytest.raises(ValueError, match=r"^timm:convnext_atto cannot take 16x16 images \(.*\): set data.image_size "
                                         r"larger$"):
        create_backbone("timm:convnext_atto", 1, image_size=16)
    with pytest.raises(ValueError, match="only timm backbones take arguments"):
        create_backbone("small_cnn", 1, args={"depth": 1})


def test_backbone_args_come_from_the_command_line_yaml_and_presets():
    cfg = build_config(None, parse_overrides(["--model.backbone", VIT, "--model.backbone_args.patch_size", "4",
                                              "--model.backbone_args.drop_path_rate", "0.1"]))
    assert cfg.model.backbone_args == {"patch_size": 4, "drop_path_rate": 0.1}
    cfg = build_config(None, {"model.backbone": VIT, "model.backbone_args": "{patch_size: 4, depth: 2}"})
    assert cfg.model.backbone_args == {"patch_size": 4, "depth": 2}
    vit = build_config("vit-tiny-fashion")
    assert (vit.model.backbone, vit.model.backbone_args, vit.optim.name) == (VIT, {"patch_size": 4}, "adamw")
    for overrides, message in [
        ({"model.backbone_args.patch_size": 4}, "model.backbone_args={'patch_size': 4} is not valid: only timm "
                                                "backbones (timm:NAME) take arguments, not 'small_cnn'"),
        ({"model.backbone": VIT, "model.backbone_args": {"2x": 1}}, "model.backbone_args: '2x' is not valid: an "
                                                                    "argument's name must be an identifier"),
        ({"model.backbone": VIT, "model.backbone_args.drop_path_rate": float("nan")},
         "model.backbone_args.drop_path_rate=nan is not valid: expected a finite number"),
        ({"model.backbone": VIT, "model.backbone_args": [4]}, "model.backbone_args=[4] is not valid: expected a "
                                                              "mapping of argument names to values"),
        ({"model.backbone": "timm:"}, "model.backbone='timm:' is not valid: expected timm:NAME"),
    ]:
        with pytest.raises(ConfigError) as err:
            build_config(None, overrides)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_vits_position_embedding_and_class_token_take_no_weight_decay():
    cfg = build_config("vit-tiny-fashion", {"model.backbone_args.depth": 1, "model.expander": [8]})
    model = build_model(cfg.model, 1, [0.5], [0.25], 28)
    decay, no_decay = param_groups(model, 0.05)
    exempt = {id(model.backbone.pos_embed), id(model.backbone.cls_token)}
    assert exempt <= {id(p) for p in no_decay["params"]} and not exempt & {id(p) for p in decay["params"]}
    assert all(p.ndim > 1 for p in decay["params"])  # the weight matrices and the patch projection
    said = []
    Step(model, cfg, torch.device("cpu"), log=said.append)
    assert said == [f"{VIT} has no batch norm: per-view batch norm applies to the head and expander only"]


def test_pretrained_weights_out_of_reach_are_one_line_naming_the_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # tests never download
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(OSError) as err:
        create_backbone("timm:resnet18", 1, pretrained=True, image_size=32)
    message = str(err.value)
    assert message.startswith("cannot load the pretrained weights of timm:resnet18 (") and "\n" not in message
    assert message.endswith(f"put them in {tmp_path / 'hf'} (the Hugging Face cache; HF_HOME moves it) from a "
                            f"machine online, or use --model.pretrained false")
    with pytest.raises(OSError) as err:
        create_backbone("resnet18", 1, pretrained=True)
    assert str(err.value).startswith("cannot load the pretrained weights of resnet18 (URLError: ")
    assert str(err.value).endswith(f"put them in {tmp_path / 'torch' / 'hub'}/checkpoints from a machine online, or "
                                   f"use --model.pretrained false")


@pytest.mark.slow  # the ONNX export of a ViT takes about 20 s on 2 cores
def test_a_vit_trains_exports_and_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    cfg = build_config("demo", {"model.backbone": VIT, "model.backbone_args": {**TINY_VIT, "depth": 2},
                                "train.device": "cpu", "train.epochs": 1, "train.batch_size": 64,
                                "data.limit_train": 128, "data.limit_test": 64, "train.knn_k": [5],
                                "model.expander": [32, 32], "train.progress": False, "train.out_dir": str(tmp_path)})
    result = train(cfg, run_dir=tmp_path / "vit", echo=lambda m: None)
    assert result.step == 2  # 128 images, batches of 64
    meta = export_encoder(result.run_dir, "onnx")
    assert meta["model"]["backbone"] == VIT and meta["model"]["backbone_args"] == {"patch_size": 4, "depth": 2}
    assert meta["output"]["shape"] == [None, 192] and meta["input"]["shape"] == [None, 1, 16, 16]
    onnx = meta["check"]["onnx"]
    assert onnx["onnxruntime_max_abs_diff"] <= onnx["tolerance"] and meta["check"]["safetensors"]["round_trip_equal"]
    encoder, pre = load_encoder(result.run_dir / "export")  # safetensors and encoder.json: the ViT rebuilt at 16x16
    again, _ = load_encoder(result.run_dir)
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(encoder(x), again(x))


def test_the_command_line_trains_a_timm_resnet(tmp_path, capsys):
    code = main(["train", "--preset", "demo", "--model.backbone", "timm:resnet18", "--train.epochs", "1",
                 "--data.limit_train", "64", "--data.limit_test", "32", "--train.batch_size", "32",
                 "--train.knn_k", "5", "--model.expander", "16,16", "--train.progress", "false",
                 "--train.out_dir", str(tmp_path), "--train.name", "r", "--train.device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "run runs" not in out and f"run {tmp_path / 'r'}: timm:resnet18 (11.18 M trainable" in out
