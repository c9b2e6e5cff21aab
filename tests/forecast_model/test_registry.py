"""Model status lifecycle, per-config caching, device resolution, and the library's import boundary."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from forecast_model import (
    CheckpointError,
    ConfigurationError,
    DeviceError,
    EngineConfig,
    ModelState,
    ResolvedCheckpoint,
    load_engine,
    model_status,
    registry,
    resolve_device,
)


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def test_status_goes_from_uninitialized_to_ready(tiny_checkpoint: ResolvedCheckpoint) -> None:
    assert model_status().status is ModelState.UNINITIALIZED
    config = EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu")
    engine = load_engine(config)
    status = model_status()
    assert status.status is ModelState.READY and status.error is None
    assert status.device == "cpu" and status.load_seconds is not None
    assert load_engine(config) is engine, "the same config must reuse the loaded engine"


def test_failed_load_reports_error_with_message(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        load_engine(EngineConfig(checkpoint=str(tmp_path / "missing.ckpt"), device="cpu"))
    status = model_status()
    assert status.status is ModelState.ERROR
    assert status.error and "missing.ckpt" in status.error


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA, so 'gpu' is valid here")
def test_gpu_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match=r"CUDA is not available.*use device 'auto' or 'cpu'"):
        resolve_device("gpu")


def test_auto_and_cpu_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):
        resolve_device("tpu")


def test_library_imports_no_orchestration_or_tracking() -> None:
    code = ("import sys, forecast_model\n"
            "bad = [m for m in ('prefect', 'mlflow', 'duckdb', 'great_expectations') if m in sys.modules]\n"
            "print(bad)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", f"forecast_model pulled in {done.stdout.strip()}"


def test_pin_mismatch_fails_before_loading(tiny_checkpoint: ResolvedCheckpoint) -> None:
    config = EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu", expected_sha256="ab" * 32)
    with pytest.raises(CheckpointError, match="was pinned"):
        load_engine(config)
    assert model_status().status is ModelState.ERROR
    engine = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu"))
    assert engine.weights_sha256 and len(engine.weights_sha256) == 64


def test_precision_auto_is_fp32_on_cpu_and_tf32_on_cuda() -> None:
    from forecast_model.registry import resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "tf32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ConfigurationError, match="Unknown precision 'fp16'"):
        resolve_precision("fp16", torch.device("cpu"))
