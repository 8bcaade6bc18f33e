"""The one device resolver, autocast and CPU threads."""

import pytest
import torch

from vicreg.device import autocast_dtype, cpu_threads, resolve_device, small_cpu_work


def test_auto_is_the_cpu_without_cuda_and_names_are_taken_as_torch_reads_them():
    assert resolve_device("auto") == torch.device("cpu")  # the suite hides CUDA (tests/conftest.py)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bad_devices_are_one_line_naming_the_config_field():
    with pytest.raises(ValueError, match=r"predictor.device='cuda:1' is not valid: CUDA is not available"):
        resolve_device("cuda:1", "predictor.device")
    with pytest.raises(ValueError, match=r"train.device='gpu' is not a device \(use auto, cpu, cuda or cuda:N\)"):
        resolve_device("gpu")


def test_a_device_this_machine_does_not_have_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device='mps' is not valid: MPS \(Apple's GPU\) is not available on this "
                                         r"machine \(use auto or cpu\)$"):
        resolve_device("mps", "device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^train.device='cuda:1' is not valid: this machine has 1 GPU\(s\), cuda:0 "
                                         r"to cuda:0$"):
        resolve_device("cuda:1")


def test_autocast_is_bf16_on_cuda_or_when_asked():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("auto", cuda) is torch.bfloat16 and autocast_dtype("bf16", cpu) is torch.bfloat16


def test_cpu_threads_are_restored():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(1, enabled=False):
        assert torch.get_num_threads() == before
    assert small_cpu_work(torch.device("cpu"), 256, 256) and not small_cpu_work(torch.device("cpu"), 1024, 1024)
    assert not small_cpu_work(torch.device("cuda"), 1, 1)
