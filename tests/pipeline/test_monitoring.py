"""Monitoring on hand-made Parquet files: scales, seasonal-naive values and revisions against numpy."""

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
from pipeline.contracts import FORECAST_SCHEMA, INPUT_SCHEMA, PENDING_SCHEMA, QUANTILE_COLUMNS, STATUS_SCHEMA
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


def status(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"unique_id": s, "status": "ok", "reason": None, "n_obs": 1, "first_ds": pd.Timestamp(0),
                          "last_ds": pd.Timestamp(0), "freq": f, "missing_fraction": 0.0,
                          "unseen_covariate_levels": None} for s, f in rows])


def forecasts(series: str, stamps: pd.DatetimeIndex, points: list[float], cutoff: pd.Timestamp, run_id: str,
              spread: float = 1.0) -> pd.DataFrame:
    frame = pd.DataFrame({"unique_id": series, "ds": stamps.astype("datetime64[us]"), "step": range(1, len(stamps) + 1),
                          "forecast": points, "model": "m", "cutoff": cutoff, "run_id": run_id,
                          "created_at": pd.Timestamp("2026-01-01", tz="UTC")})
    for k, q in enumerate(QUANTILE_COLUMNS):
        frame[q] = frame["forecast"] + (k - 4) * spread
    frame["step"] = frame["step"].astype("int32")
    return frame


def seasonal_scale(values: np.ndarray, m: int) -> float:
    return float(np.nanmean(np.abs(values[m:] - values[:-m])))


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
    # The earlier run's forecast of q from the 10th quarter on: 9 steps, so step 9 reaches 3 seasons back.
    write(pd.concat([forecasts("q", QUARTERS[10:19], [50.0] * 9, QUARTERS[9], "early"),
                     forecasts("d", DAILY[20:23], [10.0, 11.0, 12.0], DAILY[19], "early")]), FORECAST_SCHEMA,
          partition_dir(root, "forecasts", "j", earlier.isoformat()) / "data.parquet")
    staging = tmp_path / "staging"
    now = write(pd.concat([forecasts("d", DAILY[21:24], [10.5, 13.0, 12.0], DAILY[20], "now", spread=2.0),
                           forecasts("n", DAILY[21:22], [1.0], DAILY[20], "now")]), FORECAST_SCHEMA,
                staging / "forecasts.parquet")
    st = write(status([("d", "D"), ("q", "QS-JAN")]), STATUS_SCHEMA, staging / "series_status.parquet")
    inputs = MonitorInputs(output_root=root, job="j", as_of=date(2026, 1, 22), run_id="now", forecasts=now,
                           status=st, actuals=actuals, staging=staging, revision_threshold=0.1, lookback_runs=5)
    return {"inputs": inputs, "daily": daily, "quarterly": quarterly}


def test_scales_seasonal_naive_and_scores_match_numpy(job: dict[str, object]) -> None:
    inputs, daily, quarterly = job["inputs"], job["daily"], job["quarterly"]
    assert isinstance(inputs, MonitorInputs) and isinstance(daily, np.ndarray) and isinstance(quarterly, np.ndarray)
    summary = monitor_job(inputs)
    assert summary.tables == ["revisions", "realized_accuracy"]
    scored = pd.read_parquet(inputs.staging / "realized_accuracy.parquet").set_index(["unique_id", "step"])
    # Every step of both earlier forecasts has an actual (the gaps of d are elsewhere).
    assert sorted(scored.index) == [("d", 1), ("d", 2), ("d", 3), *[("q", h) for h in range(1, 10)]]
    q_scale, d_scale = seasonal_scale(quarterly, 4), seasonal_scale(daily, 7)
    for h in range(1, 10):
        row = scored.loc[("q", h)]
        target = 9 + h
        naive = quarterly[target - 4 * int(np.ceil(h / 4))]
        assert row.seasonal_naive == pytest.approx(naive), f"step {h} repeats the last season before the cutoff"
        assert row.y == pytest.approx(quarterly[target])
        assert row.scaled_error == pytest.approx(abs(quarterly[target] - 50.0) / q_scale)
        assert row.sn_scaled_error == pytest.approx(abs(quarterly[target] - naive) / q_scale)
        levels = np.arange(1, 10) / 10
        error = quarterly[target] - (50.0 + np.arange(-4, 5))
        assert row.quantile_loss == pytest.approx(np.mean(np.maximum(levels * error, (levels - 1) * error)))
        assert row.season_length == 4
    assert scored.loc[("d", 1)].scale == pytest.approx(d_scale), "the gaps are left out of the scale"
    # Day 20's naive value is day 13 (20 - 7); day 22's is day 15; the missing day 12 would have served day 19.
    assert scored.loc[("d", 1)].seasonal_naive == pytest.approx(daily[13])
    assert scored.loc[("d", 3)].seasonal_naive == pytest.approx(daily[15])
    assert summary.points_scored == 12 and summary.forecast_runs_scored == 1


