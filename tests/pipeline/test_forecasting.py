"""The forecast table and failure marking, on a hand-made engine result."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast_model import ForecastResult
from pipeline.contracts import FORECAST_SCHEMA, QUANTILE_COLUMNS
from pipeline.forecasting import build_forecast_table, mark_series_failed, seasonal_naive, seasonal_scales
from pipeline.scoring import baseline_forecasts, seasonal_scale
from pipeline.tables import hand_over, handed_over, write_table

ACCEPTED = pd.DataFrame({"unique_id": ["a", "b"], "status": ["ok", "ok"], "reason": [None, None],
                         "last_ds": pd.to_datetime(["2024-04-01", "2024-06-01"]), "freq": ["MS", "QS"]})


# Monthly a (season 12) with a gap in its last season; quarterly b (season 4), complete.
HISTORY = [np.r_[np.arange(1.0, 25.0)[:-3], np.nan, 23.0, 24.0], np.arange(10.0, 30.0)]


def result(horizon: int = 3) -> ForecastResult:
    crossed = np.tile(np.arange(9, 0, -1, dtype=np.float32), (2, horizon, 1))  # q10 > ... > q90
    return ForecastResult(point=crossed[:, :, 4], mean=crossed[:, :, 4], quantiles=crossed)


def test_forecast_table_steps_timestamps_and_sorted_quantiles(tmp_path: Path) -> None:
    created = datetime(2026, 1, 2, tzinfo=timezone.utc)
    table = build_forecast_table(ACCEPTED, result(), history=HISTORY, model="m", run_id="r", created_at=created)
    a, b = table[table["unique_id"] == "a"], table[table["unique_id"] == "b"]
    assert a["ds"].tolist() == list(pd.date_range("2024-05-01", periods=3, freq="MS"))
    assert b["ds"].tolist() == list(pd.date_range("2024-09-01", periods=3, freq="QS"))
    assert a["step"].tolist() == [1, 2, 3]
    assert (np.diff(table[QUANTILE_COLUMNS].to_numpy(), axis=1) >= 0).all(), "quantiles must be non-decreasing"
    assert (a["cutoff"] == pd.Timestamp("2024-04-01")).all()
    written = write_table(table, FORECAST_SCHEMA, tmp_path / "f.parquet")
    assert pd.read_parquet(written)["created_at"].iloc[0] == pd.Timestamp(created)
    assert table["step"].tolist() == [1, 1, 2, 2, 3, 3], "step by step: every series' step 1 first"
    for row, series in enumerate(("a", "b")):  # the backtest's seasonal-naive baseline, from the same history
        _, expected = baseline_forecasts(HISTORY[row], 3, {"a": 12, "b": 4}[series])
        np.testing.assert_allclose(table.loc[table["unique_id"] == series, "seasonal_naive"], expected)


def test_seasonal_naive_repeats_the_last_season_as_the_backtest() -> None:
    rng = np.random.default_rng(4)
    history = [rng.normal(size=n) for n in (30, 30, 8, 5, 40)]
    history[1][-3] = np.nan  # a gap in the last season: filled as the engine fills it
    history[4][:] = np.nan  # nothing observed: no baseline
    freqs = ["D", "D", "W", "D", "D"]  # seasons 7, 7, 52 (longer than the series), 7 (longer too), 7
    naive = seasonal_naive(history, freqs, 10)
    for row in (0, 1):
        np.testing.assert_allclose(naive[row], baseline_forecasts(history[row], 10, 7)[1])
    assert np.isnan(naive[2:]).all(), "less than a season of history, or none observed: empty"
    with pytest.raises(ValueError, match="2 histories for 1 series"):
        seasonal_naive(history[:2], ["D"], 3)


def mark_failed(status: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference on a whole forecast table: series with a non-finite value anywhere fail and leave it."""
    values = table[["forecast", *QUANTILE_COLUMNS]].to_numpy()
    broken = set(table.loc[~np.isfinite(values).all(axis=1), "unique_id"])
    return mark_series_failed(status, broken), table[~table["unique_id"].isin(broken)].reset_index(drop=True)


