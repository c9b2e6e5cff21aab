"""The backtest flow on the real sample, under a real Prefect API."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
from mlflow.tracking import MlflowClient

from flows.batch_backtest import batch_backtest
from forecast_model import ResolvedCheckpoint
from pipeline.params import ModelParams
from pipeline.sources import FileSource
from tests.conftest import SAMPLE

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_backtest_writes_evaluations(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    summary = batch_backtest(source=FileSource(path=str(SAMPLE)), h=4, n_windows=3, as_of=date(2026, 11, 26),
                             model=ModelParams(checkpoint=str(tiny_checkpoint.weights.parent)))
    assert summary.series_ok == 12 and set(summary.overall) == {"TimesFM", "SeasonalNaive", "Naive"}
    assert Path(summary.outputs["evaluations"]).name == "data.parquet"
    with duckdb.connect(str(workspace / "data" / "outputs" / "catalog.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT unique_id, model, n_windows, n_points, mase, beats_seasonal_naive, "
                           "season_length FROM evaluations WHERE unique_id = 'cpi' ORDER BY model").fetchall()
        flows = con.execute("SELECT flow_name FROM runs").fetchall()
    assert [r[1] for r in rows] == ["Naive", "SeasonalNaive", "TimesFM"]
    assert all(r[2] == 3 and r[3] == 12 and r[6] == 4 for r in rows), rows
    assert rows[2][5] is not None and rows[0][5] is None, "the flag is set for TimesFM rows only"
    assert flows == [("batch-backtest",)]
    metrics = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}").get_run(summary.mlflow_run_id).data.metrics
    assert metrics["SeasonalNaive.mase"] == pytest.approx(summary.overall["SeasonalNaive"]["mase"])
    assert 0 <= metrics["share_beating_seasonal_naive"] <= 1


@pytest.mark.slow
def test_backtest_and_forecast_share_a_job_without_clobbering(workspace: Path,
                                                              tiny_checkpoint: ResolvedCheckpoint) -> None:
    from flows.batch_forecast import batch_forecast

    model = ModelParams(checkpoint=str(tiny_checkpoint.weights.parent))
    day = date(2026, 11, 26)
    batch_forecast(source=FileSource(path=str(SAMPLE)), horizon=4, as_of=day, model=model)
    batch_backtest(source=FileSource(path=str(SAMPLE)), h=4, n_windows=2, as_of=day, model=model)
    with duckdb.connect(str(workspace / "data" / "outputs" / "catalog.duckdb"), read_only=True) as con:
        assert sorted(con.execute("SELECT flow_name FROM runs").fetchall()) == [("batch-backtest",),
                                                                                 ("batch-forecast",)]
        assert con.execute("SELECT count(*) FROM forecasts").fetchone() == (48,)
