"""One engine per process and configuration, and the model status the health report shows."""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from typing import Literal

import torch

from forecast_model.checkpoint import ResolvedCheckpoint, load_decoder, resolve_checkpoint, verify_sha256
from forecast_model.config import DEFAULT_CHECKPOINT
from forecast_model.decoder import Precision
from forecast_model.device import reproducible_cpu_math, resolve_device
from forecast_model.engine import TimesFmEngine, choose_batch_size
from forecast_model.errors import ConfigurationError, ForecastModelError

__all__ = ["EngineConfig", "ModelState", "ModelStatus", "load_engine", "loaded_checkpoint", "model_status", "reset",
           "resolve_precision"]

logger = logging.getLogger(__name__)


class ModelState(str, enum.Enum):
    """Lifecycle of the process's model, named as the earlier service's health report named it."""

    UNINITIALIZED = "uninitialized"
    INITIALIZING = "initializing"
    READY = "ready"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """What identifies a loaded engine: same config, same engine object."""

    checkpoint: str = DEFAULT_CHECKPOINT
    device: str = "auto"
    device_index: int | None = None  # the GPU a CUDA run uses (None: GPU 0); set per worker, not per run
    batch_size: int | None = None  # None: chosen from the device (256 on CPU, free memory on CUDA)
    expected_sha256: str | None = None
    precision: Precision | Literal["auto"] = "auto"  # auto: fp32 on CPU, tf32 on CUDA


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    """The model's state, the checkpoint it concerns, and the error message when it failed."""

    status: ModelState = ModelState.UNINITIALIZED
    checkpoint: str | None = None
    device: str | None = None
    error: str | None = None
    load_seconds: float | None = None


_lock = threading.Lock()
_engines: dict[EngineConfig, TimesFmEngine] = {}
_checkpoints: dict[EngineConfig, ResolvedCheckpoint] = {}  # what each engine was loaded from
_status = ModelStatus()


def load_engine(config: EngineConfig) -> TimesFmEngine:
    """Returns the process's engine for ``config``, loading the checkpoint on first use.

    Raises:
        ConfigurationError: the checkpoint or device is unusable (the model status becomes ``error``).
    """
    global _status
    with _lock:
        if config in _engines:
            return _engines[config]
        _status = ModelStatus(ModelState.INITIALIZING, checkpoint=config.checkpoint, device=config.device)
        started = time.perf_counter()
        try:
            device = resolve_device(config.device, config.device_index)
            reproducible_cpu_math()
            checkpoint = resolve_checkpoint(config.checkpoint)
            sha256 = verify_sha256(checkpoint, config.expected_sha256)
            module = load_decoder(checkpoint, device)
        except ForecastModelError as exc:
            _status = dataclasses.replace(_status, status=ModelState.ERROR, error=str(exc))
            raise
        batch_size = config.batch_size or choose_batch_size(checkpoint.hparams, device)
        engine = TimesFmEngine(module, checkpoint.hparams, device, batch_size, weights_sha256=sha256,
                               precision=resolve_precision(config.precision, device))
        _engines[config], _checkpoints[config] = engine, checkpoint
        seconds = time.perf_counter() - started
        _status = ModelStatus(ModelState.READY, checkpoint=config.checkpoint, device=str(device),
                              load_seconds=round(seconds, 3))
        logger.info("Loaded %s on %s in %.1f s", checkpoint.weights, device, seconds)
        return engine


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto`` is exact fp32 on CPU and tf32 on CUDA: the fastest precision measured within 5e-3 of fp32
    (docs/PERFORMANCE.md); bf16 was not."""
    if precision == "auto":
        return "tf32" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "tf32", "bf16"):
        raise ConfigurationError(f"Unknown precision {precision!r}; use auto, fp32, tf32 or bf16.")
    return precision  # type: ignore[return-value]


def loaded_checkpoint(config: EngineConfig) -> ResolvedCheckpoint:
    """The checkpoint the engine of ``config`` was loaded from (loading it first if needed), without resolving
    it again: for a hub id that would be another cache lookup, or a network round trip."""
    load_engine(config)
    return _checkpoints[config]


def model_status() -> ModelStatus:
    """The state of the most recently requested model in this process."""
    return _status


def reset() -> None:
    """Drops every cached engine (tests, or freeing memory in a long-lived worker)."""
    global _status
    with _lock:
        _engines.clear()
        _checkpoints.clear()
        _status = ModelStatus()
