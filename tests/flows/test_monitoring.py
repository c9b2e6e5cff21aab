"""Revisions and realized accuracy over consecutive runs of one job, under a real Prefect API: a forecaster of
known outputs, so every figure is checked against an independent computation (numpy, from the formula)."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import tasks.forecast
from flows.batch_forecast import batch_forecast
from flows.sharded_forecast import sharded_forecast
from forecast_model import ForecastResult, ResolvedCheckpoint
from pipeline.params import ModelParams, MonitorParams, RunSummary, Sharding
from pipeline.sources import FileSource
from tests.flows.test_batch_forecast import prefect_artifacts

pytestmark = pytest.mark.usefixtures("prefect_api")
START = pd.Timestamp("2026-01-01")
H, M = 3, 7  # horizon; the daily season
LEVELS = np.arange(1, 10) - 5  # q10..q90 = point + k * spread, k = -4..4
REALIZED = {"realized_accuracy": ["as_of", "forecast_as_of", "step"],
            "realized_accuracy_by_series": ["as_of", "unique_id"]}


class KnownForecaster:
    """The real (tiny) engine for everything but the numbers: point = last value + step, quantiles around it
    0.1 * |last| apart."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def forecast(self, series: list[np.ndarray], horizon: int, freq: Any = None,
                 context_len: Any = None) -> ForecastResult:
        last = np.array([s[~np.isnan(s)][-1] for s in series], dtype=np.float64)
        point = last[:, None] + np.arange(1, horizon + 1)[None, :]
        quantiles = point[:, :, None] + LEVELS[None, None, :] * 0.1 * np.abs(last)[:, None, None]
        return ForecastResult(point=point.astype(np.float32), mean=point.astype(np.float32),
                              quantiles=quantiles.astype(np.float32))


def value(series: str, t: int) -> float:
    return {"alpha": t + 3.0 * (t % 2), "beta": 2.0 * t, "gamma": 100.0 - t}[series]


def series_days(series: str, run: int) -> range:
    """Run k (1, 2, 3) sees days 0 .. 38 + k; gamma appears in run 2, from day 25."""
    return range(25 if series == "gamma" else 0, 39 + run)


def panel(workspace: Path, run: int) -> Path:
    """Run 2's input has an infinite value of beta on its last day: beta is rejected that run (and only that run)."""
    frames = []
    for series in ("alpha", "beta", "gamma"):
        if series == "gamma" and run == 1:
            continue
        days = list(series_days(series, run))
        values = [value(series, t) for t in days]
        if series == "beta" and run == 2:
            values[-1] = math.inf
        frames.append(pd.DataFrame({"unique_id": series, "ds": [START + timedelta(days=t) for t in days],
                                    "y": values}))
    path = workspace / f"panel-{run}.parquet"
    pd.concat(frames).to_parquet(path)
    return path


def as_of(run: int) -> date:
    return date(2026, 2, 9) + timedelta(days=run - 1)


def day(t: int) -> pd.Timestamp:
    return START + timedelta(days=t)


# The independent oracle: what each run saw and forecast, and what scoring it must give.
def accepted(run: int) -> list[str]:
    return [s for s in ("alpha", "beta", "gamma") if not (s == "gamma" and run == 1) and not (s == "beta" and run == 2)]


def scale(series: str, run: int) -> float:
    y = np.array([value(series, t) for t in series_days(series, run)])
    return float(np.mean(np.abs(y[M:] - y[:-M])))


def forecast(series: str, run: int) -> dict[int, tuple[int, float, float, float]]:
    """Target day -> (step, point, q10, q90) of the run's forecast of the series."""
    last_t = series_days(series, run)[-1]
    last = value(series, last_t)
    return {last_t + h: (h, last + h, last + h - 0.4 * abs(last), last + h + 0.4 * abs(last)) for h in range(1, H + 1)}


Point = tuple[str, int, int]  # series, forecast run, target day


