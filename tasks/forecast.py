"""Run the TimesFM engine on the staged canonical frame and build the forecast and status tables."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from forecast_model import EngineConfig, ForecastResult, load_engine
from tasks.contracts import DS, FORECAST_SCHEMA, ID, QUANTILE_COLUMNS, STATUS_SCHEMA, SeriesStatus, Y
from tasks.errors import InputDataError
from tasks.frequency import freq_code, infer_frequency

__all__ = ["ForecastStats", "build_forecast_table", "forecast_series", "prepare_model", "summarize_series"]


class ForecastStats(BaseModel):
    """What the forecast stage did: small enough to pass between tasks and log."""

    model_config = ConfigDict(frozen=True)

    series_in: int
    series_ok: int
    series_rejected: int
    forecast_rows: int
    inference_seconds: float
    series_per_second: float
    device: str
    forecasts_path: Path
    status_path: Path


def summarize_series(frame: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """One row per series: status, reason, observation count, first/last timestamp and frequency alias.

    A series with no observed value, or whose frequency cannot be inferred, is rejected with a reason.
    """
    grouped = frame.groupby(ID, sort=True)
    summary = pd.DataFrame({
        "n_obs": grouped[Y].count().astype("int64"),
        "first_ds": grouped[DS].min(),
        "last_ds": grouped[DS].max(),
    })
    summary["status"], summary["reason"], summary["freq"] = SeriesStatus.OK.value, None, freq
    summary.loc[summary["n_obs"] == 0, ["status", "reason"]] = [SeriesStatus.REJECTED.value, "no_observations"]
    if freq is None:
        for series_id, timestamps in grouped[DS]:
            try:
                summary.loc[series_id, "freq"] = infer_frequency(timestamps, str(series_id))
            except InputDataError:
                summary.loc[series_id, ["status", "reason"]] = [SeriesStatus.REJECTED.value, "unknown_frequency"]
    return summary.rename_axis(ID).reset_index()


def build_forecast_table(
    summary: pd.DataFrame, result: ForecastResult, *, model: str, run_id: str, created_at: datetime
) -> pd.DataFrame:
    """Long forecast table (one row per series and step) for the series of ``summary``, in its order.

    Quantiles are sorted per row so that q10 <= ... <= q90 even where the model's heads cross.
    """
    horizon = result.point.shape[1]
    steps = np.tile(np.arange(1, horizon + 1, dtype=np.int32), len(summary))
    future = [pd.date_range(row.last_ds, periods=horizon + 1, freq=row.freq)[1:]
              for row in summary.itertuples()]
    table = pd.DataFrame({
        ID: np.repeat(summary[ID].to_numpy(), horizon),
        DS: np.concatenate(future) if future else np.array([], dtype="datetime64[us]"),
        "step": steps,
        "forecast": result.point.reshape(-1).astype("float64"),
    })
    quantiles = np.sort(result.quantiles, axis=-1).reshape(-1, len(QUANTILE_COLUMNS)).astype("float64")
    table[QUANTILE_COLUMNS] = quantiles
    table["model"] = model
    table["cutoff"] = np.repeat(summary["last_ds"].to_numpy(), horizon)
    table["run_id"] = run_id
    table["created_at"] = pd.Timestamp(created_at).tz_convert("UTC")
    return table


def write_table(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> Path:
    """Writes ``frame`` as Parquet with exactly the contract's schema (fails if a column is off)."""
    pq.write_table(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False), path)
    return path


@task(name="prepare-model", cache_policy=NO_CACHE)
def prepare_model(engine: EngineConfig) -> str:
    """Resolves the checkpoint and loads the model before any data work, so a bad checkpoint fails fast.

    The engine stays cached in this process for the forecast task; returns the device it runs on.
    """
    model = load_engine(engine)
    get_run_logger().info("Model %s ready on %s (context %d)", engine.checkpoint, model.device,
                          model.hparams.context_len)
    return str(model.device)


@task(name="forecast-series", cache_policy=NO_CACHE)
def forecast_series(
    input_path: Path, staging: Path, engine: EngineConfig, *, horizon: int, context_len: int,
    freq: str | None, run_id: str, created_at: datetime,
) -> ForecastStats:
    """Forecasts every accepted series and stages the forecast and series-status tables."""
    logger = get_run_logger()
    frame = pd.read_parquet(input_path)
    summary = summarize_series(frame, freq)
    accepted = summary[summary["status"] == SeriesStatus.OK.value].reset_index(drop=True)
    if accepted.empty:
        raise InputDataError("No series can be forecast: every series was rejected (see reasons in the log). "
                             f"Reasons: {summary['reason'].value_counts().to_dict()}.")
    values = dict(tuple(frame.groupby(ID, sort=False)[Y]))
    model = load_engine(engine)
    started = time.perf_counter()
    result = model.forecast([values[i].to_numpy() for i in accepted[ID]], horizon,
                            [freq_code(f) for f in accepted["freq"]], context_len)
    seconds = time.perf_counter() - started
    table = build_forecast_table(accepted, result, model=engine.checkpoint, run_id=run_id, created_at=created_at)
    forecasts = write_table(table, FORECAST_SCHEMA, staging / "forecasts.parquet")
    status = write_table(summary, STATUS_SCHEMA, staging / "series_status.parquet")
    logger.info("Forecast %d series x %d steps on %s in %.2f s", len(accepted), horizon, model.device, seconds)
    return ForecastStats(
        series_in=len(summary), series_ok=len(accepted), series_rejected=len(summary) - len(accepted),
        forecast_rows=len(table), inference_seconds=round(seconds, 4),
        series_per_second=round(len(accepted) / max(seconds, 1e-9), 2), device=str(model.device),
        forecasts_path=forecasts, status_path=status,
    )
