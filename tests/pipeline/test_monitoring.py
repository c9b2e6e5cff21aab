"""Monitoring on hand-made Parquet files: realized accuracy and revisions against numpy."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline.monitoring
from pipeline.contracts import FORECAST_SCHEMA, INPUT_SCHEMA, PENDING_SCHEMA, QUANTILE_COLUMNS, SCALES_SCHEMA
from pipeline.forecasting import seasonal_scales
from pipeline.monitoring import MonitoringTimeout, MonitorInputs, monitor_job, published_partitions
from pipeline.publish import partition_dir

DAILY = pd.date_range("2026-01-01", periods=30, freq="D")
QUARTERS = pd.date_range("2020-01-01", periods=20, freq="QS")


def write(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False), path)
    return path


def history(series: str, stamps: pd.DatetimeIndex, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": series, "ds": stamps.astype("datetime64[us]"), "y": values})


def forecasts(series: str, stamps: pd.DatetimeIndex, points: list[float], cutoff: pd.Timestamp, run_id: str,
              spread: float = 1.0, naive: list[float] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"unique_id": series, "ds": stamps.astype("datetime64[us]"), "step": range(1, len(stamps) + 1),
                          "forecast": points, "model": "m", "cutoff": cutoff, "run_id": run_id,
                          "seasonal_naive": naive if naive is not None else [p - 1.0 for p in points],
                          "created_at": pd.Timestamp("2026-01-01", tz="UTC")})
    for k, q in enumerate(QUANTILE_COLUMNS):
        frame[q] = frame["forecast"] + (k - 4) * spread
    frame["step"] = frame["step"].astype("int32")
    return frame


def seasonal_scale(values: np.ndarray, m: int) -> float:
    return float(np.nanmean(np.abs(values[m:] - values[:-m])))


Q_NAIVE = [40.0, 41.0, 42.0, 43.0, 44.0, 45.0, 46.0, 47.0, np.nan]  # the earlier run's seasonal naive of q


@pytest.fixture
def job(tmp_path: Path) -> dict[str, object]:
    """Two series in two files (as two shards stage them): d daily with a gap, q quarterly."""
    rng = np.random.default_rng(0)
    daily, quarterly = rng.normal(10, 3, len(DAILY)), rng.normal(50, 9, len(QUARTERS))
    daily[[5, 12, 27]] = np.nan
    actuals = [write(history("d", DAILY, daily), INPUT_SCHEMA, tmp_path / "s0" / "regular.parquet"),
               write(history("q", QUARTERS, quarterly), INPUT_SCHEMA, tmp_path / "s1" / "regular.parquet")]
    root = tmp_path / "out"
    earlier = date(2026, 1, 20)
    # The earlier run's forecast of q from the 10th quarter on (9 steps), and of d from day 20 (3 steps).
    write(pd.concat([forecasts("q", QUARTERS[10:19], [50.0] * 9, QUARTERS[9], "early", naive=Q_NAIVE),
                     forecasts("d", DAILY[20:23], [10.0, 11.0, 12.0], DAILY[19], "early")]), FORECAST_SCHEMA,
          partition_dir(root, "forecasts", "j", earlier.isoformat()) / "data.parquet")
    staging = tmp_path / "staging"
    now = write(pd.concat([forecasts("d", DAILY[21:24], [10.5, 13.0, 12.0], DAILY[20], "now", spread=2.0),
                           forecasts("n", DAILY[21:22], [1.0], DAILY[20], "now")]), FORECAST_SCHEMA,
                staging / "forecasts.parquet")
    # As the forecast stage stages them, for the series it forecast (here d and q: n is too short for a season).
    periods, values = seasonal_scales([daily, quarterly], ["D", "QS-JAN"])
    scales = write(pd.DataFrame({"unique_id": ["d", "q"], "season_length": periods, "scale": values}), SCALES_SCHEMA,
                   staging / "series_scales.parquet")
    inputs = MonitorInputs(output_root=root, job="j", as_of=date(2026, 1, 22), run_id="now", forecasts=now,
                           scales=[scales], actuals=actuals, staging=staging, revision_threshold=0.1, lookback_runs=5)
    return {"inputs": inputs, "daily": daily, "quarterly": quarterly}


def point(y: float, forecast: float, naive: float, scale: float, spread: float = 1.0) -> dict[str, float]:
    """One scored point's contributions to the sums, from the formulas (numpy)."""
    levels = np.arange(1, 10) / 10
    error = y - (forecast + np.arange(-4, 5) * spread)
    has_naive = not np.isnan(naive)
    return {"n_points": 1, "sum_abs_error": abs(y - forecast), "sum_squared_error": (y - forecast) ** 2,
            "sum_smape": abs(y - forecast) / (abs(y) + abs(forecast)), "n_scaled": 1,
            "sum_scaled_error": abs(y - forecast) / scale,
            "sum_quantile_loss": float(np.mean(np.maximum(levels * error, (levels - 1) * error))),
            "sum_abs_y": abs(y), "n_covered": int(forecast - 4 * spread <= y <= forecast + 4 * spread),
            "n_sn": int(has_naive), "sum_sn_abs_error": abs(y - naive) if has_naive else 0.0,
            "sum_sn_squared_error": (y - naive) ** 2 if has_naive else 0.0,
            "sum_sn_smape": abs(y - naive) / (abs(y) + abs(naive)) if has_naive else 0.0,
            "n_sn_scaled": int(has_naive), "sum_sn_scaled_error": abs(y - naive) / scale if has_naive else 0.0,
            "sum_paired_scaled_error": abs(y - forecast) / scale if has_naive else 0.0}


