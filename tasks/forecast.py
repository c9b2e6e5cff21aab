"""Run the TimesFM engine on the validated series and build the forecast and final status tables."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import EngineConfig, ForecastResult, TimesFmEngine, load_engine
from tasks.contracts import DS, FORECAST_SCHEMA, ID, QUANTILE_COLUMNS, STATUS_SCHEMA, SeriesStatus, Y
from tasks.errors import DataValidationError
from tasks.frequency import freq_code
from tasks.series_checks import enforce_rejection_limit, rejection_report
from tasks.tables import write_table

__all__ = ["ForecastStats", "ModelInfo", "build_forecast_table", "forecast_series", "mark_failed", "prepare_model",
           "render_sample", "series_values"]


class ModelInfo(BaseModel):
    """The loaded model, as the manifest records it."""

    model_config = ConfigDict(frozen=True)

    device: str
    precision: str
    weights_sha256: str
    context_len: int


class ForecastStats(BaseModel):
    """What the forecast stage did: small enough to pass between tasks and log."""

    model_config = ConfigDict(frozen=True)

    series_in: int
    series_ok: int
    series_rejected: int
    series_failed: int
    forecast_rows: int
    by_reason: dict[str, int]  # series left out, rejected or failed, per reason code
    inference_seconds: float
    series_per_second: float
    device: str
    precision: str
    batch_size: int
    forecasts_path: Path
    status_path: Path


def build_forecast_table(
    accepted: pd.DataFrame, result: ForecastResult, *, model: str, run_id: str, created_at: datetime
) -> pd.DataFrame:
    """Long forecast table (one row per series and step) for the series of ``accepted``, in its order.

    Quantiles are sorted per row so that q10 <= ... <= q90 even where the model's heads cross.
    """
    horizon = result.point.shape[1]
    table = pd.DataFrame({
        ID: np.repeat(accepted[ID].to_numpy(), horizon),
        DS: _future_stamps(accepted, horizon).reshape(-1),
        "step": np.tile(np.arange(1, horizon + 1, dtype=np.int32), len(accepted)),
        "forecast": result.point.reshape(-1).astype("float64"),
    })
    table[QUANTILE_COLUMNS] = np.sort(result.quantiles, axis=-1).reshape(-1, len(QUANTILE_COLUMNS)).astype("float64")
    table["model"] = model
    table["cutoff"] = np.repeat(accepted["last_ds"].to_numpy(), horizon)
    table["run_id"] = run_id
    table["created_at"] = pd.Timestamp(created_at).tz_convert("UTC")
    return table


def _future_stamps(accepted: pd.DataFrame, horizon: int) -> np.ndarray:
    """The ``horizon`` timestamps after each series' last one, one row per series; a date range is built
    once per distinct (last timestamp, frequency), not once per series."""
    if accepted.empty:
        return np.empty((0, horizon), dtype="datetime64[us]")
    codes, keys = pd.MultiIndex.from_frame(accepted[["last_ds", "freq"]]).factorize()
    grids = np.stack([pd.date_range(last, periods=horizon + 1, freq=freq)[1:].to_numpy().astype("datetime64[us]")
                      for last, freq in keys])
    return grids[codes]


def series_values(frame: pd.DataFrame, ids: pd.Series) -> list[np.ndarray]:
    """The ``y`` values of each series of ``ids``, from a frame whose rows of one series are contiguous."""
    id_values = frame[ID].to_numpy()
    starts = np.flatnonzero(np.r_[True, id_values[1:] != id_values[:-1]]) if len(frame) else np.array([], int)
    blocks = dict(zip(id_values[starts], np.split(frame[Y].to_numpy(), starts[1:]), strict=True))
    return [blocks[i] for i in ids]


def mark_failed(status: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Series with any non-finite forecast become ``failed``; their rows leave the forecast table."""
    values = table[["forecast", *QUANTILE_COLUMNS]].to_numpy()
    broken = set(table.loc[~np.isfinite(values).all(axis=1), ID])
    if not broken:
        return status, table
    status = status.copy()
    status.loc[status[ID].isin(broken), ["status", "reason"]] = [SeriesStatus.FAILED.value, "non_finite_forecast"]
    return status, table[~table[ID].isin(broken)].reset_index(drop=True)