def test_a_missing_history_point_leaves_the_seasonal_naive_empty(job: dict[str, object], tmp_path: Path) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    daily = np.asarray(job["daily"]).copy()
    daily[14] = np.nan  # the seasonal-naive value of day 21 (step 2)
    write(history("d", DAILY, daily), INPUT_SCHEMA, inputs.actuals[0])
    monitor_job(inputs)
    scored = pd.read_parquet(inputs.staging / "realized_accuracy.parquet").set_index(["unique_id", "step"])
    assert pd.isna(scored.loc[("d", 2)].seasonal_naive) and pd.isna(scored.loc[("d", 2)].sn_abs_error)
    assert scored.loc[("d", 2)].abs_error == pytest.approx(abs(daily[21] - 11.0)), "TimesFM's point still scored"


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


def test_points_other_runs_scored_are_left_to_them(job: dict[str, object]) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    monitor_job(inputs)
    staged = pd.read_parquet(inputs.staging / "realized_accuracy.parquet")
    other = partition_dir(inputs.output_root, "realized_accuracy", "j", "2026-01-21") / "data.parquet"
    other.parent.mkdir(parents=True)
    staged[staged["unique_id"] == "q"].to_parquet(other)  # a run of 21 January scored q already
    again = monitor_job(inputs)
    assert again.points_scored == 3, "only d's points are this run's"
    assert set(pd.read_parquet(inputs.staging / "realized_accuracy.parquet")["unique_id"]) == {"d"}


def test_first_run_stages_nothing(job: dict[str, object], tmp_path: Path) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)
    empty = MonitorInputs(**{**inputs.__dict__, "output_root": tmp_path / "empty"})
    summary = monitor_job(empty)
    assert summary.tables == [] and summary.previous_as_of is None and summary.metrics()["series_compared"] == 0


def test_published_partitions_only_dates(tmp_path: Path) -> None:
    for name in ("as_of=2026-01-02", "as_of=2026-01-01", "as_of=latest", "as_of=2026-13-01"):
        (tmp_path / "forecasts" / "job=j" / name).mkdir(parents=True)
        (tmp_path / "forecasts" / "job=j" / name / "data.parquet").write_bytes(b"")
    assert [day for day, _ in published_partitions(tmp_path, "forecasts", "j")] == [date(2026, 1, 1),
                                                                                      date(2026, 1, 2)]


def test_monitoring_that_runs_too_long_is_stopped(job: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = job["inputs"]
    assert isinstance(inputs, MonitorInputs)

    def endless(con: duckdb.DuckDBPyConnection, actuals: list[Path]) -> None:  # minutes of work, at least
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
    manifest = partition_dir(root, "runs", "j", "2026-01-21") / "batch-forecast.parquet"
    write(pd.DataFrame({"monitoring": [json.dumps({"actuals_through": str(DAILY[29]), "points_scored": 0})],
                        "created_at": [pd.Timestamp("2026-01-21", tz="UTC")]}),
          pa.schema([("monitoring", pa.string()), ("created_at", pa.timestamp("us", tz="UTC"))]), manifest)
    # The forecast of 20 January ends before day 29, and its points are not pending: settled, not read again.
    summary = monitor_job(inputs)
    scored = pd.read_parquet(inputs.staging / "realized_accuracy.parquet").set_index(["unique_id", "ds"])
    assert sorted(scored.index) == [("d", DAILY[22]), ("d", DAILY[23]), ("d", DAILY[24]), ("q", QUARTERS[18])]
    assert scored.loc[("q", QUARTERS[18])].y == pytest.approx(quarterly[18]), "the pending point, scored"
    assert scored.loc[("d", DAILY[24])].abs_error == pytest.approx(abs(daily[24] - 3.0))
    assert summary.points_scored == 4 and "monitor_pending" not in summary.tables, "nothing left pending"
    manifest.unlink()  # without the state, every point of the lookback not in another run's partition
    assert monitor_job(inputs).points_scored == 3 + 9 + 3, "20 January's d and q points, and 21 January's d"
