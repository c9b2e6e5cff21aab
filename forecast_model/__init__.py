"""TimesFM-2.0 batch inference as a plain library: no orchestration, tracking or database imports.

Contract: resolve a checkpoint, load it once (:func:`load_engine`), then call
:meth:`TimesFmEngine.forecast` on as many series as you like (:func:`forecast_with_covariates` for forecasts
with covariates).
"""

from forecast_model.checkpoint import ResolvedCheckpoint, make_tiny_checkpoint, resolve_checkpoint
from forecast_model.config import DEFAULT_CHECKPOINT, DEFAULT_QUANTILES, ModelHparams
from forecast_model.covariates import INTERCEPT, CovariateForecast, Covariates, XRegMode, forecast_with_covariates
from forecast_model.device import DeviceName, cpu_threads, reproducible_cpu_math, resolve_device, torch_threads
from forecast_model.engine import ForecastResult, TimesFmEngine
from forecast_model.errors import CheckpointError, ConfigurationError, DeviceError, ForecastModelError
from forecast_model.registry import (
    EngineConfig,
    ModelState,
    ModelStatus,
    load_engine,
    loaded_checkpoint,
    model_status,
)

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_QUANTILES",
    "INTERCEPT",
    "CheckpointError",
    "ConfigurationError",
    "CovariateForecast",
    "Covariates",
    "DeviceError",
    "DeviceName",
    "EngineConfig",
    "ForecastModelError",
    "ForecastResult",
    "ModelHparams",
    "ModelState",
    "ModelStatus",
    "ResolvedCheckpoint",
    "TimesFmEngine",
    "XRegMode",
    "cpu_threads",
    "forecast_with_covariates",
    "load_engine",
    "loaded_checkpoint",
    "make_tiny_checkpoint",
    "model_status",
    "reproducible_cpu_math",
    "resolve_checkpoint",
    "resolve_device",
    "torch_threads",
]
