"""The `forecast` console script, run as a user runs it: a subprocess, on the embedded defaults (an
ephemeral Prefect server) in the first test; the others point it at the session's test API, as a user with
a Prefect server does, which spares each a server start."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.cli import _parser, _source
from forecast_model import ResolvedCheckpoint
from tasks.sources import DuckDBSource, FileSource, UrlSource
from tests.conftest import REPO, SAMPLE

FORECAST = REPO / ".venv" / "bin" / "forecast"


@pytest.fixture
def api(prefect_api: None) -> str:
    """The URL of the session's running Prefect API."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def forecast(*args: str, cwd: Path, api: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PYTEST"))}
    if api:
        env["PREFECT_API_URL"] = api
    env.update({"PREFECT_HOME": str(cwd / ".prefect"), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
                "FORECAST_DATA_DIR": str(cwd / "data"),
                "FORECAST_DATA_ROOTS": os.pathsep.join([str(cwd), str(SAMPLE.parent)])})
    return subprocess.run([str(FORECAST), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_make_tiny_checkpoint_then_run(tmp_path: Path) -> None:
    made = forecast("make-tiny-checkpoint", "ckpt", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "ckpt" / "torch_model.ckpt").is_file() and (tmp_path / "ckpt" / "config.json").is_file()
    done = forecast("run", "--source", str(SAMPLE), "--horizon", "5", "--checkpoint", "ckpt", "--device", "cpu",
                    "--as-of", "2026-01-31", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TimesFM" not in done.stdout, "timesfm's import banners leaked into stdout"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["series_ok"] == 12 and summary["as_of"] == "2026-01-31"
    assert f"forecasts: {summary['outputs']['forecasts']}" in done.stdout
    assert len(pd.read_parquet(summary["outputs"]["forecasts"])) == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--id-col", "series"], "columns are missing: ['series']"),
     (["--checkpoint", "/nowhere/ckpt"], "neither an existing path")],
)
def test_bad_input_exits_2_with_the_message(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, api: str,
                                            args: list[str], message: str) -> None:
    base = ["run", "--source", str(SAMPLE), "--horizon", "4", "--checkpoint", str(tiny_checkpoint.weights.parent)]
    done = forecast(*base, *args, cwd=tmp_path, api=api)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], done.stderr[-3000:]


def test_usage_error_exits_2(tmp_path: Path) -> None:
    assert forecast("run", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--source", "data/*.parquet"], FileSource(path="data/*.parquet")),
        (["--source", "https://example.com/x.csv", "--content", "csv"],
         UrlSource(url="https://example.com/x.csv", content="csv")),
        (["--source", "secret:sales-url", "--headers-secret", "env:SALES_HEADERS"],
         UrlSource(url_secret="sales-url", headers_secret="env:SALES_HEADERS")),
        (["--source", "duckdb:///srv/w.duckdb", "--table", "sales"],
         DuckDBSource(database="/srv/w.duckdb", table="sales")),
        (["--source", "duckdb://w.duckdb", "--query", "SELECT * FROM s WHERE id = ?", "--query-param", "7"],
         DuckDBSource(database="w.duckdb", query="SELECT * FROM s WHERE id = ?", params=["7"])),
    ],
)
def test_source_forms(args: list[str], expected: object) -> None:
    assert _source(_parser().parse_args(["run", *args])) == expected


def test_duckdb_source_from_the_command_line(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, api: str) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute(f"CREATE TABLE macro AS SELECT * FROM read_csv('{SAMPLE}')")
    done = forecast("run", "--source", "duckdb://w.duckdb", "--query", "SELECT * FROM macro WHERE unique_id = ?",
                    "--query-param", "cpi", "--horizon", "3", "--checkpoint", str(tiny_checkpoint.weights.parent),
                    cwd=tmp_path, api=api)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["series_in"] == 1 and summary["job"] == "w" and summary["forecast_rows"] == 3


def test_backtest_command(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, api: str) -> None:
    done = forecast("backtest", "--source", str(SAMPLE), "--h", "4", "--n-windows", "2", "--checkpoint",
                    str(tiny_checkpoint.weights.parent), "--tracking-required", cwd=tmp_path, api=api)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary["overall"]) == {"TimesFM", "SeasonalNaive", "Naive"} and summary["tracking_status"] == "ok"
    assert "TimesFM beats seasonal naive on" in done.stdout
    assert len(pd.read_parquet(summary["outputs"]["evaluations"])) == 3 * 13  # 12 series + __all__, 3 models
