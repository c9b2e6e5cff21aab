"""Run manifests, checkpoint pinning, the BI catalog, and tracking against a real MLflow server."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.batch_forecast import batch_forecast
from forecast_model import CheckpointError, ResolvedCheckpoint
from pipeline.params import ModelParams, RunSummary
from pipeline.series_checks import SeriesChecks
from pipeline.sources import FileSource
from tasks.tracking import TrackingError
from tests.conftest import SAMPLE
from tests.mlflow_server import MlflowServer, mlflow_server

# Whole flow runs per test: the full suite runs them, ./setup.sh test-fast does not.
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def run(checkpoint: ResolvedCheckpoint, source: FileSource | None = None, **kwargs: object) -> RunSummary:
    model = kwargs.pop("model", ModelParams(checkpoint=str(checkpoint.weights.parent)))
    params = {"source": source or FileSource(path=str(SAMPLE)), "horizon": 4, "as_of": date(2026, 11, 26),
              "model": model, **kwargs}
    return batch_forecast(**params)


def catalog(workspace: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(workspace / "data" / "outputs" / "catalog.duckdb"), read_only=True)


def test_manifest_names_weights_data_and_versions(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    summary = run(tiny_checkpoint)
    with catalog(workspace) as con:
        row = con.execute("SELECT * FROM runs").df().iloc[0]
    assert row["run_id"] == summary.run_id and row["flow_name"] == "batch-forecast" and row["job"] == summary.job
    assert row["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.weights.read_bytes()).hexdigest()
    assert bool(row["random_weights"]) is True, "a run on the tiny random checkpoint says so"
    assert row["input_fingerprint"] == summary.input_fingerprint and len(row["input_fingerprint"]) == 64
    assert row["mlflow_run_id"] == summary.mlflow_run_id and row["tracking_status"] == "ok"
    versions, parameters, timings = (json.loads(row[c]) for c in ("versions", "parameters", "timings"))
    assert {"timesfm", "torch", "prefect", "timesfm-batch-forecast"} <= set(versions)
    assert parameters["horizon"] == 4 and parameters["source"] == f"file:{SAMPLE}"
    stages = ("load", "validate", "forecast", "tracking", "publish")
    assert {"prepare_model", *stages, "catalog", "total"} <= set(timings)
    assert sum(timings[s] for s in stages) <= timings["total"], "total spans the stages from load to publish"
    assert timings["total"] < sum(timings[s] for s in stages) + 5, "and little else"
    assert (row["device"], row["precision"]) == ("cpu", "fp32")


def test_fingerprint_follows_the_data(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    changed = pd.read_csv(SAMPLE)
    changed.loc[100, "y"] += 0.01
    path = workspace / "changed.csv"
    changed.to_csv(path, index=False)
    first = run(tiny_checkpoint, job="a").input_fingerprint
    assert run(tiny_checkpoint, job="b").input_fingerprint == first, "same data, same fingerprint"
    assert run(tiny_checkpoint, FileSource(path=str(path)), job="c").input_fingerprint != first


def test_pinned_checkpoint_mismatch_fails_before_inference(workspace: Path,
                                                           tiny_checkpoint: ResolvedCheckpoint) -> None:
    model = ModelParams(checkpoint=str(tiny_checkpoint.weights.parent), expected_sha256="0" * 64)
    with pytest.raises(CheckpointError, match="was pinned"):
        run(tiny_checkpoint, model=model)
    assert not (workspace / "data" / "outputs" / "forecasts").exists()
    good = hashlib.sha256(tiny_checkpoint.weights.read_bytes()).hexdigest()
    pinned = run(tiny_checkpoint, model=ModelParams(checkpoint=str(tiny_checkpoint.weights.parent),
                                                   expected_sha256=good))
    assert pinned.checkpoint_sha256 == good


def test_catalog_latest_and_dashboard_styles(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    mixed = pd.concat([pd.read_csv(SAMPLE), pd.DataFrame({"unique_id": "flat", "ds": pd.read_csv(SAMPLE)["ds"][:20],
                                                          "y": 1.0})])
    path = workspace / "macro.csv"
    mixed.to_csv(path, index=False)
    run(tiny_checkpoint, FileSource(path=str(path)), as_of=date(2026, 11, 25))
    latest = run(tiny_checkpoint, FileSource(path=str(path)), as_of=date(2026, 11, 26))
    with catalog(workspace) as con:
        assert con.execute("SELECT count(DISTINCT as_of) FROM forecasts").fetchone() == (2,)
        rows = con.execute("SELECT DISTINCT as_of, run_id FROM forecasts_latest").fetchall()
        assert rows == [(date(2026, 11, 26), latest.run_id)], rows
        status = dict(con.execute("SELECT unique_id, ai_forecast_status FROM forecasts_bigquery "
                              "WHERE as_of = DATE '2026-11-26'").fetchall())
        assert status["flat"] == "rejected: constant" and status["cpi"] == ""
        bigquery = con.execute("SELECT * FROM forecasts_bigquery WHERE unique_id = 'cpi' AND as_of = DATE '2026-11-26'"
                           ).df()
        assert len(bigquery) == 4 and (bigquery["confidence_level"] == 0.8).all()
        assert (bigquery["prediction_interval_lower_bound"] <= bigquery["prediction_interval_upper_bound"]).all()
        nixtla = con.execute("SELECT * FROM forecasts_nixtla LIMIT 1").df()
        assert {"TimesFM", "TimesFM-q-10", "TimesFM-q-90", "cutoff"} <= set(nixtla.columns)
        assert con.execute("SELECT count(*) FROM evaluations").fetchone() == (0,), "no backtest yet: empty, typed view"


@pytest.fixture
def tracking_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                    ) -> Iterator[MlflowServer]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


def test_real_tracking_server_up_then_down(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                           tracking_server: MlflowServer, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server.url)
    up = run(tiny_checkpoint, job="up")
    client = MlflowClient(tracking_server.url)
    assert client.get_run(up.mlflow_run_id).data.metrics["series_ok"] == 12
    assert {"sample.png", "_manifest.json", "data_docs"} <= {a.path for a in client.list_artifacts(up.mlflow_run_id)}

    tracking_server.stop()
    with caplog.at_level(logging.WARNING):
        down = run(tiny_checkpoint, job="down")
    assert down.tracking_status == "failed" and down.mlflow_run_id is None
    assert Path(down.outputs["forecasts"]).is_file(), "forecasts must be published while MLflow is down"
    with catalog(workspace) as con:
        error = con.execute("SELECT tracking_error FROM runs WHERE job = 'down'").fetchone()
    assert error and tracking_server.url in error[0]
    assert any("publishing without tracking" in r.getMessage() for r in caplog.records)

    before = sorted(p for p in (workspace / "data" / "outputs").rglob("*.parquet"))
    with pytest.raises(TrackingError, match="tracking_required is set"):
        run(tiny_checkpoint, job="required", tracking_required=True)
    assert sorted(p for p in (workspace / "data" / "outputs").rglob("*.parquet")) == before


def test_rejections_do_not_count_as_failures_in_manifest(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    frame = pd.concat([pd.read_csv(SAMPLE), pd.DataFrame({"unique_id": "empty", "ds": ["2001-01-01"], "y": [None]})])
    path = workspace / "m.csv"
    frame.to_csv(path, index=False)
    run(tiny_checkpoint, FileSource(path=str(path)), checks=SeriesChecks(max_rejected_fraction=0.5))
    with catalog(workspace) as con:
        row = con.execute("SELECT series_rejected, series_failed, rejected_by_reason FROM runs").fetchone()
    assert row is not None and row[:2] == (1, 0) and json.loads(row[2]) == {"all_missing": 1}