@task(name="prepare-model", cache_policy=NO_CACHE)
def prepare_model(engine: EngineConfig) -> ModelInfo:
    """Resolves the checkpoint, checks its pin and loads it before any data work, so a bad one fails fast.

    The engine stays cached in this process for the forecast task.
    """
    model = load_engine(engine)
    get_run_logger().info("Model %s (sha256 %s) ready on %s", engine.checkpoint, model.weights_sha256,
                          model.device)
    return ModelInfo(device=str(model.device), precision=model.precision, weights_sha256=model.weights_sha256 or "",
                     context_len=model.hparams.context_len)


@task(name="forecast-series", cache_policy=NO_CACHE)
def forecast_series(
    regular_path: Path, status_path: Path, staging: Path, engine: EngineConfig, *, horizon: int,
    context_len: int, run_id: str, created_at: datetime, max_rejected_fraction: float = 1.0,
    allow_empty: bool = False,
) -> ForecastStats:
    """Forecasts every accepted series and stages the forecast and final series-status tables.

    Series whose forecast is not finite become ``failed``; the run fails when rejected and failed series
    together pass ``max_rejected_fraction``, and when no series at all could be forecast, unless
    ``allow_empty`` (a shard of a larger job may hold only rejected series; its parent checks the job).
    """
    status = pd.read_parquet(status_path)
    frame = pd.read_parquet(regular_path)
    accepted = status[status["status"] == SeriesStatus.OK.value].reset_index(drop=True)
    model = load_engine(engine)
    started = time.perf_counter()
    result = _run_model(model, frame, accepted, horizon, context_len)
    seconds = time.perf_counter() - started
    table = build_forecast_table(accepted, result, model=engine.checkpoint, run_id=run_id, created_at=created_at)
    status, table = mark_failed(status, table)
    enforce_rejection_limit(status, max_rejected_fraction)
    if table.empty and not allow_empty:
        _nothing_forecast(status)
    counts = status["status"].value_counts()
    get_run_logger().info("Forecast %d series x %d steps on %s in %.2f s", len(accepted), horizon, model.device,
                          seconds)
    return ForecastStats(
        series_in=len(status), series_ok=int(counts.get(SeriesStatus.OK.value, 0)),
        series_rejected=int(counts.get(SeriesStatus.REJECTED.value, 0)),
        series_failed=int(counts.get(SeriesStatus.FAILED.value, 0)), forecast_rows=len(table),
        by_reason={str(k): int(v) for k, v in status["reason"].dropna().value_counts().items()},
        inference_seconds=round(seconds, 4), series_per_second=round(len(accepted) / max(seconds, 1e-9), 2),
        device=str(model.device), precision=model.precision, batch_size=model.batch_size,
        forecasts_path=write_table(table, FORECAST_SCHEMA, staging / "forecasts.parquet"),
        status_path=write_table(status, STATUS_SCHEMA, staging / "series_status.parquet"),
    )


def _nothing_forecast(status: pd.DataFrame) -> NoReturn:
    """A run that forecast nothing must not publish (it would replace a good partition with an empty one)."""
    reasons = "; ".join(f"{r['reason']} ({r['status']}): {r['series']} series, e.g. {r['examples']}"
                        for r in rejection_report(status))
    raise DataValidationError(f"No series could be forecast: all {len(status)} were rejected or failed, so nothing "
                              f"is published and earlier outputs are intact. {reasons}. Fix: correct the input; "
                              "docs/DATA_FORMAT.md explains each reason.")


def _run_model(model: TimesFmEngine, frame: pd.DataFrame, accepted: pd.DataFrame, horizon: int,
               context_len: int) -> ForecastResult:
    if accepted.empty:
        empty = np.empty((0, horizon), np.float32)
        return ForecastResult(empty, empty, np.empty((0, horizon, len(QUANTILE_COLUMNS)), np.float32))
    return model.forecast(series_values(frame, accepted[ID]), horizon, [freq_code(f) for f in accepted["freq"]],
                          context_len)


@task(name="render-sample", cache_policy=NO_CACHE)
def render_sample(regular_path: Path, forecasts_path: Path, staging: Path) -> Path:
    """A PNG of a few series (history, forecast, q10-q90 band) for the MLflow run."""
    from tasks.report import plot_sample

    return plot_sample(pd.read_parquet(regular_path), pd.read_parquet(forecasts_path), staging / "sample.png")
