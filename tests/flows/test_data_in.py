"""Data in, end to end: every source kind, a mix of good and bad series, retries, and redaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

from flows.batch_forecast import batch_forecast
from forecast_model import ResolvedCheckpoint
from pipeline.params import ModelParams, RunSummary
from pipeline.series_checks import SeriesChecks
from pipeline.sources import DuckDBSource, FileSource, TransientSourceError, UrlSource
from tests.conftest import SAMPLE
from tests.http_server import LocalServer, Route, http_server

# Whole flow runs per test: the full suite runs them, ./setup.sh test-fast does not.
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]
AS_OF = date(2026, 11, 26)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with http_server() as running:
        running.routes.update({"/macro.csv": Route(body=SAMPLE.read_bytes()),
                               "/flaky": Route(503, b"busy", "text/plain"),
                               "/gone.csv": Route(404, b"gone", "text/plain")})
        yield running


def run(checkpoint: ResolvedCheckpoint, source: object, **kwargs: object) -> RunSummary:
    return batch_forecast(source=source, horizon=4, as_of=AS_OF,
                          model=ModelParams(checkpoint=str(checkpoint.weights.parent)), **kwargs)


def status_of(summary: RunSummary) -> pd.DataFrame:
    return pd.read_parquet(summary.outputs["series_status"]).set_index("unique_id")


def test_mixed_good_and_bad_series(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    frame = pd.read_csv(SAMPLE)
    days = pd.date_range("2020-01-01", periods=60, freq="D").strftime("%Y-%m-%d")
    extra = pd.concat([
        pd.DataFrame({"unique_id": "empty", "ds": days[:10], "y": None}),
        pd.DataFrame({"unique_id": "flat", "ds": days[:30], "y": 3.0}),
        pd.DataFrame({"unique_id": "dup", "ds": [days[0], days[0], days[1], days[2]], "y": [1, 2, 3, 4]}),
        pd.DataFrame({"unique_id": "daily_gaps", "ds": days.delete([5, 6]), "y": range(58)}),
    ])
    path = workspace / "mixed.csv"
    pd.concat([frame, extra]).to_csv(path, index=False)
    summary = run(tiny_checkpoint, FileSource(path=str(path)), checks=SeriesChecks(max_rejected_fraction=0.5))
    assert (summary.series_in, summary.series_ok, summary.series_rejected) == (16, 13, 3)
    status = status_of(summary)
    assert status.loc[["empty", "flat", "dup"], "reason"].tolist() == ["all_missing", "constant", "duplicate_timestamp"]
    assert status.loc["daily_gaps", ["status", "freq"]].tolist() == ["ok", "D"]
    assert status.loc["daily_gaps", "missing_fraction"] == pytest.approx(2 / 60)
    assert status.loc["cpi", "freq"].startswith("QS")
    forecasts = pd.read_parquet(summary.outputs["forecasts"])
    assert set(forecasts["unique_id"]) == set(status.index[status["status"] == "ok"])
    gaps = forecasts[forecasts["unique_id"] == "daily_gaps"]
    assert gaps["ds"].tolist() == list(pd.date_range("2020-03-01", periods=4, freq="D"))
    assert_rejection_artifact(summary.run_id, {"all_missing", "constant", "duplicate_timestamp"})
    artifacts = {a.path for a in MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}").list_artifacts(
        summary.mlflow_run_id, "data_docs")}
    assert "data_docs/index.html" in artifacts, f"Data Docs missing from MLflow: {artifacts}"


def assert_rejection_artifact(flow_run_id: str, reasons: set[str]) -> None:
    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rejected-series"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    (artifact,) = asyncio.run(read())
    assert artifact.type == "table"
    assert reasons <= {row["reason"] for row in _rows(artifact.data)}


def _rows(data: object) -> list[dict]:
    import json

    return json.loads(data) if isinstance(data, str) else list(data)  # type: ignore[arg-type]


def test_url_source(workspace: Path, tiny_checkpoint: ResolvedCheckpoint, server: LocalServer) -> None:
    summary = run(tiny_checkpoint, UrlSource(url=server.url("/macro.csv")))
    assert summary.series_ok == 12 and summary.job == "macro"


def test_duckdb_table_and_query(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    database = workspace / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute(f"CREATE TABLE macro AS SELECT * FROM read_csv('{SAMPLE}')")
    assert run(tiny_checkpoint, DuckDBSource(database=str(database), table="macro")).series_ok == 12
    query = DuckDBSource(database=str(database), query="SELECT * FROM macro WHERE unique_id IN (?, ?)",
                         params=["cpi", "m1"])
    summary = run(tiny_checkpoint, query, job="two")
    assert summary.series_in == 2 and set(status_of(summary).index) == {"cpi", "m1"}


def test_transient_failures_are_retried_and_4xx_are_not(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                        server: LocalServer) -> None:
    with pytest.raises(TransientSourceError, match="HTTP 503"):
        run(tiny_checkpoint, UrlSource(url=server.url("/flaky"), content="csv"))
    assert server.hits["/flaky"] == 3, "a 5xx answer must be tried three times (two retries)"
    with pytest.raises(Exception, match="HTTP 404"):
        run(tiny_checkpoint, UrlSource(url=server.url("/gone.csv")))
    assert server.hits["/gone.csv"] == 1, "a 4xx answer must not be retried"
    assert not (workspace / "data" / "outputs" / "forecasts").exists()


def test_url_credentials_never_reach_logs_or_mlflow(workspace: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                    server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    server.routes["/private/macro.csv"] = Route(body=SAMPLE.read_bytes(), require=("X-Api-Token", "t0k3n"))
    secret_url = server.url("/private/macro.csv").replace("http://", "http://svc:hunter2@") + "?api_key=k3y"
    Secret(value=secret_url).save("macro-url", overwrite=True)
    Secret(value={"X-Api-Token": "t0k3n"}).save("macro-headers", overwrite=True)
    with caplog.at_level(logging.DEBUG):
        summary = run(tiny_checkpoint, UrlSource(url_secret="macro-url", headers_secret="macro-headers"))
    assert summary.series_ok == 12 and summary.job == "macro-url"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "macro.csv" in logged, "the load should be logged (redacted)"
    params = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}").get_run(summary.mlflow_run_id).data.params
    for secret in ("hunter2", "k3y", "t0k3n"):
        assert secret not in logged, f"a credential ({secret}) leaked into the logs"
        assert secret not in str(params)


def test_ids_are_text_and_integer_years_are_yearly(workspace: Path, tiny_checkpoint: ResolvedCheckpoint) -> None:
    """`007`, `0042` and `7` are three series (not one, nor duplicates), and a time column of 4-digit years
    is yearly from CSV and from Parquet's integers alike, forecast into the following years."""
    years = list(range(1990, 2010))
    values = [float(i % 7 + i) for i in range(len(years))]
    frame = pd.DataFrame({"unique_id": [i for i in ("007", "0042", "7") for _ in years], "ds": years * 3,
                          "y": [v + k for k in range(3) for v in values]})
    frame.to_csv(workspace / "years.csv", index=False)
    frame.to_parquet(workspace / "years.parquet")
    for name in ("years.csv", "years.parquet"):
        summary = run(tiny_checkpoint, FileSource(path=str(workspace / name)), job=name.replace(".", "-"))
        assert (summary.series_in, summary.series_ok) == (3, 3), name
        forecasts = pd.read_parquet(summary.outputs["forecasts"])
        assert sorted(forecasts["unique_id"].unique()) == ["0042", "007", "7"], name
        assert forecasts.groupby("unique_id")["ds"].min().eq(pd.Timestamp("2010-01-01")).all(), name
        status = pd.read_parquet(summary.outputs["series_status"])
        assert set(status["freq"]) == {"YS-JAN"}, (name, set(status["freq"]))