def expected_points(scorer: int, scored_before: set[Point]) -> dict[Point, dict[str, Any]]:
    """(series, forecast run, target day) -> metrics, for what run ``scorer`` must score."""
    points = {}
    for run in range(1, scorer):
        for series in accepted(run):
            if series not in accepted(scorer):
                continue
            for t, (h, point, q10, q90) in forecast(series, run).items():
                if t not in series_days(series, scorer) or (series, run, t) in scored_before:
                    continue
                y = value(series, t)
                naive = value(series, t - M * math.ceil(h / M))
                quantiles = point + LEVELS * 0.1 * abs(value(series, series_days(series, run)[-1]))
                levels = np.arange(1, 10) / 10
                loss = np.mean(np.maximum(levels * (y - quantiles), (levels - 1) * (y - quantiles)))
                points[(series, run, t)] = {
                    "step": h, "y": y, "forecast": point, "seasonal_naive": naive, "abs_error": abs(y - point),
                    "scaled_error": abs(y - point) / scale(series, scorer),
                    "sn_scaled_error": abs(y - naive) / scale(series, scorer),
                    "quantile_loss": loss, "covered": q10 <= y <= q90}
    return points


def assert_sums(row: Any, points: list[dict[str, Any]], where: str) -> None:
    """A published row of sums against the oracle's points."""
    assert row.n_points == len(points), where
    for column, name in (("sum_abs_error", "abs_error"), ("sum_scaled_error", "scaled_error"),
                         ("sum_sn_scaled_error", "sn_scaled_error"), ("sum_quantile_loss", "quantile_loss"),
                         ("n_covered", "covered")):
        assert getattr(row, column) == pytest.approx(sum(p[name] for p in points), rel=1e-6), f"{column} of {where}"
    assert row.sum_abs_y == pytest.approx(sum(abs(p["y"]) for p in points)), where


def run_flow(flow: Any, workspace: Path, checkpoint: ResolvedCheckpoint, run: int, root: str,
             **extra: Any) -> RunSummary:
    return flow(source=FileSource(path=str(panel(workspace, run))), horizon=H, job="shop", as_of=as_of(run),
                model=ModelParams(checkpoint=str(checkpoint.weights.parent), device="cpu"), freq="D",
                checks={"max_rejected_fraction": 0.5}, output_root=str(workspace / root), **extra)