def total(points: list[dict[str, float]]) -> dict[str, float]:
    return {name: sum(p[name] for p in points) for name in points[0]}


def assert_sums(row: pd.Series, expected: dict[str, float], where: str) -> None:
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), f"{name} of {where}"


def test_scores_sum_per_forecast_run_and_step_and_per_series_as_numpy(job: dict[str, object]) -> None:
    inputs, daily, quarterly = job["inputs"], job["daily"], job["quarterly"]
    assert isinstance(inputs, MonitorInputs) and isinstance(daily, np.ndarray) and isinstance(quarterly, np.ndarray)
    summary = monitor_job(inputs)
    assert summary.tables == ["revisions", "realized_accuracy", "realized_accuracy_by_series"]
    q_scale, d_scale = seasonal_scale(quarterly, 4), seasonal_scale(daily, 7)
    q = {h: point(quarterly[9 + h], 50.0, Q_NAIVE[h - 1], q_scale) for h in range(1, 10)}
    d = {h: point(daily[19 + h], 9.0 + h, 8.0 + h, d_scale) for h in range(1, 4)}  # the gaps of d are elsewhere
    cells = pd.read_parquet(inputs.staging / "realized_accuracy.parquet").set_index("step")
    assert cells.index.tolist() == list(range(1, 10)) and (cells["forecast_as_of"] == date(2026, 1, 20)).all()
    for h in range(1, 10):
        assert_sums(cells.loc[h], total([q[h], *([d[h]] if h in d else [])]), f"step {h}")
    assert cells.loc[9, "n_sn"] == 0, "q's step-9 seasonal naive is empty: TimesFM's point still counts"
    assert (cells["forecast_run_id"] == "early").all() and (cells["run_id"] == "now").all()
    assert cells.loc[2, "first_ds"] == QUARTERS[11] and cells.loc[2, "last_ds"] == DAILY[21], "q's and d's dates"
    by_series = pd.read_parquet(inputs.staging / "realized_accuracy_by_series.parquet").set_index("unique_id")
    assert by_series.index.tolist() == ["d", "q"]
    assert_sums(by_series.loc["q"], total(list(q.values())), "q")
    assert_sums(by_series.loc["d"], total(list(d.values())), "d")
    assert by_series.loc["q", "scale"] == pytest.approx(q_scale) and by_series.loc["q", "season_length"] == 4
    assert by_series.loc["d", "scale"] == pytest.approx(d_scale), "the gaps are left out of the scale"
    assert summary.points_scored == 12 and summary.forecast_runs_scored == 1
    every = [*q.values(), *d.values()]
    assert summary.accuracy["mase"] == pytest.approx(np.mean([p["sum_scaled_error"] for p in every]), rel=1e-6)
    paired = [p for p in every if p["n_sn"]]
    skill = 1 - sum(p["sum_scaled_error"] for p in paired) / sum(p["sum_sn_scaled_error"] for p in paired)
    assert summary.accuracy["skill_vs_seasonal_naive"] == pytest.approx(skill, rel=1e-6)


