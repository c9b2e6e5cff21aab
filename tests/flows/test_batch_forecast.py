"""The whole flow under a real Prefect API, with the real TimesFM code path on a tiny checkpoint."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.batch_forecast import batch_forecast
from forecast_model import ResolvedCheckpoint
from pipeline.canonical import ColumnMapping
from pipeline.contracts import FORECAST_SCHEMA, QUANTILE_COLUMNS, STATUS_SCHEMA
from pipeline.errors import DataValidationError, InputDataError
from pipeline.params import ModelParams, RunSummary
from pipeline.series_checks import SeriesChecks
from pipeline.sources import FileSource
from tests.conftest import SAMPLE

pytestmark = pytest.mark.usefixtures("prefect_api")
AS_OF = date(2026, 11, 26)


def run(checkpoint: ResolvedCheckpoint, source: FileSource | None = None, **kwargs: object) -> RunSummary:
    model = ModelParams(checkpoint=str(checkpoint.weights.parent), device="cpu")
    params = {"source": source or FileSource(path=str(SAMPLE)), "horizon": 8, "model": model, "as_of": AS_OF,
              **kwargs}
    return batch_forecast(**params)


def outputs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_sample_forecast_end_to_end(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    summary = run(tiny_checkpoint)
    assert (summary.series_in, summary.series_ok, summary.series_rejected) == (12, 12, 0)
    assert summary.forecast_rows == 12 * 8 and summary.job == "us_macro_quarterly"
    root = workspace / "data" / "outputs"
    forecasts = duckdb.sql(f"""
        SELECT * FROM read_parquet('{root}/forecasts/**/*.parquet', hive_partitioning = true)
    """).df()
    assert len(forecasts) == 96 and set(forecasts["job"]) == {"us_macro_quarterly"}
    as_of = duckdb.sql(f"SELECT DISTINCT as_of, typeof(as_of) FROM read_parquet('{root}/forecasts/**/*.parquet', "
                       "hive_partitioning = true)").fetchall()
    assert as_of == [(AS_OF, "DATE")], f"as_of must come back as one DATE partition value, got {as_of}"
    assert forecasts.groupby("unique_id")["step"].apply(list).map(lambda s: s == list(range(1, 9))).all()
    cpi = forecasts[forecasts["unique_id"] == "cpi"].sort_values("step")
    assert cpi["cutoff"].iloc[0] == pd.Timestamp("2009-07-01")
    assert cpi["ds"].tolist() == list(pd.date_range("2009-10-01", periods=8, freq="QS"))
    assert (forecasts[QUANTILE_COLUMNS].diff(axis=1).iloc[:, 1:] >= 0).all().all(), "quantiles cross"
    assert (forecasts["run_id"] == summary.run_id).all()
    table = ds.dataset(root / "forecasts", format="parquet", partitioning="hive").to_table()
    assert table.schema.remove(table.schema.get_field_index("job")).remove(
        table.schema.get_field_index("as_of") - 1) == FORECAST_SCHEMA
    status = ds.dataset(root / "series_status", format="parquet", partitioning="hive").to_table()
    assert status.num_rows == 12 and set(status.column("status").to_pylist()) == {"ok"}
    assert status.select(STATUS_SCHEMA.names).schema == STATUS_SCHEMA
    assert not any((root / "_staging").iterdir()), "staging must be cleaned up"


def test_run_is_recorded_in_mlflow(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_UI_URL", "http://127.0.0.1:5000/")  # where `mlflow ui` would serve this store
    summary = run(tiny_checkpoint, horizon=4)
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    recorded = client.get_run(summary.mlflow_run_id)
    assert recorded.info.status == "FINISHED" and recorded.info.run_name == f"us_macro_quarterly/{summary.as_of}"
    assert {"prefect.flow_run_id": summary.run_id, "job": "us_macro_quarterly", "as_of": str(summary.as_of),
            "flow": "batch-forecast"}.items() <= recorded.data.tags.items()
    assert recorded.data.tags["prefect.flow_run_url"].startswith("http://127.0.0.1:"), "the test server's UI"
    assert recorded.data.tags["prefect.flow_run_url"].endswith(f"/flow-run/{summary.run_id}")
    assert recorded.data.params["horizon"] == "4" and recorded.data.params["job"] == "us_macro_quarterly"
    assert recorded.data.params["checkpoint_sha256"] == summary.checkpoint_sha256
    assert recorded.data.params["input_fingerprint"] == summary.input_fingerprint
    (dataset,) = recorded.inputs.dataset_inputs
    assert dataset.dataset.name == "us_macro_quarterly" and dataset.dataset.digest == summary.input_fingerprint[:36]
    assert str(SAMPLE) in dataset.dataset.source
    assert recorded.data.metrics["series_ok"] == 12 and recorded.data.metrics["forecast_rows"] == 48
    assert recorded.data.metrics["series_per_second"] > 0
    artifacts = {a.path for a in client.list_artifacts(summary.mlflow_run_id)}
    assert {"series_status.parquet", "_manifest.json", "validation.json", "validation.html", "sample.png"} <= artifacts
    manifest = json.loads(Path(client.download_artifacts(summary.mlflow_run_id, "_manifest.json",
                                                         str(workspace))).read_text())
    assert manifest["mlflow_run_id"] == summary.mlflow_run_id and manifest["run_id"] == summary.run_id
    experiment = client.get_experiment(recorded.info.experiment_id)
    assert experiment.name == "batch-forecast"
    url = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{summary.mlflow_run_id}"
    key = "batch-forecast-us-macro-quarterly-"  # per flow and job: each job's latest summary, earlier ones versions
    found = prefect_artifacts(summary.run_id)
    assert set(found) == {key + "summary", key + "series-counts", key + "mlflow-run", key + "monitoring"}
    assert "No earlier run of this job" in found[key + "monitoring"].data, "a job's first run has nothing to compare"
    text = found[key + "summary"].data
    assert "**12 of 12 series forecast**" in text and summary.checkpoint_sha256 in text and f"({url})" in text
    assert f"| device | {summary.device}, {summary.precision} |" in text
    assert summary.outputs["forecasts"] in text and "catalog.duckdb" in text and "job = 'us_macro_quarterly'" in text
    counts = json.loads(found[key + "series-counts"].data)
    assert counts[0] == {"outcome": "forecast", "reason": "", "series": 12} and counts[-1]["series"] == 12
    link = found[key + "mlflow-run"]
    assert link.type == "markdown" and url in link.data, "a link artifact is kept as Markdown by the Prefect API"


def test_a_summary_that_cannot_be_written_does_not_fail_a_published_run(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.report

    def refused(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the Prefect API refused the artifact")

    monkeypatch.setattr(tasks.report, "create_markdown_artifact", refused)
    summary = run(tiny_checkpoint, horizon=2)
    assert summary.series_ok == 12 and Path(summary.outputs["forecasts"]).is_file()
    assert not any(key.endswith("-summary") for key in prefect_artifacts(summary.run_id))


def prefect_artifacts(flow_run_id: str) -> dict[str, Any]:
    """The artifacts of a flow run, by key."""
    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in asyncio.run(read()) if artifact.key}


def test_rerun_with_same_as_of_replaces(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    first = run(tiny_checkpoint)
    second = run(tiny_checkpoint)
    root = workspace / "data" / "outputs"
    rows = duckdb.sql(f"SELECT run_id, count(*) AS n FROM read_parquet('{root}/forecasts/**/*.parquet') "
                      "GROUP BY run_id").fetchall()
    assert rows == [(second.run_id, 96)], f"expected only the second run's 96 rows, got {rows} (first {first.run_id})"


@pytest.mark.slow
def test_two_jobs_share_an_output_root(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    run(tiny_checkpoint, job="macro-a")
    run(tiny_checkpoint, job="macro-b", horizon=2)
    counts = duckdb.sql(f"SELECT job, count(*) FROM read_parquet('{workspace}/data/outputs/forecasts/**/*.parquet',"
                        " hive_partitioning = true) GROUP BY job ORDER BY job").fetchall()
    assert counts == [("macro-a", 96), ("macro-b", 24)]


@pytest.mark.slow
def test_wide_file_with_custom_time_column(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    wide = pd.read_csv(SAMPLE).pivot(index="ds", columns="unique_id", values="y").reset_index()
    path = workspace / "macro_wide.parquet"
    wide.rename(columns={"ds": "quarter"}).to_parquet(path)
    source = FileSource(path=str(path), format="wide", columns=ColumnMapping(time_col="quarter"))
    summary = run(tiny_checkpoint, source=source, output_root=str(workspace / "elsewhere"))
    assert summary.series_ok == 12 and summary.job == "macro_wide"
    assert Path(summary.outputs["forecasts"]).is_relative_to(workspace / "elsewhere")


def bad_inputs(tmp: Path) -> dict[str, tuple[Path, type[Exception], str]]:
    sample = pd.read_csv(SAMPLE)
    missing = tmp / "missing.csv"
    sample.drop(columns="y").to_csv(missing, index=False)
    unparseable = tmp / "unparseable.csv"
    sample.assign(ds=sample["ds"].where(sample.index != 300, "31/02/2009")).to_csv(unparseable, index=False)
    duplicated = tmp / "duplicated.csv"
    pd.concat([sample, sample[sample["unique_id"] == "unemp"].tail(1)]).to_csv(duplicated, index=False)
    return {
        "missing column": (missing, InputDataError, r"columns are missing: \['y'\].*Fix"),
        "unparseable timestamp": (unparseable, InputDataError, r"Column 'ds'.*'31/02/2009'.*series 'infl'.*Fix"),
        "duplicate key": (duplicated, DataValidationError,
                          r"duplicate_timestamp \(two rows of the series share a timestamp\).*unemp.*Fix"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing column", "unparseable timestamp", "duplicate key"])
def test_bad_input_fails_and_publishes_nothing(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                               case: str) -> None:
    good = run(tiny_checkpoint, job="macro")
    root = workspace / "data" / "outputs"
    before = {p: p.read_bytes() for p in outputs(root)}
    path, error, message = bad_inputs(workspace)[case]
    with pytest.raises(error, match=message):
        run(tiny_checkpoint, source=FileSource(path=str(path)), job="macro",
            checks=SeriesChecks(max_rejected_fraction=0))
    assert {p: p.read_bytes() for p in outputs(root)} == before, "a failed run changed published outputs"
    assert good.outputs["forecasts"] in {str(p) for p in before}


def mixed_panel(workspace: Path) -> Path:
    """Real quarterly series, 40 daily ones, and series the checks reject or repair: constant, too short,
    mostly missing, and one with gaps (regularised, then interpolated by the engine)."""
    from benchmarks.panel import write_panel

    daily = pd.read_parquet(write_panel(workspace / "daily.parquet", 40, 60))
    days = pd.date_range("2026-01-01", periods=30, freq="D")
    gappy = pd.DataFrame({"unique_id": "gappy", "ds": days, "y": np.sin(np.arange(30) / 3)}).drop(index=[4, 5, 17])
    broken = pd.concat([
        pd.DataFrame({"unique_id": "flat", "ds": days, "y": 7.0}),
        pd.DataFrame({"unique_id": "short", "ds": days[:2], "y": [1.0, 2.0]}),
        pd.DataFrame({"unique_id": "holes", "ds": days, "y": np.where(np.arange(30) % 5 == 0, 1.0, np.nan)}),
        gappy,
    ])
    sample = pd.read_csv(SAMPLE, parse_dates=["ds"])
    path = workspace / "mixed.parquet"
    pd.concat([sample, daily, broken], ignore_index=True).sample(frac=1, random_state=0).to_parquet(path)
    return path


@pytest.mark.slow  # three whole runs of many small chunks; the fast tier has the unit-level equality tests
def test_overlapped_forecast_stage_publishes_the_same_tables_as_one_after_the_other(
        workspace: Path, tiny_checkpoint: ResolvedCheckpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """FORECAST_OVERLAP=0 runs reading, inference and writing one after the other, and FORECAST_CPU_THREADS=2
    gives the engine both cores: the tables must not change by a bit, on a panel of good and bad series
    spread over several small batches (batch 2: chunks of 32), where thread counts matter most to MKL."""
    source, root = FileSource(path=str(mixed_panel(workspace))), workspace / "data" / "outputs"
    model = ModelParams(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu", batch_size=2)
    variants = {"1": {"FORECAST_OVERLAP": "1"}, "0": {"FORECAST_OVERLAP": "0"},
                "threads": {"FORECAST_OVERLAP": "1", "FORECAST_CPU_THREADS": "2"}}
    tables = {}
    for name, env in variants.items():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        summary = run(tiny_checkpoint, source=source, model=model, job=f"overlap{name}")
        assert summary.series_ok >= 41 and summary.series_rejected >= 3, summary
        tables[name] = {
            table: pd.read_parquet(root / table / f"job=overlap{name}" / f"as_of={AS_OF}").drop(
                columns=["run_id", "created_at", "job", "as_of"], errors="ignore")
            for table in ("forecasts", "series_status")}
    for name in ("0", "threads"):
        for table in ("forecasts", "series_status"):
            pd.testing.assert_frame_equal(tables["1"][table], tables[name][table], check_exact=True,
                                          obj=f"{table} of variant {name}")
    assert len(tables["1"]["forecasts"]) == summary.series_ok * 8
    forecasts = tables["1"]["forecasts"]  # one block of series here: step by step, each step by series
    assert forecasts["step"].is_monotonic_increasing, "step by step"
    assert all(group["unique_id"].is_monotonic_increasing for _, group in forecasts.groupby("step")), "by series"
