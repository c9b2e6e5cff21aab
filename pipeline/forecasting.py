"""Forecasting validated series: run the engine on them, build the forecast table, mark the series it failed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from forecast_model import ForecastResult, TimesFmEngine
from forecast_model.preprocess import fill_missing
from pipeline.contracts import DS, FORECAST_SCHEMA, ID, QUANTILE_COLUMNS, SCALES_SCHEMA, SeriesStatus, Y
from pipeline.frequency import freq_code, season_length
from pipeline.series_checks import FAILED_REASON
from pipeline.tables import handed_over, parquet_options

__all__ = ["PROGRESS_CHUNK", "SCALES_FILE", "Chunk", "ForecastSink", "build_forecast_table", "chunk_size",
           "engine_threads", "forecast_table", "mark_series_failed", "read_chunks", "run_engine", "seasonal_naive",
           "seasonal_scales", "series_values"]

PROGRESS_CHUNK = 16  # engine batches per progress report: few reports, and the batches stay full
SCALES_FILE = "series_scales.parquet"  # the forecast stage's file of SCALES_SCHEMA, beside its forecasts


def build_forecast_table(
    accepted: pd.DataFrame, result: ForecastResult, *, history: Sequence[np.ndarray], model: str, run_id: str,
    created_at: datetime
) -> pd.DataFrame:
    """Long forecast table (one row per series and step, step by step) for the series of ``accepted``, whose
    regular values are ``history``, as pandas; see :func:`forecast_table`."""
    naive = seasonal_naive(history, accepted["freq"].tolist(), result.point.shape[1])
    return forecast_table(accepted, result, naive, model=model, run_id=run_id, created_at=created_at).to_pandas()


def seasonal_naive(history: Sequence[np.ndarray], freqs: Sequence[str], horizon: int) -> np.ndarray:
    """Each series' seasonal-naive forecast (one row per series): the last season of its history repeated, the
    history gap-filled as the engine and the backtest fill it (``pipeline.scoring.baseline_forecasts``); NaN
    for a series with less than a season of history. Series whose last season has no gap (nearly all) are
    done together, a season length at a time."""
    periods, lengths = _periods(history, freqs)
    naive = np.full((len(history), horizon), np.nan)
    for m in np.unique(periods):
        rows = np.flatnonzero((periods == m) & (lengths >= m))
        if not rows.size:
            continue
        last = np.stack([history[int(row)][-m:] for row in rows]).astype(np.float64)
        whole = np.isfinite(last).all(axis=1)
        naive[rows[whole]] = last[whole][:, np.arange(horizon) % m]
        for row in rows[~whole].tolist():
            values = np.asarray(history[row], dtype=np.float64)
            filled = fill_missing(values)
            if filled.size >= m and np.isfinite(values).any():
                naive[row] = filled[-m:][np.arange(horizon) % m]
    return naive


def seasonal_scales(history: Sequence[np.ndarray], freqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each series' season length and scale: the mean absolute seasonal difference of its history, gaps left
    out (``pipeline.scoring.seasonal_scale``), NaN without one such difference.

    Series of one season length and one number of points (most of a panel) are stacked and done as a matrix;
    the others together, as their points end to end less the differences across two series."""
    periods, lengths = _periods(history, freqs)
    scales = np.full(len(history), np.nan)
    keys = periods * (int(lengths.max(initial=0)) + 1) + lengths
    unique, counts = np.unique(keys, return_counts=True)
    ragged = []
    for key, count in zip(unique.tolist(), counts.tolist(), strict=True):
        rows = np.flatnonzero(keys == key)
        if count < _STACKED:
            ragged.append(rows)
            continue
        m = int(periods[rows[0]])
        if lengths[rows[0]] <= m:
            continue
        block = np.stack([history[int(row)] for row in rows]).astype(np.float64, copy=False)
        scales[rows] = _mean_finite(np.abs(block[:, m:] - block[:, :-m]))
    rest = np.concatenate(ragged) if ragged else np.empty(0, dtype=np.int64)
    for m in np.unique(periods[rest]).tolist():
        rows = rest[(periods[rest] == m) & (lengths[rest] > m)]
        if not rows.size:
            continue
        values = np.concatenate([np.asarray(history[int(row)], dtype=np.float64) for row in rows])
        sizes = lengths[rows]
        series = np.repeat(np.arange(rows.size), sizes)[:-m]
        position = np.arange(values.size - m) - np.repeat(np.cumsum(sizes) - sizes, sizes)[:-m]
        differences = np.abs(values[m:] - values[:-m])
        kept = (position < np.repeat(sizes - m, sizes)[:-m]) & np.isfinite(differences)
        total = np.bincount(series[kept], weights=differences[kept], minlength=rows.size)
        number = np.bincount(series[kept], minlength=rows.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            scales[rows] = np.where(number > 0, total / number, np.nan)
    return periods.astype(np.int32), scales


_STACKED = 16  # series of one season length and length from which they are done as a matrix


def _mean_finite(differences: np.ndarray) -> np.ndarray:
    """Row means of the finite values (NaN for a row without any)."""
    finite = np.isfinite(differences)
    if finite.all():  # no gap: most panels
        return differences.mean(axis=1)
    number = finite.sum(axis=1)
    total = np.where(finite, differences, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(number > 0, total / np.maximum(number, 1), np.nan)


def _periods(history: Sequence[np.ndarray], freqs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each series' season length (from its frequency) and number of points."""
    if len(history) != len(freqs):
        raise ValueError(f"{len(history)} histories for {len(freqs)} series")
    periods = pd.Series(list(freqs), dtype=object).map({f: season_length(f) for f in set(freqs)}).to_numpy(int)
    lengths = np.fromiter((len(values) for values in history), dtype=np.int64, count=len(history))
    return periods, lengths


def forecast_table(accepted: pd.DataFrame, result: ForecastResult, naive: np.ndarray, *, model: str, run_id: str,
                   created_at: datetime, keep: np.ndarray | None = None, steps: slice | None = None) -> pa.Table:
    """The forecast table (``FORECAST_SCHEMA``) of the series of ``accepted``: one row per series and step, step
    by step (every series' step 1 in ``accepted``'s order, then every series' step 2, ...), built column by
    column with tiles, repeats and transposes (no per-row Python), with ``naive`` (:func:`seasonal_naive`) beside
    the engine's forecasts. ``keep``, a mask over the series, leaves the others out; ``steps`` (a slice of the
    horizon's positions, 0-based) keeps only those steps.

    Step by step, because a later run's monitoring reads only the points of a few target dates of each earlier
    forecast: row groups of one step each (:class:`ForecastSink`) carry those dates in their statistics, and the
    others are skipped (series by series, every row group holds every date). Quantiles are sorted per row so
    that q10 <= ... <= q90 even where the model's heads cross.
    """
    n, horizon = result.point.shape
    keep = np.ones(n, dtype=bool) if keep is None else keep
    span = range(horizon)[steps or slice(None)]
    series, rows = np.flatnonzero(keep), int(keep.sum()) * len(span)
    cut = slice(span.start, span.stop)
    quantiles = np.sort(result.quantiles[keep, cut], axis=-1).transpose(1, 0, 2).reshape(-1, len(QUANTILE_COLUMNS))
    columns = {
        ID: pa.array(accepted[ID].to_numpy()[series], type=pa.string()).take(
            pa.array(np.tile(np.arange(len(series)), len(span)))),
        DS: pa.array(_future_stamps(accepted.iloc[series], horizon)[:, cut].T.reshape(-1), type=pa.timestamp("us")),
        "step": pa.array(np.repeat(np.arange(span.start + 1, span.stop + 1, dtype=np.int32), len(series))),
        "forecast": pa.array(result.point[keep, cut].T.reshape(-1).astype("float64")),
        **{name: pa.array(quantiles[:, k].astype("float64")) for k, name in enumerate(QUANTILE_COLUMNS)},
        "seasonal_naive": pa.array(naive[keep, cut].T.reshape(-1), from_pandas=True),
        "model": _repeated(model, pa.string(), rows),
        "cutoff": pa.array(np.tile(accepted["last_ds"].to_numpy()[series].astype("datetime64[us]"), len(span)),
                           type=pa.timestamp("us")),
        "run_id": _repeated(run_id, pa.string(), rows),
        "created_at": _repeated(pd.Timestamp(created_at).tz_convert("UTC"), pa.timestamp("us", tz="UTC"), rows),
    }
    return pa.table(columns, schema=FORECAST_SCHEMA)


def _repeated(value: object, kind: pa.DataType, rows: int) -> pa.Array:
    return pa.array([value], type=kind).take(pa.array(np.zeros(rows, dtype=np.int64)))


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


def mark_series_failed(status: pd.DataFrame, broken: set[str]) -> pd.DataFrame:
    """``status`` with the series of ``broken`` marked ``failed`` (their forecast was not finite)."""
    if not broken:
        return status
    status = status.copy()
    status.loc[status[ID].isin(broken), ["status", "reason"]] = [SeriesStatus.FAILED.value, FAILED_REASON]
    return status


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Accepted series that go to the engine together: their status rows, values and frequency codes."""

    accepted: pd.DataFrame
    values: list[np.ndarray]
    codes: list[int]


def chunk_size(model: TimesFmEngine) -> int:
    """Series per chunk: ``PROGRESS_CHUNK`` full engine batches, as :func:`run_engine` cuts them, so the
    forecasts are those of the in-memory path to the last bit."""
    return model.batch_size * PROGRESS_CHUNK


def engine_threads(configured: int | None, *, available: int) -> int:
    """torch threads for a CPU engine: ``configured`` (FORECAST_CPU_THREADS) if set, else one less than the
    ``available`` ones (torch's count: OMP_NUM_THREADS or the cores), never fewer than one.

    The free core is for the threads that read and write beside the engine, and whatever else the host runs
    (a Prefect server, other workers): torch's threads wait for each other at every operation, so one of them
    pre-empted stalls all. Measured on 2 cores beside other work, 100,000 series on the tiny model, the
    overlapped stage: 2 threads 38-63 s, 1 thread 9.5-10 s; on a quiet machine 1 thread was as fast. No
    forecast depends on the count: the engine's load puts MKL in its thread-count-reproducible mode
    (``forecast_model.reproducible_cpu_math``).
    """
    return configured if configured is not None else max(1, available - 1)


def read_chunks(regular_path: Path, accepted: pd.DataFrame, size: int) -> Iterator[Chunk]:
    """The ``accepted`` series (status rows) in chunks of ``size``, in ``accepted``'s order, with their values
    read from the regular table as the chunks are asked for.

    The table is read in record batches, so only a few chunks' rows are in memory at once when it holds the
    series in ``accepted``'s order (validation writes both sorted by id); any other order still works, at the
    cost of holding the series read ahead of their turn. A frame handed over for the file by the step that
    wrote it (:func:`pipeline.tables.hand_over`) is cut instead: no read at all.
    """
    frame = handed_over(regular_path)
    if frame is not None:
        try:
            values = series_values(frame, accepted[ID])
        except KeyError as missing:
            raise LookupError(f"Series {missing} is accepted but has no rows in {regular_path}.") from None
        for start in range(0, len(accepted), size):
            part = accepted.iloc[start:start + size].reset_index(drop=True)
            yield Chunk(part, values[start:start + size], [freq_code(f) for f in part["freq"]])
        return
    blocks = _series_blocks(regular_path)
    ahead: dict[str, np.ndarray] = {}
    for start in range(0, len(accepted), size):
        part = accepted.iloc[start:start + size].reset_index(drop=True)
        names = part[ID].tolist()
        for name in names:
            while name not in ahead:
                block = next(blocks, None)
                if block is None:
                    raise LookupError(f"Series {name!r} is accepted but has no rows in {regular_path}.")
                ahead[block[0]] = block[1]
        yield Chunk(part, [ahead.pop(name) for name in names], [freq_code(f) for f in part["freq"]])


def _series_blocks(path: Path, rows: int = 1 << 20) -> Iterator[tuple[str, np.ndarray]]:
    """``(id, values)`` of each run of rows with one id, in the file's order; a run may span record batches."""
    name: str | None = None
    parts: list[np.ndarray] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=[ID, Y]):
        ids = batch.column(ID).cast(pa.string())
        values = batch.column(Y).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        changed = pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, changed])
        for key, piece in zip(ids.take(pa.array(starts, type=pa.int64())).to_pylist(), np.split(values, starts[1:]),
                              strict=True):
            if key != name:
                if name is not None:
                    yield name, parts[0] if len(parts) == 1 else np.concatenate(parts)
                name, parts = key, []
            parts.append(piece)
    if name is not None:
        yield name, parts[0] if len(parts) == 1 else np.concatenate(parts)


class ForecastSink:
    """Builds the forecast table of the chunks it is given and appends it to one Parquet file of the forecast
    schema, in blocks of ``BLOCK_SERIES`` series (fewer where that would pass ``BLOCK_ROWS`` rows, at long
    horizons): each block is the table of its chunks' series, step by step (:func:`forecast_table`), with a row
    group per step (or per few steps, where a step has fewer than ``MIN_ROW_GROUP`` rows), so a reader of some
    target dates skips the others by their statistics and decodes little else. A block's table is built and
    written a few steps at a time (``WRITE_ROWS``): the block waits as the engine's float32 output, not as rows.

    Series whose forecast is not finite leave the table and are collected in ``failed``; ``rows`` counts
    what was written. With ``scales``, it also writes there each forecast series' season length and scale
    (:func:`seasonal_scales`, ``SCALES_SCHEMA``): monitoring's, computed here where the histories are in memory.
    Use it as a context manager: the files are complete once it is closed.
    """

    BLOCK_SERIES = 1 << 16  # a step of a block is one row group of 65,536 rows
    BLOCK_ROWS = 1 << 21  # at most, about 100 MB of engine output waiting: fewer series at horizons past 32
    WRITE_ROWS = 1 << 19  # rows of a block's table built at a time: about 50 MB
    MIN_ROW_GROUP = 1 << 13

    def __init__(self, path: Path, *, model: str, run_id: str, created_at: datetime,
                 scales: Path | None = None) -> None:
        self.path, self.model, self.run_id, self.created_at = path, model, run_id, created_at
        self.scales_path = scales
        self.failed: set[str] = set()
        self.rows = 0
        self._scales: list[pa.Table] = []
        self._writer = pq.ParquetWriter(path, FORECAST_SCHEMA, **parquet_options(FORECAST_SCHEMA))
        self._block: list[tuple[pd.DataFrame, ForecastResult, np.ndarray, np.ndarray]] = []
        self._block_series = 0

    def __call__(self, chunk: Chunk, result: ForecastResult) -> None:
        finite = np.asarray(np.isfinite(result.point).all(axis=1) & np.isfinite(result.quantiles).all(axis=(1, 2)))
        if not finite.all():
            self.failed |= set(chunk.accepted[ID].to_numpy()[~finite])
        freqs = chunk.accepted["freq"].tolist()
        naive = seasonal_naive(chunk.values, freqs, result.point.shape[1])
        self._block.append((chunk.accepted, result, naive, finite))
        if self.scales_path is not None:
            periods, scales = seasonal_scales(chunk.values, freqs)
            self._scales.append(pa.table({ID: chunk.accepted[ID].to_numpy()[finite], "season_length": periods[finite],
                                          "scale": scales[finite]}, schema=SCALES_SCHEMA))
        self._block_series += int(finite.sum())
        if self._block_series >= min(self.BLOCK_SERIES, self.BLOCK_ROWS // max(result.point.shape[1], 1)):
            self._flush()

    def _flush(self) -> None:
        if not self._block:
            return
        accepted = pd.concat([part[0] for part in self._block], ignore_index=True)
        result = ForecastResult(*(np.concatenate([getattr(part[1], name) for part in self._block])
                                  for name in ("point", "mean", "quantiles")))
        naive = np.concatenate([part[2] for part in self._block])
        keep = np.concatenate([part[3] for part in self._block])
        self._block, self._block_series = [], 0
        series, horizon = int(keep.sum()), result.point.shape[1]
        if not series:
            return
        per_write = max(1, self.WRITE_ROWS // series)
        for first in range(0, horizon, per_write):
            table = forecast_table(accepted, result, naive, model=self.model, run_id=self.run_id,
                                   created_at=self.created_at, keep=keep, steps=slice(first, first + per_write))
            self._writer.write_table(table, row_group_size=max(series, self.MIN_ROW_GROUP))
            self.rows += table.num_rows

    def __enter__(self) -> ForecastSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            if kind is None:
                self._flush()
                if self.scales_path is not None:
                    scales = pa.concat_tables([SCALES_SCHEMA.empty_table(), *self._scales])
                    pq.write_table(scales, self.scales_path, **parquet_options(SCALES_SCHEMA))
        finally:
            self._writer.close()


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
