"""The `forecast` console script, run as a user runs it: a subprocess, on the embedded defaults (an
ephemeral Prefect server) in the first test; the others point it at the session's test API, as a user with
a Prefect server does, which spares each a server start."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import urllib.request
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.cli import _allow_source_directory, _covariates, _monitor, _parser, _source
from forecast_model import ResolvedCheckpoint
from pipeline.params import CovariateParams, MonitorParams
from pipeline.sources import DuckDBSource, FileSource, UrlSource
from tests.conftest import REPO, SAMPLE

FORECAST = REPO / ".venv" / "bin" / "forecast"

# Processes and flow runs per test: the full suite runs them, ./setup.sh test-fast does not.
pytestmark = pytest.mark.slow


@pytest.fixture
def api(prefect_api: None) -> str:
    """The URL of the session's running Prefect API."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def forecast(*args: str, cwd: Path, api: str | None = None,
             **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PYTEST"))}
    if api:
        env["PREFECT_API_URL"] = api
    env.update(variables)
    env.update({"PREFECT_HOME": str(cwd / ".prefect"), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
                "FORECAST_DATA_DIR": str(cwd / "data"),
                "FORECAST_DATA_ROOTS": os.pathsep.join([str(cwd), str(SAMPLE.parent)])})
    return subprocess.run([str(FORECAST), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_make_tiny_checkpoint_then_run(tmp_path: Path) -> None:
    made = forecast("make-tiny-checkpoint", "ckpt", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "ckpt" / "torch_model.ckpt").is_file() and (tmp_path / "ckpt" / "config.json").is_file()
    done = forecast("run", "--source", str(SAMPLE), "--horizon", "5", "--checkpoint", "ckpt", "--device", "cpu",
                    "--as-of", "2026-01-31", cwd=tmp_path, LOG_FORMAT="json", FORECAST_LOG_MAX_BYTES="4096",
                    FORECAST_LOG_BACKUP_COUNT="50")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TimesFM" not in done.stdout, "timesfm's import banners leaked into stdout"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["series_ok"] == 12 and summary["as_of"] == "2026-01-31"
    assert f"forecasts: {summary['outputs']['forecasts']}" in done.stdout
    assert len(pd.read_parquet(summary["outputs"]["forecasts"])) == 60
    assert_the_run_is_in_the_log(tmp_path / "data" / "logs", summary["run_id"], job="us_macro_quarterly",
                                 as_of="2026-01-31")


def assert_the_run_is_in_the_log(logs: Path, run_id: str, job: str, as_of: str) -> None:
    """JSON lines, rotated at 4 KiB; each of the run's lines names its job and as_of, Prefect's first included."""
    files = sorted(logs.glob("forecast.log*"), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    assert len(files) > 1, f"the log was not rotated: {files}"
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    ours = [line for line in lines if line["flow_run_id"] == run_id]
    assert ours[0]["message"].startswith("Beginning flow run") and len(ours) > 10, ours[:3]
    untagged = [line["message"] for line in ours if (line["job"], line["as_of"]) != (job, as_of)]
    assert untagged == [], f"run lines without job/as_of: {untagged[:5]}"
    loggers = {line["logger"] for line in ours}
    assert {"prefect.flow_runs", "prefect.task_runs", "forecast_model.registry"} <= loggers, loggers
    assert ours[-1]["message"] == "Finished in state Completed()", "Prefect's last line of the run is tagged too"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--id-col", "series"], "columns are missing: ['series']"),
     (["--checkpoint", "/nowhere/ckpt"], "neither an existing path")],
)
def test_bad_input_exits_2_with_the_message(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, api: str,
                                            args: list[str], message: str) -> None:
    """One clean error: the `error:` line, the flow run and where the full log is; no traceback on the
    terminal, while the log file keeps it."""
    base = ["run", "--source", str(SAMPLE), "--horizon", "4", "--checkpoint", str(tiny_checkpoint.weights.parent)]
    done = forecast(*base, *args, cwd=tmp_path, api=api)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Finished in state Failed" not in done.stderr, done.stderr[-3000:]
    log = tmp_path / "data" / "logs" / "forecast.log"
    assert re.search(rf"\(flow run [0-9a-f-]{{36}}; full log: {re.escape(str(log))}\)", done.stderr), done.stderr
    assert "Traceback" in log.read_text() and message in log.read_text(), "the log file keeps the whole story"


# Each case is refused before any Prefect server starts; they share one process (see bad_arguments()).
BAD_ARGUMENTS = {
    "zero horizon": (["--horizon", "0"], "invalid parameters: horizon: Input should be greater than 0"),
    "negative horizon": (["--horizon", "-5"], "horizon: Input should be greater than 0"),
    "huge horizon": (["--horizon", "1000000000"], "horizon: Input should be less than or equal to 10000"),
    "job up a directory": (["--job", "../x"], "job: Invalid job name '../x'"),
    "job with a slash": (["--job", "a/b c"], "job: Invalid job name 'a/b c'"),
    "empty job": (["--job", ""], "job: Invalid job name ''"),
    "unknown frequency": (["--freq", "XYZ"], "freq: Unknown frequency 'XYZ'"),
    "backward frequency": (["--freq=-1D"], "freq: Frequency '-1D' steps back in time"),
    "empty output root": (["--output-root", ""], "output_root: output_root is empty"),
    "id column is the time column": (["--id-col", "ds"], "columns id_col and time_col name the same input column"),
    "file scheme": (["--source", "file:///etc/passwd.csv"], "scheme file://, which is not supported"),
    "ftp scheme": (["--source", "ftp://example.com/x.csv"], "scheme ftp://, which is not supported"),
    "secret value for a name": (["--source", "https://example.com/x.csv", "--headers-secret",
                                 '{"Authorization": "Bearer sk-live-0123456789abcdef"}'],
                                "headers_secret is not a valid secret reference"),
    "secret URL value for a name": (["--source", "secret:https://u:sk-live-0123456789abcdef@example.com/x.csv"],
                                    "url_secret is not a valid secret reference"),
    "unknown calendar feature": (["--calendar", "weekday"], "Unknown calendar covariate 'weekday'"),
    "covariate named twice": (["--dynamic-numerical", "price", "--static-numerical", "price"],
                              "Covariates ['price'] are named more than once"),
}
_IN_ONE_PROCESS = """
import contextlib, io, json, sys
from flows.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(argv)
    results.append({"code": code, "stderr": stderr.getvalue()})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def bad_arguments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """What `forecast run` answers to each of BAD_ARGUMENTS: exit code and stderr."""
    cwd = tmp_path_factory.mktemp("bad-arguments")
    base = ["run", "--source", str(SAMPLE), "--horizon", "4"]
    argvs = [[*base, *args] if args[0] != "--source" else ["run", "--horizon", "4", *args]
             for args, _ in BAD_ARGUMENTS.values()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PYTEST"))}
    env.update({"PREFECT_HOME": str(cwd / ".prefect"), "FORECAST_DATA_DIR": str(cwd / "data")})
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", _IN_ONE_PROCESS, json.dumps(argvs)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(BAD_ARGUMENTS, json.loads(done.stdout.strip().splitlines()[-1]), strict=True))


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_one_error_line(bad_arguments: dict[str, dict[str, object]], name: str) -> None:
    answer = bad_arguments[name]
    stderr = str(answer["stderr"])
    assert answer["code"] == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and BAD_ARGUMENTS[name][1] in errors[0], stderr
    assert "Traceback" not in stderr and "sk-live" not in stderr, stderr
    assert len(stderr) < 2000, "one short error, not a dump of the parameters"


def test_an_unexpected_error_prints_one_traceback_and_exits_1(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                             api: str) -> None:
    script = ("import sys, pipeline.forecasting as f\n"
              "def boom(*a, **k): raise RuntimeError('boom in the forecast table')\n"
              "f.forecast_table = boom\n"
              "from flows.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PYTEST"))}
    env.update({"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / ".prefect"),
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "FORECAST_DATA_DIR": str(tmp_path / "d"),
                "FORECAST_DATA_ROOTS": str(SAMPLE.parent)})
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", script, "run", "--source", str(SAMPLE),
                           "--horizon", "4", "--checkpoint", str(tiny_checkpoint.weights.parent)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.count("Traceback (most recent call last)") == 1, done.stderr[-5000:]
    assert done.stderr.count("RuntimeError: boom in the forecast table") == 2, "the traceback, then the error line"
    assert "error: RuntimeError: boom in the forecast table" in done.stderr


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


@pytest.mark.parametrize(("args", "expected"), [
    ([], MonitorParams()),
    (["--revision-threshold", "0.8", "--lookback-runs", "7"], MonitorParams(revision_threshold=0.8, lookback_runs=7)),
    (["--no-monitor"], MonitorParams(enabled=False)),
])
def test_monitor_options(args: list[str], expected: MonitorParams) -> None:
    assert _monitor(_parser().parse_args(["run", "--source", "x.csv", *args])) == expected


@pytest.mark.parametrize(("args", "expected"), [
    ([], CovariateParams()),
    (["--dynamic-numerical", "price, temp", "--dynamic-categorical", "promo", "--static-numerical", "size",
      "--static-categorical", "region", "--calendar", "day_of_week,holiday:us", "--xreg-mode", "timesfm + xreg",
      "--ridge", "0.5", "--no-normalize", "--no-effects", "--future-source", "future.csv"],
     CovariateParams(dynamic_numerical=("price", "temp"), dynamic_categorical=("promo",), static_numerical=("size",),
                     static_categorical=("region",), calendar=("day_of_week", "holiday:US"),
                     xreg_mode="timesfm + xreg", ridge=0.5, normalize=False, effects=False,
                     future_source=FileSource(path="future.csv"))),
])
def test_covariate_options(args: list[str], expected: CovariateParams) -> None:
    assert _covariates(_parser().parse_args(["run", "--source", "x.csv", *args])) == expected


def test_duckdb_source_from_the_command_line(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, api: str) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute(f"CREATE TABLE macro AS SELECT * FROM read_csv('{SAMPLE}')")
    done = forecast("run", "--source", "duckdb://w.duckdb", "--query", "SELECT * FROM macro WHERE unique_id = ?",
                    "--query-param", "cpi", "--horizon", "3", "--checkpoint", str(tiny_checkpoint.weights.parent),
                    cwd=tmp_path, api=api)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["series_in"] == 1 and summary["job"] == "w" and summary["forecast_rows"] == 3


def test_a_file_the_user_types_may_lie_outside_the_data_roots(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint,
                                                             api: str) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    source = tmp_path / "elsewhere" / "macro.csv"
    source.write_bytes(SAMPLE.read_bytes())
    done = forecast("run", "--source", str(source), "--horizon", "2", "--checkpoint",
                    str(tiny_checkpoint.weights.parent), cwd=tmp_path / "work", api=api)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["series_ok"] == 12


@pytest.mark.parametrize(("given", "allowed"), [
    ("elsewhere/macro.csv", "elsewhere"), ("elsewhere/*/day=*.parquet", "elsewhere"), ("*.csv", "."),
    ("duckdb://elsewhere/w.duckdb --table t", "elsewhere"), ("https://example.com/x.csv", None),
])
def test_cli_runs_may_read_the_directory_of_the_source_given(given: str, allowed: str | None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORECAST_DATA_ROOTS", "/srv/data")
    source, *rest = given.split()
    _allow_source_directory(_source(_parser().parse_args(["run", "--source", source, *rest, "--horizon", "1"])))
    roots = os.environ["FORECAST_DATA_ROOTS"].split(os.pathsep)
    assert roots == ["/srv/data"] + ([str((tmp_path / allowed).resolve())] if allowed else []), roots


def test_backtest_command(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, api: str) -> None:
    done = forecast("backtest", "--source", str(SAMPLE), "--h", "4", "--n-windows", "2", "--checkpoint",
                    str(tiny_checkpoint.weights.parent), "--tracking-required", cwd=tmp_path, api=api)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary["overall"]) == {"TimesFM", "SeasonalNaive", "Naive"} and summary["tracking_status"] == "ok"
    assert "TimesFM beats seasonal naive on" in done.stdout
    assert len(pd.read_parquet(summary["outputs"]["evaluations"])) == 3 * 13  # 12 series + __all__, 3 models
    served = scrape_exporter(tmp_path / "data" / "outputs")
    key = 'forecast_backtest_accuracy{job="us_macro_quarterly",metric="mase",model="TimesFM"}'
    assert float(served[key]) == pytest.approx(summary["overall"]["TimesFM"]["mase"]), "the exporter serves it"
    assert 'forecast_last_success_timestamp_seconds{flow="batch-backtest",job="us_macro_quarterly"}' in served


def test_detect_command(tmp_path: Path, tiny_checkpoint: ResolvedCheckpoint, api: str) -> None:
    done = forecast("detect", "--source", str(SAMPLE), "--window", "3", "--scoring", "rolling", "--stride", "2",
                    "--checkpoint", str(tiny_checkpoint.weights.parent), "--as-of", "2026-11-27", cwd=tmp_path,
                    api=api)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["points_scored"] == 12 * 3 and summary["as_of"] == "2026-11-27"
    assert "Scored 36 observations of 12 series (0 missing, not scored) for job 'us_macro_quarterly'" in done.stdout
    table = pd.read_parquet(summary["outputs"]["anomalies"])
    assert table.groupby("unique_id")["cutoff"].nunique().eq(2).all(), "rolling by 2 over 3 points: two forecasts"
    refused = forecast("detect", "--source", str(SAMPLE), "--window", "3", "--since", "2000-01-01", cwd=tmp_path)
    assert refused.returncode == 2 and "give window or since, not both" in refused.stderr, refused.stderr[-2000:]


def scrape_exporter(root: Path) -> dict[str, str]:
    """Starts `forecast metrics-exporter` on a free port, scrapes /metrics once over HTTP, stops it (by PID)."""
    exporter = subprocess.Popen([str(FORECAST), "metrics-exporter", "--port", "0", "--output-root", str(root)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready, _, _ = select.select([exporter.stdout], [], [], 60)
        line = exporter.stdout.readline() if ready and exporter.stdout else ""
        found = re.search(r"at (http://127\.0\.0\.1:\d+/metrics)", line)
        assert found, f"the exporter did not start: {line!r}"
        with urllib.request.urlopen(found.group(1), timeout=30) as answer:
            text = answer.read().decode()
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
