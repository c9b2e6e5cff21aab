"""Forecasting validated series: run the engine on them, build the forecast table, mark the series it failed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecast_model import ForecastResult, TimesFmEngine
from pipeline.contracts import DS, ID, QUANTILE_COLUMNS, SeriesStatus, Y
from pipeline.frequency import freq_code

__all__ = ["PROGRESS_CHUNK", "build_forecast_table", "mark_failed", "run_engine", "series_values"]

PROGRESS_CHUNK = 16  # engine batches per progress report: few reports, and the batches stay full


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
    """The ``y`` values of each series of ``ids``, from a frame whose rows of one series are contiguous.

    Where the ids change is found by Arrow's string kernels: a million-row NumPy array of Python strings
    costs more to build than the whole comparison.
    """
    column = pa.array(frame[ID], type=pa.string())
    blocks: dict[str, np.ndarray] = {}
    if len(column):
        changed = pc.not_equal(column[1:], column[:-1]).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, changed])
        names = column.take(pa.array(starts, type=pa.int64())).to_pylist()
        blocks = dict(zip(names, np.split(frame[Y].to_numpy(), starts[1:]), strict=True))
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


def run_engine(model: TimesFmEngine, frame: pd.DataFrame, accepted: pd.DataFrame, horizon: int,
               context_len: int, progress: Callable[[int, int], None] | None = None) -> ForecastResult:
    """The engine's forecasts for the ``accepted`` series (status rows, in order) of the regular frame.

    With ``progress``, the series go to the engine in chunks of ``PROGRESS_CHUNK`` batches, and
    ``progress(done, total)`` is called after each: the engine sorts and batches within a chunk, which
    leaves its batches as full as before.
    """
    if accepted.empty:
        empty = np.empty((0, horizon), np.float32)
        return ForecastResult(empty, empty, np.empty((0, horizon, len(QUANTILE_COLUMNS)), np.float32))
    values, codes = series_values(frame, accepted[ID]), [freq_code(f) for f in accepted["freq"]]
    if progress is None:
        return model.forecast(values, horizon, codes, context_len)
    size, parts = model.batch_size * PROGRESS_CHUNK, []
    for start in range(0, len(values), size):
        parts.append(model.forecast(values[start:start + size], horizon, codes[start:start + size], context_len))
        progress(min(start + size, len(values)), len(values))
    return ForecastResult(*(np.concatenate([getattr(part, name) for part in parts])
                            for name in ("point", "mean", "quantiles")))
