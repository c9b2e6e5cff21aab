"""The anomaly-detection flow under a real Prefect API: exact flags from a forecaster of known quantiles,
the real engine once on the tiny checkpoint, bad input, and a re-run replacing its partition."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import tasks.detect
from flows.batch_detect_anomalies import batch_detect_anomalies
from forecast_model import ForecastResult, ResolvedCheckpoint
from pipeline.errors import InputDataError
from pipeline.params import ModelParams
from pipeline.sources import FileSource
from tests.conftest import SAMPLE
from tests.flows.test_batch_forecast import prefect_artifacts
from tests.pipeline.test_detection import laplace_result

pytestmark = pytest.mark.usefixtures("prefect_api")
DAY = date(2026, 11, 27)


class LastValueForecaster:
    """Laplace(last observed value, 1) at every step: the tail model's probabilities are then exact."""

    device = "cpu"

    def forecast(self, series: list[np.ndarray], horizon: int, freq: Any = None,
                 context_len: Any = None) -> ForecastResult:
        return laplace_result([float(s[~np.isnan(s)][-1]) for s in series], horizon)


def write_panel(path: Path) -> Path:
    stamps = pd.date_range("2026-10-01", periods=20, freq="D")
    a = np.full(20, 10.0)
    a[-3:] = [10.0, 15.0, np.nan]  # the window: as expected, a spike, a missing observation
    b = np.linspace(0, 1, 20)
    frame = pd.concat([pd.DataFrame({"unique_id": "a", "ds": stamps, "y": a}),
                       pd.DataFrame({"unique_id": "b", "ds": stamps, "y": b}),
                       pd.DataFrame({"unique_id": "c", "ds": stamps[-4:], "y": [1.0, 2.0, 3.0, 4.0]})])
    frame.to_parquet(path)
    return path


def catalog(workspace: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(workspace / "data" / "outputs" / "catalog.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_flags_what_the_forecast_did_not_expect(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.detect, "load_engine", lambda config: LastValueForecaster())
    source = FileSource(path=str(write_panel(workspace / "panel.parquet")))
    model = ModelParams(checkpoint=str(tiny_checkpoint.weights.parent))
    first = batch_detect_anomalies(source=source, window=3, model=model, as_of=DAY, job="meters",
                                   checks={"max_rejected_fraction": 0.5})
    assert (first.series_ok, first.series_rejected, first.points_scored, first.points_missing, first.anomalies) == \
        (2, 1, 5, 1, 1)
    flagged = catalog(workspace, "SELECT unique_id, ds, y, round(anomaly_probability, 6), is_anomaly "
                                 "FROM anomalies_latest WHERE is_anomaly")
    assert flagged == [("a", pd.Timestamp("2026-10-19").to_pydatetime(), 15.0, round(1 - np.exp(-5), 6), True)]
    assert catalog(workspace, "SELECT unique_id, reason FROM anomaly_status WHERE status <> 'ok'") == \
        [("c", "context_too_short")]
    [(parameters,)] = catalog(workspace, "SELECT parameters FROM runs WHERE flow_name = 'batch-detect-anomalies'")
    assert {k: json.loads(parameters)[k] for k in ("window", "scoring", "threshold", "horizon")} == \
        {"window": 3, "scoring": "block", "threshold": 0.95, "horizon": 3}, "the steps forecast, not a default"
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    metrics = client.get_run(first.mlflow_run_id).data.metrics
    assert (metrics["anomalies"], metrics["anomaly_rate"], metrics["threshold"]) == (1, 0.2, 0.95)
    logged = {a.path for a in client.list_artifacts(first.mlflow_run_id)}
    assert {"anomalies.png", "anomaly_status.parquet"} <= logged, logged
    artifacts = prefect_artifacts(first.run_id)
    assert artifacts["top-anomalies"].type == "table", artifacts
    top = json.loads(artifacts["top-anomalies"].data)
    assert top[0]["unique_id"] == "a" and top[0]["y"] == 15.0 and top[0]["is_anomaly"] is True, top[:2]
    assert "batch-detect-anomalies-meters-summary" in artifacts, "the run summary every flow makes"

    second = batch_detect_anomalies(source=source, window=3, model=model, as_of=DAY, job="meters",
                                    checks={"max_rejected_fraction": 0.5}, threshold=0.999)
    assert second.anomalies == 0, "1 - e^-5 = 0.9933 is below 0.999"
    assert catalog(workspace, "SELECT DISTINCT run_id FROM anomalies") == [(second.run_id,)], \
        "a re-run for the same job and as_of replaces the partition"


def test_bad_input_publishes_nothing_and_keeps_the_earlier_output(workspace: Path,
                                                                 tiny_checkpoint: ResolvedCheckpoint) -> None:
    model = ModelParams(checkpoint=str(tiny_checkpoint.weights.parent))
    good = batch_detect_anomalies(source=FileSource(path=str(SAMPLE)), model=model, as_of=DAY)
    assert good.points_scored == 12 * 4, "one season of quarters per series, the real engine"
    rows = catalog(workspace, "SELECT min(anomaly_probability), max(anomaly_probability), "
                              "bool_and(lower <= expected AND expected <= upper) FROM anomalies")
    assert 0 <= rows[0][0] <= rows[0][1] <= 1 and rows[0][2] is True, rows
    with pytest.raises(InputDataError, match="No series can be scored: 12 context_too_short"):
        batch_detect_anomalies(source=FileSource(path=str(SAMPLE)), model=model, as_of=DAY, window=10_000)
    assert catalog(workspace, "SELECT DISTINCT run_id FROM anomalies") == [(good.run_id,)], "the earlier output"