def read(root: Path, table: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{root}/{table}/**/*.parquet', hive_partitioning = true)").df()


@pytest.fixture
def known(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tasks.forecast.load_engine
    monkeypatch.setattr(tasks.forecast, "load_engine", lambda config: KnownForecaster(real(config)))


def test_consecutive_runs_score_and_compare_what_was_published(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                               known: None) -> None:
    first = run_flow(batch_forecast, workspace, tiny_checkpoint, 1, "out")
    assert first.monitoring["previous_as_of"] is None and first.monitoring["points_scored"] == 0
    second = run_flow(batch_forecast, workspace, tiny_checkpoint, 2, "out")
    assert second.series_rejected == 1, "beta's infinite value rejects it in run 2"
    third = run_flow(batch_forecast, workspace, tiny_checkpoint, 3, "out")
    root = workspace / "out"

    scored2 = expected_points(2, set())
    scored3 = expected_points(3, set(scored2))
    assert set(scored2) == {("alpha", 1, 40)}, "the oracle's own plan"
    assert set(scored3) == {("alpha", 1, 41), ("beta", 1, 40), ("beta", 1, 41), ("alpha", 2, 41), ("gamma", 2, 41)}
    for scorer, scored in ((2, scored2), (3, scored3)):
        cells = read(root, "realized_accuracy")
        cells = cells[cells["as_of"] == pd.Timestamp(as_of(scorer))]
        got = {((r.forecast_as_of - pd.Timestamp(as_of(1))).days + 1, r.step): r for r in cells.itertuples()}
        want = {(run, points["step"]) for (_, run, _), points in scored.items()}
        assert set(got) == want, f"run {scorer}: one row per forecast run and step it scored"
        for key, row in got.items():
            assert_sums(row, [p for (_, run, _), p in scored.items() if (run, p["step"]) == key], f"{scorer} {key}")
        series = read(root, "realized_accuracy_by_series")
        series = series[series["as_of"] == pd.Timestamp(as_of(scorer))].set_index("unique_id")
        assert set(series.index) == {name for name, _, _ in scored}
        for name, row in series.iterrows():
            assert_sums(row, [p for (s, _, _), p in scored.items() if s == name], f"{scorer} {name}")
            assert row.scale == pytest.approx(scale(name, scorer)) and row.season_length == M
    cells = read(root, "realized_accuracy")
    assert cells["n_points"].sum() == len(scored2) + len(scored3), "each point scored once, by the first run with it"
    assert (cells[cells["as_of"] == pd.Timestamp(as_of(3))]["run_id"] == third.run_id).all()

    revisions = read(root, "revisions").set_index(["as_of", "unique_id"])
    changes = revisions["change"].to_dict()
    assert {k: v for k, v in changes.items() if k[0] == pd.Timestamp(as_of(2))} == {
        (pd.Timestamp(as_of(2)), "alpha"): "compared", (pd.Timestamp(as_of(2)), "beta"): "gone",
        (pd.Timestamp(as_of(2)), "gamma"): "new"}
    for series, run in (("alpha", 2), ("alpha", 3), ("gamma", 3)):
        now, then = forecast(series, run), forecast(series, run - 1)
        common = sorted(set(now) & set(then))
        moves = np.array([now[t][1] - then[t][1] for t in common])
        widths = np.array([(now[t][3] - now[t][2]) - (then[t][3] - then[t][2]) for t in common])
        row = revisions.loc[(pd.Timestamp(as_of(run)), series)]
        assert (row.n_dates, row.change) == (len(common), "compared")
        assert row.mean_abs_revision == pytest.approx(np.mean(np.abs(moves)))
        assert row.scaled_revision == pytest.approx(np.mean(np.abs(moves)) / scale(series, run))
        assert row.mean_width_change == pytest.approx(np.mean(widths), abs=1e-4), "quantiles are float32"
        assert bool(row.revised) == (np.mean(np.abs(moves)) / scale(series, run) > 0.5)
    assert third.monitoring["series_compared"] == 2 and third.monitoring["series_new"] == 1, "beta is back: new"

    metrics = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}").get_run(third.mlflow_run_id).data.metrics
    every = list(scored3.values())  # the figures are of the points this run scored
    assert metrics["realized_points_scored"] == 5
    assert metrics["realized_mase"] == pytest.approx(np.mean([p["scaled_error"] for p in every]), rel=1e-5)
    assert metrics["realized_coverage_80"] == pytest.approx(np.mean([p["covered"] for p in every]), rel=1e-5)
    skill = 1 - sum(p["scaled_error"] for p in every) / sum(p["sn_scaled_error"] for p in every)
    assert metrics["realized_skill_vs_seasonal_naive"] == pytest.approx(skill, rel=1e-5)
    revised = sum(bool(revisions.loc[(pd.Timestamp(as_of(3)), s)].revised) for s in ("alpha", "gamma"))
    assert metrics["series_revised_share"] == pytest.approx(revised / 2)
    [(recorded, timings)] = duckdb.sql(f"SELECT monitoring, timings FROM read_parquet('{third.outputs['runs']}')"
                                       ).fetchall()
    assert json.loads(recorded)["points_scored"] == 5 and json.loads(recorded)["series_revised"] == revised
    assert "monitor" in json.loads(timings), "the stage's seconds are in the manifest"
    artifact = prefect_artifacts(third.run_id)["batch-forecast-shop-monitoring"].data
    assert f"**{revised} of 2 series revised**" in artifact and "**5 points scored**" in artifact

    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as con:
        by_step = dict(con.execute("SELECT step, n_points FROM accuracy_by_horizon WHERE job = 'shop'").fetchall())
        assert by_step == {1: 4, 2: 2}
        mae1 = con.execute("SELECT mae FROM accuracy_by_horizon WHERE step = 1").fetchone()
        steps1 = [p["abs_error"] for p in [*scored2.values(), *scored3.values()] if p["step"] == 1]
        assert mae1 is not None and mae1[0] == pytest.approx(np.mean(steps1))
        trend = dict(con.execute("SELECT forecast_as_of, n_points FROM accuracy_trend").fetchall())
        assert trend == {as_of(1): 4, as_of(2): 2}
        latest = con.execute("SELECT DISTINCT as_of FROM revisions_latest").fetchall()
        assert latest == [(as_of(3),)]
        by_series = dict(con.execute("SELECT unique_id, mase FROM accuracy_by_series WHERE job = 'shop'").fetchall())
        for name in ("alpha", "beta", "gamma"):
            errors = [p["scaled_error"] for (s, _, _), p in [*scored2.items(), *scored3.items()] if s == name]
            assert by_series[name] == pytest.approx(np.mean(errors), rel=1e-6), name


@pytest.mark.slow  # four to six flow runs: 10-22 s here
def test_rerun_of_an_old_as_of_replaces_its_scores(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                   known: None) -> None:
    for run in (1, 2, 3):
        run_flow(batch_forecast, workspace, tiny_checkpoint, run, "out")
    before = {table: read(workspace / "out", table).drop(columns=["run_id"]) for table in REALIZED}
    again = run_flow(batch_forecast, workspace, tiny_checkpoint, 2, "out")
    for table, keys in REALIZED.items():
        after = read(workspace / "out", table)
        assert (after[after["as_of"] == pd.Timestamp(as_of(2))]["run_id"] == again.run_id).all(), "its own partition"
        pd.testing.assert_frame_equal(after.drop(columns=["run_id"]).sort_values(keys, ignore_index=True),
                                      before[table].sort_values(keys, ignore_index=True))
    assert again.monitoring["points_scored"] == 1 and again.monitoring["previous_as_of"] == as_of(1).isoformat()


@pytest.mark.slow  # four to six flow runs: 10-22 s here
def test_sharded_runs_publish_the_same_monitoring_tables(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                         known: None) -> None:
    for run in (1, 2, 3):
        run_flow(batch_forecast, workspace, tiny_checkpoint, run, "plain")
        run_flow(sharded_forecast, workspace, tiny_checkpoint, run, "sharded", sharding=Sharding(shards=2))
    for table, keys in (("revisions", ["as_of", "unique_id"]), *REALIZED.items()):
        plain, sharded = (read(workspace / root, table).drop(columns=["run_id", "previous_run_id", "forecast_run_id"],
                                                             errors="ignore").sort_values(keys, ignore_index=True)
                          for root in ("plain", "sharded"))
        assert len(plain) > 0
        pd.testing.assert_frame_equal(sharded, plain, check_exact=False, rtol=1e-9)


def test_monitoring_that_fails_is_a_warning_and_disabled_is_nothing(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint, known: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.monitor

    run_flow(batch_forecast, workspace, tiny_checkpoint, 1, "out")

    def broken(inputs: object) -> None:
        raise OSError("disk unreadable")

    monkeypatch.setattr(tasks.monitor, "monitor_job", broken)
    second = run_flow(batch_forecast, workspace, tiny_checkpoint, 2, "out")
    assert Path(second.outputs["forecasts"]).is_file(), "the forecasts are published all the same"
    assert any("Monitoring (revisions, realized accuracy) failed" in w and "disk unreadable" in w
               for w in second.warnings), second.warnings
    assert "disk unreadable" in second.monitoring["warning"]
    assert not (workspace / "out" / "revisions").exists() and not (workspace / "out" / "realized_accuracy").exists()
    off = run_flow(batch_forecast, workspace, tiny_checkpoint, 3, "out", monitor=MonitorParams(enabled=False))
    assert off.monitoring == {"enabled": False} and not (workspace / "out" / "revisions").exists()