def test_a_missing_actual_leaves_the_point_pending(job: dict[str, object]) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    daily = np.asarray(job["daily"]).copy()
    daily[21] = np.nan  # d's step-2 actual
    write(history("d", DAILY, daily), INPUT_SCHEMA, inputs.actuals[0])
    summary = monitor_job(inputs)
    assert summary.points_scored == 11 and "monitor_pending" in summary.tables
    pending = pd.read_parquet(inputs.staging / "monitor_pending.parquet")
    assert pending[["unique_id", "step"]].values.tolist() == [["d", 2]] and pending["seasonal_naive"].tolist() == [10.0]
    cells = pd.read_parquet(inputs.staging / "realized_accuracy.parquet").set_index("step")
    assert cells.loc[2, "n_points"] == 1, "q's point of step 2 only"


def test_revisions_per_series_against_the_previous_run(job: dict[str, object]) -> None:
    inputs, daily = job["inputs"], np.asarray(job["daily"])
    assert isinstance(inputs, MonitorInputs)
    summary = monitor_job(inputs)
    revisions = pd.read_parquet(inputs.staging / "revisions.parquet").set_index("unique_id")
    assert revisions["change"].to_dict() == {"d": "compared", "n": "new", "q": "gone"}
    d = revisions.loc["d"]
    moves = np.array([10.5 - 11.0, 13.0 - 12.0])  # days 21 and 22, the dates both runs forecast
    assert d.n_dates == 2 and d.mean_abs_revision == pytest.approx(0.75)
    assert d.largest_revision == pytest.approx(1.0) and d.largest_revision_ds == DAILY[22]
    assert d.scaled_revision == pytest.approx(np.mean(np.abs(moves)) / seasonal_scale(daily, 7))
    assert d.mean_width_change == pytest.approx(8.0), "q10-q90: 8 * spread, spread 2 now and 1 before"
    assert bool(d.revised) == (d.scaled_revision > 0.1)
    assert d.previous_as_of == date(2026, 1, 20) and d.previous_run_id == "early"
    assert (summary.series_compared, summary.series_new, summary.series_gone) == (1, 1, 1)
    assert summary.most_revised[0]["unique_id"] == "d"


def record(root: Path, day: str, **monitoring: object) -> Path:
    """A run manifest of ``day`` with its monitoring record (what monitoring reads of it)."""
    path = partition_dir(root, "runs", "j", day) / "batch-forecast.parquet"
    write(pd.DataFrame({"monitoring": [json.dumps(monitoring)], "created_at": [pd.Timestamp(day, tz="UTC")]}),
          pa.schema([("monitoring", pa.string()), ("created_at", pa.timestamp("us", tz="UTC"))]), path)
    return path


def test_a_rerun_followed_by_runs_from_its_state_scores_what_it_scored_before(job: dict[str, object]) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    root = inputs.output_root
    # The run of 23 January continued this as_of's state, whose actuals reached quarter 14 and day 20.
    record(root, "2026-01-23", actuals_through=str(DAILY[29]), state_as_of="2026-01-22",
           scored_from=str(DAILY[21]))
    # This as_of's earlier run left d's day-21 point pending: the run of 23 January took it.
    pending = forecasts("d", DAILY[21:22], [11.0], DAILY[19], "early").rename(columns={"run_id": "forecast_run_id"})
    pending["forecast_as_of"], pending["step"] = date(2026, 1, 20), np.int32(2)
    write(pending, PENDING_SCHEMA, partition_dir(root, "monitor_pending", "j", "2026-01-22") / "data.parquet")
    summary = monitor_job(inputs)
    by_series = pd.read_parquet(inputs.staging / "realized_accuracy_by_series.parquet").set_index("unique_id")
    # Up to day 21 (so q to the 2026 quarters' start, all of it), less d's day 21: d's day 20 only.
    assert by_series["n_points"].to_dict() == {"d": 1, "q": 9}
    assert summary.actuals_through == DAILY[21] and summary.points_scored == 10
    kept = pd.read_parquet(inputs.staging / "monitor_pending.parquet")
    assert kept[["unique_id", "ds"]].values.tolist() == [["d", DAILY[21]]], "pending as before, for a re-run after"