def test_non_finite_forecasts_mark_the_series_failed() -> None:
    broken = result()
    broken.quantiles[1, 2, 3] = np.nan
    table = build_forecast_table(ACCEPTED, broken, history=HISTORY, model="m", run_id="r",
                                 created_at=datetime.now(timezone.utc))
    status, kept = mark_failed(ACCEPTED, table)
    assert set(kept["unique_id"]) == {"a"}
    assert status.set_index("unique_id").loc["b", ["status", "reason"]].tolist() == ["failed", "non_finite_forecast"]
    assert status.set_index("unique_id").loc["a", "status"] == "ok" and ACCEPTED["status"].eq("ok").all()
    assert mark_series_failed(ACCEPTED, set()) is ACCEPTED, "nothing failed: the status table as it was"


def test_engine_runs_in_chunks_when_progress_is_asked_with_the_same_forecasts(
        tiny_checkpoint, monkeypatch) -> None:
    import pipeline.forecasting as forecasting
    from forecast_model import EngineConfig, load_engine

    model = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu", batch_size=2))
    days = pd.date_range("2024-01-01", periods=40, freq="D")
    rng = np.random.default_rng(0)
    frame = pd.concat([pd.DataFrame({"unique_id": f"s{k}", "ds": days[k:], "y": rng.normal(size=40 - k).cumsum()})
                       for k in range(5)], ignore_index=True)
    accepted = pd.DataFrame({"unique_id": [f"s{k}" for k in range(5)], "freq": "D"})
    whole = forecasting.run_engine(model, frame, accepted, 6, 512)
    monkeypatch.setattr(forecasting, "PROGRESS_CHUNK", 1)  # chunks of one batch: 2, 2 and 1 series
    reports: list[tuple[int, int]] = []
    chunked = forecasting.run_engine(model, frame, accepted, 6, 512, lambda done, total: reports.append((done, total)))
    assert reports == [(2, 5), (4, 5), (5, 5)]
    # Chunks sort their own series by length, so s0 and s4 share a batch with other series than in one call:
    # float32 rounding may differ by an ulp of values up to ~30 (3.6e-6), not more.
    for name in ("point", "mean", "quantiles"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [object, "str"])
def test_series_values_are_each_series_block_in_the_order_asked(dtype: object) -> None:
    from pipeline.forecasting import series_values

    ids = ["a", "a", "a1", "b", "b", "b", "ab", "é"]  # shared prefixes, a non-ASCII id, unsorted blocks
    frame = pd.DataFrame({"unique_id": pd.Series(ids, dtype=dtype), "y": np.arange(len(ids), dtype="float64")})
    asked = pd.Series(["é", "b", "a", "ab", "a1"])
    values = series_values(frame, asked)
    expected = {name: group["y"].to_numpy() for name, group in frame.groupby("unique_id", sort=False)}
    assert [list(v) for v in values] == [list(expected[name]) for name in asked]
    assert [list(v) for v in series_values(frame.iloc[:1], pd.Series(["a"]))] == [[0.0]]
    assert series_values(frame.iloc[:0], pd.Series([], dtype=object)) == []


