"""What a run tells its readers: artifact keys Prefect accepts, links that point where they should, a summary
that names counts, model, outputs and the query, and a validation page that renders without fetched assets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.report import (
    artifact_key,
    dataset_uri,
    mlflow_run_url,
    plot_title,
    run_name,
    run_summary,
    series_count_rows,
    validation_html,
)
from pipeline.sources import DuckDBSource, FileSource, UrlSource
from tests.pipeline.test_manifest import manifest


@pytest.mark.parametrize(("flow", "job", "expected"), [
    ("batch-forecast", "us_macro_quarterly", "batch-forecast-us-macro-quarterly"),
    ("batch-backtest", "Sales.EU / 2026", "batch-backtest-sales-eu-2026"),
    ("x", "ÜÖ--__", "x"),
    ("", "", "run"),
])
def test_artifact_keys_are_what_prefect_accepts(flow: str, job: str, expected: str) -> None:
    assert artifact_key(flow, job) == expected
    long = artifact_key("batch-forecast", "j" * 500) + "-series-counts"
    assert re.fullmatch(r"[a-z0-9-]+", long) and len(long) <= 100


def test_mlflow_links_go_to_the_ui_or_nowhere() -> None:
    assert mlflow_run_url("http://mlflow:5000/", "sqlite:///x.db", "3", "abc") == \
        "http://mlflow:5000/#/experiments/3/runs/abc"
    assert mlflow_run_url(None, "https://tracking.example.org", "3", "abc") == \
        "https://tracking.example.org/#/experiments/3/runs/abc"
    assert mlflow_run_url(None, "sqlite:////data/mlflow.db", "3", "abc") is None, "a local store has no page"
    assert run_name("sales", "2026-11-26") == "sales/2026-11-26"


def test_dataset_sources_are_absolute_and_never_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert dataset_uri(FileSource(path="data/*.csv")) == str(tmp_path / "data" / "*.csv")
    assert dataset_uri(UrlSource(url="https://example.org/x.csv?day=1")) == "https://example.org/x.csv?day=1"
    assert dataset_uri(UrlSource(url_secret="sales-url")) is None, "an address kept in a secret is not logged"
    assert dataset_uri(DuckDBSource(database="w.duckdb", table="t")) == str(tmp_path / "w.duckdb")


def test_series_counts_add_up_and_name_failed_apart_from_rejected() -> None:
    rows = series_count_rows(manifest())
    assert rows == [{"outcome": "forecast", "reason": "", "series": 10},
                    {"outcome": "rejected", "reason": "constant", "series": 1},
                    {"outcome": "failed", "reason": "non_finite_forecast", "series": 1},
                    {"outcome": "total", "reason": "", "series": 12}]


def test_the_summary_names_counts_model_outputs_and_the_query(tmp_path: Path) -> None:
    run = manifest(source="file:`x|y`\n" + "x" * 5000).model_copy(update={
        "mlflow_run_id": "m1", "tracking_status": "ok", "timings": {"load": 0.5, "forecast.engine": 0.2, "total": 2.0},
        "job": "o'brien"})
    text = run_summary(run, outputs={"forecasts": "/out/forecasts/job=o'brien/as_of=2026-11-26/data.parquet"},
                       catalog=tmp_path / "catalog.duckdb", metrics={"device": "cpu", "series_per_second": 1234.5},
                       mlflow_url="http://m/#/experiments/1/runs/m1", tracking_uri="sqlite:///x", warnings=["w" * 900])
    assert "**10 of 12 series forecast**, 1 rejected, 1 failed; 80 output rows." in text
    assert "`constant` 1, `non_finite_forecast` 1" in text
    assert "ab" * 32 in text and "f" * 64 in text and "device cpu, series/s 1,234.5" in text
    assert "load 0.50, **total 2.00**" in text and "forecast.engine" not in text, "stages, not their parts"
    assert "[run m1](http://m/#/experiments/1/runs/m1)" in text
    assert "WHERE job = 'o''brien' AND as_of = DATE '2026-11-26'" in text, "the job is quoted as SQL text"
    assert "x" * 250 not in text and "w" * 600 not in text, "input content is cut short"
    assert "| source | `file:'x\\|y' xxx" in text, "a backtick, a pipe or a line end cannot break the table"


def test_without_a_ui_the_summary_says_how_to_open_the_run_and_why_tracking_failed(tmp_path: Path) -> None:
    tracked = manifest().model_copy(update={"mlflow_run_id": "m1", "tracking_status": "ok"})
    text = run_summary(tracked, outputs={}, catalog=tmp_path / "c.duckdb", metrics={}, mlflow_url=None,
                       tracking_uri="sqlite:////data/mlflow.db", warnings=[])
    assert "mlflow ui --backend-store-uri sqlite:////data/mlflow.db" in text
    failed = manifest().model_copy(update={"tracking_status": "failed", "tracking_error": "connection refused"})
    text = run_summary(failed, outputs={}, catalog=tmp_path / "c.duckdb", metrics={}, mlflow_url=None,
                       tracking_uri="http://127.0.0.1:9", warnings=[])
    assert "not recorded (connection refused)" in text
    random = manifest().model_copy(update={"random_weights": True})
    assert "random weights (no accuracy meaning)" in run_summary(
        random, outputs={}, catalog=tmp_path / "c", metrics={}, mlflow_url=None, tracking_uri="x", warnings=[])


def test_the_validation_page_is_self_contained_and_escapes_the_input() -> None:
    result = {"success": False, "statistics": {"evaluated_expectations": 2, "successful_expectations": 1},
              "results": [
                  {"success": True, "expectation_config": {"type": "expect_column_to_exist",
                                                           "kwargs": {"column": "ds", "batch_id": "b"}},
                   "result": {}},
                  {"success": False, "expectation_config": {"type": "expect_column_values_to_not_be_null",
                                                            "kwargs": {"column": "<script>alert(1)</script>"}},
                   "result": {"unexpected_count": 3}}]}
    page = validation_html(result, "Input <validation>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;validation&gt;" in page
    assert "The suite failed: 1 of 2 expectations met" in page
    assert page.count("<tr class='ok'>") == 1 and page.count("<tr class='bad'>") == 1 and ">3</td>" in page
    assert "batch_id" not in page and "http" not in page and "<link" not in page, "nothing fetched, nothing noisy"


def test_the_plot_title_names_job_day_and_weights() -> None:
    assert plot_title("sales", "2026-11-26", "/models/tiny", "ab" * 32) == \
        "sales as of 2026-11-26 | /models/tiny (sha256 abababababab)"
