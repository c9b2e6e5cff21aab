"""The device is resolved once: cpu is cpu, auto takes CUDA only where it exists, gpu never falls back."""

from __future__ import annotations

import pytest
import torch

from forecast_model import ConfigurationError, DeviceError, resolve_device


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees no CUDA device, whatever the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.usefixtures("cpu_only")
def test_on_a_cpu_only_machine_auto_and_cpu_are_the_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.usefixtures("cpu_only")
def test_on_a_cpu_only_machine_gpu_is_an_error_with_the_fix() -> None:
    with pytest.raises(DeviceError, match="Device 'gpu' was requested but CUDA is not available") as raised:
        resolve_device("gpu")
    message = str(raised.value)
    assert torch.__version__ in message and "Fix: use device 'auto' or 'cpu'" in message
    assert isinstance(raised.value, ConfigurationError), "a wrong device is a setting the user can fix"


def test_with_cuda_auto_and_gpu_take_the_first_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda:0") == resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu"), "cpu stays cpu on a GPU host"


def test_this_machine_auto_matches_what_torch_sees() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name", ["cuda", "GPU", "", "tpu", "cuda:0"])
def test_unknown_device_names_are_refused(name: str) -> None:
    with pytest.raises(DeviceError, match=r"Unknown device .*use one of 'auto', 'cpu', 'gpu'"):
        resolve_device(name)