def test_a_run_whose_points_a_later_run_scored_scores_nothing(job: dict[str, object]) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    # The run of 23 January continued the state of 21 January: this as_of (22 January) is new, or its run had
    # no monitoring; every point here is that run's.
    record(inputs.output_root, "2026-01-21", actuals_through=str(DAILY[19]))
    record(inputs.output_root, "2026-01-23", actuals_through=str(DAILY[29]), state_as_of="2026-01-21",
           scored_from=str(DAILY[19]))
    summary = monitor_job(inputs)
    assert summary.points_scored == 0 and summary.tables == ["revisions"]
    assert summary.actuals_through is None, "it leaves no state: a re-run of 23 January continues 21 January's"


def test_first_run_stages_nothing(job: dict[str, object], tmp_path: Path) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    empty = MonitorInputs(**{**inputs.__dict__, "output_root": tmp_path / "empty"})
    summary = monitor_job(empty)
    assert summary.tables == [] and summary.previous_as_of is None and summary.metrics()["series_compared"] == 0
    assert summary.actuals_through == DAILY[-1], "the next run continues from here"


def test_a_run_that_forecast_no_series_leaves_every_point_pending(job: dict[str, object]) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    summary = monitor_job(dataclasses.replace(inputs, scales=[]))
    assert summary.points_scored == 0 and summary.tables == ["revisions", "monitor_pending"]
    assert len(pd.read_parquet(inputs.staging / "monitor_pending.parquet")) == 12


def test_published_partitions_only_dates(tmp_path: Path) -> None:
    for name in ("as_of=2026-01-02", "as_of=2026-01-01", "as_of=latest", "as_of=2026-13-01"):
        (tmp_path / "forecasts" / "job=j" / name).mkdir(parents=True)
        (tmp_path / "forecasts" / "job=j" / name / "data.parquet").write_bytes(b"")
    assert [day for day, _ in published_partitions(tmp_path, "forecasts", "j")] == [date(2026, 1, 1),
                                                                                      date(2026, 1, 2)]


def test_monitoring_that_runs_too_long_is_stopped(job: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)

    def endless(con: duckdb.DuckDBPyConnection, scales: list[Path]) -> None:  # minutes of work, at least
        con.execute("SELECT sum(a.range * b.range) FROM range(1000000000) a, range(100000) b").fetchall()

    monkeypatch.setattr(pipeline.monitoring, "_scales", endless)
    with pytest.raises(MonitoringTimeout, match=r"longer than monitor.max_seconds \(0.5 s\).*lookback_runs"):
        monitor_job(dataclasses.replace(inputs, max_seconds=0.5))