def write_regular(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("in_memory", [False, True], ids=["file", "handed-over"])
def test_read_chunks_gives_each_series_whole_in_the_order_asked_across_record_batches(tmp_path: Path,
                                                                                    monkeypatch, in_memory) -> None:
    import pipeline.forecasting as forecasting

    rng = np.random.default_rng(1)
    lengths = {"a": 5, "b": 1, "c": 9, "é": 4, "d": 7}
    frame = pd.concat([pd.DataFrame({"unique_id": k, "ds": pd.date_range("2024-01-01", periods=n, freq="D"),
                                     "y": rng.normal(size=n)}) for k, n in lengths.items()], ignore_index=True)
    frame.loc[3, "y"] = np.nan  # a gap of a regularised series
    path = write_regular(tmp_path / "regular.parquet", frame)
    blocks = forecasting._series_blocks
    monkeypatch.setattr(forecasting, "_series_blocks", lambda p: blocks(p, rows=3))  # series span batches
    asked = pd.DataFrame({"unique_id": ["d", "a", "é", "c", "b"], "freq": ["D", "W", "D", "MS", "h"]})
    if in_memory:
        hand_over(path, pd.read_parquet(path))
        monkeypatch.setattr(forecasting, "_series_blocks", None)  # the file is not read
    chunks = list(forecasting.read_chunks(path, asked, 2))
    assert handed_over(path) is None, "taken once"
    assert [c.accepted["unique_id"].tolist() for c in chunks] == [["d", "a"], ["é", "c"], ["b"]]
    assert [c.codes for c in chunks] == [[0, 1], [0, 1], [0]]
    got = {name: values for c in chunks for name, values in zip(c.accepted["unique_id"], c.values, strict=True)}
    for name, group in frame.groupby("unique_id"):
        np.testing.assert_array_equal(got[name], group["y"].to_numpy())  # NaN where it was missing
    if in_memory:
        hand_over(path, pd.read_parquet(path))
    with pytest.raises(LookupError, match="'zz' is accepted but has no rows"):
        list(forecasting.read_chunks(path, pd.DataFrame({"unique_id": ["zz"], "freq": ["D"]}), 2))


def test_seasonal_scales_are_the_backtests_scale_of_each_history() -> None:
    rng = np.random.default_rng(5)
    history = [rng.normal(size=n) for n in (30, 31, 8, 7, 60, 12)]
    history[1][[3, 10, 30]] = np.nan  # gaps: their differences are left out
    history[5][:] = np.nan
    freqs = ["D", "D", "W", "D", "MS", "D"]  # seasons 7, 7, 52 (longer), 7 (no pair), 12, 7 (nothing observed)
    periods, scales = seasonal_scales(history, freqs)
    assert periods.tolist() == [7, 7, 52, 7, 12, 7]
    for row, m in ((0, 7), (1, 7), (4, 12)):  # each alone and mixed with the others: the same value
        assert scales[row] == pytest.approx(seasonal_scale(history[row], m), rel=1e-12)
    assert np.isnan(scales[[2, 3, 5]]).all(), "no seasonal difference: no scale"


def test_forecast_sink_writes_what_the_whole_table_path_does(tmp_path: Path) -> None:
    from pipeline.forecasting import Chunk, ForecastSink

    created = datetime(2026, 1, 2, tzinfo=timezone.utc)
    broken = result()
    broken.quantiles[1, 2, 3] = np.inf
    table = build_forecast_table(ACCEPTED, broken, history=HISTORY, model="m", run_id="r", created_at=created)
    _, kept = mark_failed(ACCEPTED, table)
    whole = pd.read_parquet(write_table(kept, FORECAST_SCHEMA, tmp_path / "whole.parquet"))
    with ForecastSink(tmp_path / "sink.parquet", model="m", run_id="r", created_at=created,
                      scales=tmp_path / "scales.parquet") as sink:
        for row in range(2):  # one series per chunk
            part = ForecastResult(*(getattr(broken, n)[row:row + 1] for n in ("point", "mean", "quantiles")))
            sink(Chunk(ACCEPTED.iloc[row:row + 1].reset_index(drop=True), HISTORY[row:row + 1], []), part)
    pd.testing.assert_frame_equal(pd.read_parquet(sink.path), whole)
    assert sink.failed == {"b"} and sink.rows == len(whole) == 3
    scales = pd.read_parquet(tmp_path / "scales.parquet")
    assert scales["unique_id"].tolist() == ["a"], "the series forecast, not the failed one"
    assert scales["season_length"].tolist() == [12]
    assert scales["scale"].iloc[0] == pytest.approx(seasonal_scale(HISTORY[0], 12))
    with ForecastSink(tmp_path / "empty.parquet", model="m", run_id="r", created_at=created) as empty:
        pass
    assert pd.read_parquet(empty.path).columns.tolist() == FORECAST_SCHEMA.names and empty.rows == 0


def test_forecast_sink_writes_row_groups_of_a_step_so_readers_of_a_date_skip_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    from pipeline.forecasting import Chunk, ForecastSink

    monkeypatch.setattr(ForecastSink, "BLOCK_SERIES", 8)  # blocks of 8 series or more
    monkeypatch.setattr(ForecastSink, "WRITE_ROWS", 16)  # each block's table built two steps at a time
    monkeypatch.setattr(ForecastSink, "MIN_ROW_GROUP", 1)
    n, horizon = 20, 5
    accepted = pd.DataFrame({"unique_id": [f"s{k:02d}" for k in range(n)], "freq": "D",
                             "last_ds": pd.Timestamp("2026-03-01")})
    point = np.arange(n * horizon, dtype=np.float32).reshape(n, horizon)
    engine = ForecastResult(point, point, np.repeat(point[:, :, None], 9, axis=2))
    with ForecastSink(tmp_path / "f.parquet", model="m", run_id="r", created_at=datetime.now(timezone.utc)) as sink:
        for start in range(0, n, 4):  # chunks of 4 series: blocks of 8, 8 and the last 4
            rows = slice(start, start + 4)
            sink(Chunk(accepted.iloc[rows].reset_index(drop=True), [np.ones(10)] * 4, []),
                 ForecastResult(point[rows], point[rows], engine.quantiles[rows]))
    meta = pq.ParquetFile(sink.path).metadata
    ds = meta.schema.names.index("ds")
    spans = [(meta.row_group(g).column(ds).statistics.min, meta.row_group(g).column(ds).statistics.max,
              meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    assert [rows for *_, rows in spans] == [8] * 5 + [8] * 5 + [4] * 5, "a row group per block and step"
    assert all(low == high for low, high, _ in spans), "each holds one target date"
    table = pd.read_parquet(sink.path)
    assert table.sort_values(["unique_id", "step"])["forecast"].tolist() == point.reshape(-1).tolist()


@pytest.mark.parametrize(("overlap", "handed"), [(True, False), (False, False), (True, True)])
def test_streamed_forecasts_equal_the_in_memory_path_to_the_last_bit(tiny_checkpoint, tmp_path: Path,
                                                                     monkeypatch, overlap: bool, handed: bool) -> None:
    """The forecast stage streams chunks through the engine; its table is the one the in-memory path
    (`run_engine` in chunks, one table, one write) produced before, value for value."""
    import pipeline.forecasting as forecasting
    from forecast_model import EngineConfig, load_engine
    from pipeline.overlap import pipelined

    model = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu", batch_size=2))
    monkeypatch.setattr(forecasting, "PROGRESS_CHUNK", 1)  # chunks of 2 series: 4 chunks
    rng = np.random.default_rng(2)
    frame = pd.concat([pd.DataFrame({"unique_id": f"s{k}", "ds": pd.date_range("2024-01-01", periods=30 + 9 * k),
                                     "y": rng.normal(size=30 + 9 * k).cumsum()}) for k in range(7)], ignore_index=True)
    frame.loc[frame.index[::11], "y"] = np.nan
    accepted = pd.DataFrame({"unique_id": [f"s{k}" for k in range(7)], "freq": "D",
                             "last_ds": frame.groupby("unique_id")["ds"].max().to_numpy()})
    created = datetime(2026, 1, 2, tzinfo=timezone.utc)
    reference = forecasting.run_engine(model, frame, accepted, 5, 512, lambda done, total: None)
    history = forecasting.series_values(frame, accepted["unique_id"])
    expected = build_forecast_table(accepted, reference, history=history, model="m", run_id="r", created_at=created)
    path = write_regular(tmp_path / "regular.parquet", frame)
    if handed:
        hand_over(path, pd.read_parquet(path))
    with forecasting.ForecastSink(tmp_path / "out.parquet", model="m", run_id="r", created_at=created) as sink:
        seconds = pipelined(forecasting.read_chunks(path, accepted, forecasting.chunk_size(model)),
                            lambda c: model.forecast(c.values, 5, c.codes, 512), sink, overlap=overlap)
    pd.testing.assert_frame_equal(pd.read_parquet(sink.path), pd.read_parquet(
        write_table(expected, FORECAST_SCHEMA, tmp_path / "expected.parquet")), check_exact=True)
    assert seconds.compute > 0 and seconds.wall > 0


@pytest.mark.parametrize(("configured", "available", "expected"), [
    (None, 2, 1),  # a core for the reading and writing threads and the rest of the host
    (None, 16, 15),
    (None, 1, 1),  # never none
    (3, 16, 3),  # FORECAST_CPU_THREADS wins
    (4, 2, 4),
])
def test_engine_threads_leave_a_core_to_the_host(configured: int | None, available: int, expected: int) -> None:
    from pipeline.forecasting import engine_threads

    assert engine_threads(configured, available=available) == expected
