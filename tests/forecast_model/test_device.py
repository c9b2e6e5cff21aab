"""The device is resolved once: cpu is cpu, auto takes CUDA only where it exists, gpu never falls back."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

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


@pytest.mark.usefixtures("cpu_only")
def test_a_pinned_gpu_on_a_cpu_only_machine_is_no_such_gpu_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(DeviceError, match="No such GPU: device index 1 was requested") as raised:
        resolve_device("gpu", 1)
    assert "sees 0 CUDA device(s)" in str(raised.value) and "Fix: pin each worker" in str(raised.value)
    assert resolve_device("auto", 1) == torch.device("cpu"), "auto still falls back to the CPU"
    assert resolve_device("cpu", 1) == torch.device("cpu")


@pytest.mark.parametrize(("name", "index", "expected"), [
    ("gpu", None, "cuda:0"), ("gpu", 0, "cuda:0"), ("gpu", 1, "cuda:1"), ("auto", 1, "cuda:1"), ("cpu", 1, "cpu")])
def test_on_a_two_gpu_host_the_index_picks_the_gpu(monkeypatch: pytest.MonkeyPatch, name: str, index: int | None,
                                                   expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device(name, index) == torch.device(expected)


@pytest.mark.parametrize("index", [2, 7, -1])
def test_on_a_two_gpu_host_an_index_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in ("gpu", "auto"):
        with pytest.raises(DeviceError, match=rf"No such GPU: device index {index} .* sees 2 CUDA device\(s\), "
                                              r"indexes 0-1"):
            resolve_device(name, index)


def test_cpu_threads_apply_to_the_block_and_are_restored() -> None:
    import torch

    from forecast_model import cpu_threads, torch_threads

    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    with cpu_threads(other) as count:
        assert count == other == torch.get_num_threads() == torch_threads(), "the block runs with the count asked"
    assert torch.get_num_threads() == before, "restored: the count belongs to the whole process"
    with cpu_threads(None) as count:
        assert count == before == torch.get_num_threads(), "None leaves the count as it is"
    with pytest.raises(RuntimeError, match="inside"), cpu_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before, "restored after an error too"


def test_overlapping_cpu_thread_blocks_share_one_count_until_the_last_ends() -> None:
    """Two shards at a time run their forecast stages in threads: the first one's exit must not change the
    count under the second (forecasts' last bits may depend on it)."""
    import threading

    import torch

    from forecast_model import cpu_threads

    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    first_in, second_in, first_out, seen = threading.Event(), threading.Event(), threading.Event(), []

    def first() -> None:
        with cpu_threads(other):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with cpu_threads(other) as count:
            second_in.set()
            first_out.wait(10)
            seen.extend([count, torch.get_num_threads()])

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [other, other], "the second block kept the count after the first ended"
    assert torch.get_num_threads() == before, "restored once both ended"


_THREADS_COMPARED = """
import json, sys, tempfile
import numpy as np, torch
{before}
from forecast_model import EngineConfig, load_engine, make_tiny_checkpoint, reproducible_cpu_math
folder = tempfile.mkdtemp()
make_tiny_checkpoint(folder)
engine = load_engine(EngineConfig(checkpoint=folder, device="cpu"))
rng = np.random.default_rng(0)
series = [rng.normal(size=rng.integers(20, 400)).cumsum() for _ in range(7)]
out = {{}}
for threads in (1, 2):
    torch.set_num_threads(threads)
    out[threads] = engine.forecast(series, 28).quantiles
print(json.dumps({{"on": reproducible_cpu_math(), "differ": float((out[1] != out[2]).mean())}}))
"""


def _threads_compared(before: str = "") -> dict[str, float]:
    env = {name: value for name, value in os.environ.items() if name != "MKL_CBWR"}
    done = subprocess.run([sys.executable, "-c", _THREADS_COMPARED.format(before=before)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif("USE_MKL=ON" not in torch.__config__.show(), reason="MKL is torch's CPU BLAS on x86 builds")
def test_a_loaded_engine_gives_the_same_bits_with_one_thread_or_two() -> None:
    """A small batch (7 short series) is where MKL's default mode splits products by thread count; the engine's
    load switches MKL to its strict reproducible mode, so the count the stage picks changes no forecast."""
    seen = _threads_compared()
    assert seen == {"on": True, "differ": 0.0}, seen


@pytest.mark.skipif("USE_MKL=ON" not in torch.__config__.show(), reason="MKL is torch's CPU BLAS on x86 builds")
def test_mkl_used_before_the_engine_loads_keeps_its_mode_and_says_so() -> None:
    seen = _threads_compared(before="torch.ones(4, 4) @ torch.ones(4, 4)")
    assert seen["on"] is False, "too late to switch: reported, not claimed"
    # Whether MKL's default mode then gives other bits with two threads depends on the CPU's code path: it did
    # on the machines of 2026-12-07, not on this project's AVX-512 machine of the evening (same wheel), so the
    # report is what is asserted, not the difference.


@pytest.mark.parametrize(("configured", "expected"), [("AUTO,STRICT", True), ("avx2,strict", True), ("AUTO", False)])
def test_mkl_cbwr_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch, configured: str, expected: bool) -> None:
    from forecast_model.device import reproducible_cpu_math

    monkeypatch.setenv("MKL_CBWR", configured)
    assert reproducible_cpu_math.__wrapped__() is expected


def test_a_late_switch_is_logged_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from forecast_model import device

    monkeypatch.delenv("MKL_CBWR", raising=False)
    monkeypatch.setattr(device, "_mkl_cbwr_set", lambda: lambda settings: device._CBWR_MODE_CHANGE_FAILURE)
    with caplog.at_level(logging.WARNING, logger="forecast_model.device"):
        assert device.reproducible_cpu_math.__wrapped__() is False
    assert "Fix: set MKL_CBWR=AUTO,STRICT" in caplog.text