def test_with_the_previous_runs_state_settled_forecasts_are_not_read(job: dict[str, object]) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    root, daily, quarterly = inputs.output_root, np.asarray(job["daily"]), np.asarray(job["quarterly"])
    # The run of 21 January: its forecast of d, its actuals up to day 29, and q's step-9 point still pending.
    write(forecasts("d", DAILY[22:25], [1.0, 2.0, 3.0], DAILY[21], "p"), FORECAST_SCHEMA,
          partition_dir(root, "forecasts", "j", "2026-01-21") / "data.parquet")
    pending = forecasts("q", QUARTERS[18:19], [50.0], QUARTERS[9], "early")
    pending = pending.rename(columns={"run_id": "forecast_run_id"})
    pending["forecast_as_of"], pending["step"] = date(2026, 1, 20), np.int32(9)
    write(pending, PENDING_SCHEMA, partition_dir(root, "monitor_pending", "j", "2026-01-21") / "data.parquet")
    manifest = record(root, "2026-01-21", actuals_through=str(DAILY[29]), points_scored=0)
    # The forecast of 20 January ends before day 29, and its points are not pending: settled, not read again.
    summary = monitor_job(inputs)
    cells = pd.read_parquet(inputs.staging / "realized_accuracy.parquet")
    assert sorted(zip(cells["forecast_as_of"], cells["step"], cells["n_points"], strict=True)) == [
        (date(2026, 1, 20), 9, 1), (date(2026, 1, 21), 1, 1), (date(2026, 1, 21), 2, 1), (date(2026, 1, 21), 3, 1)]
    by_series = pd.read_parquet(inputs.staging / "realized_accuracy_by_series.parquet").set_index("unique_id")
    assert by_series.loc["q", "sum_abs_error"] == pytest.approx(abs(quarterly[18] - 50.0)), "the pending point"
    assert by_series.loc["d", "sum_abs_error"] == pytest.approx(sum(abs(daily[22 + k] - (1.0 + k)) for k in range(3)))
    assert summary.points_scored == 4 and "monitor_pending" not in summary.tables, "nothing left pending"
    assert summary.state_as_of == date(2026, 1, 21) and summary.scored_from == DAILY[29]
    manifest.unlink()  # without the state, every point of the lookback up to the input's end
    assert monitor_job(inputs).points_scored == 3 + 9 + 3, "20 January's d and q points, and 21 January's d"


def sink_file(path: Path, series: list[str], cutoffs: list[str], points: np.ndarray, run_id: str) -> Path:
    """A forecasts file as the forecast stage writes it (ForecastSink: blocks of series, step by step)."""
    from forecast_model import ForecastResult
    from pipeline.forecasting import Chunk, ForecastSink

    accepted = pd.DataFrame({"unique_id": series, "freq": "D", "last_ds": pd.to_datetime(cutoffs)})
    quantiles = points[:, :, None] + (np.arange(9) - 4).astype(points.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ForecastSink(path, model="m", run_id=run_id, created_at=pd.Timestamp("2026-01-01", tz="UTC")) as sink:
        for start in range(0, len(series), 2):  # chunks of 2 series
            rows = slice(start, start + 2)
            sink(Chunk(accepted.iloc[rows].reset_index(drop=True), [np.ones(20)] * len(series[rows]), []),
                 ForecastResult(points[rows], points[rows], quantiles[rows]))
    return path


def test_the_largest_revision_is_one_row_the_first_of_equals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Revisions of +1 and -1 (as large) on two dates: the largest is reported with its own date, the first."""
    from pipeline.forecasting import ForecastSink

    monkeypatch.setattr(ForecastSink, "BLOCK_SERIES", 3)  # blocks of 3 or 4 series (chunks of 2)
    monkeypatch.setattr(ForecastSink, "MIN_ROW_GROUP", 1)
    ids = [f"s{k}" for k in range(5)]
    old = np.arange(20, dtype=np.float32).reshape(5, 4)
    new = np.hstack([old[:, 1:], np.full((5, 1), 9.0, np.float32)])  # a day later: days 22-25 for 21-24
    new[:, :3] += np.array([0.5, -1.0, 1.0], np.float32)  # +0.5 on day 22, -1 on day 23, +1 on day 24
    root = tmp_path / "out"
    sink_file(partition_dir(root, "forecasts", "j", "2026-01-20") / "data.parquet", ids, ["2026-01-20"] * 5, old,
              "early")
    now = sink_file(tmp_path / "now.parquet", ids, ["2026-01-21"] * 5, new, "now")
    actuals = write(history("s0", DAILY[:5], np.ones(5)), INPUT_SCHEMA, tmp_path / "regular.parquet")
    inputs = MonitorInputs(output_root=root, job="j", as_of=date(2026, 1, 22), run_id="now", forecasts=now, scales=[],
                           actuals=[actuals], staging=tmp_path, revision_threshold=0.1, lookback_runs=5)
    monitor_job(inputs)
    revisions = pd.read_parquet(tmp_path / "revisions.parquet")
    assert (revisions["n_dates"] == 3).all() and revisions["mean_abs_revision"].tolist() == pytest.approx([2.5 / 3] * 5)
    assert revisions["largest_revision"].tolist() == [-1.0] * 5
    assert (revisions["largest_revision_ds"] == pd.Timestamp("2026-01-23")).all()
