"""Bad input across every source kind: each case ends in one specific error, or one specific rejection
(made fatal with max_rejected_fraction=0), and never changes what an earlier good run published."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from prefect.exceptions import ParameterTypeError

from flows.batch_forecast import batch_forecast
from forecast_model import ResolvedCheckpoint
from pipeline.errors import DataValidationError, InputDataError, OutputRootError
from pipeline.params import ModelParams
from pipeline.series_checks import SeriesChecks
from pipeline.sources import DuckDBSource, FileSource, TransientSourceError, UrlSource
from tests.conftest import SAMPLE
from tests.http_server import LocalServer, Route, http_server

# Whole flow runs per test: the full suite runs them, ./setup.sh test-fast does not.
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]
AS_OF = date(2026, 11, 26)
JOB = "corpus"
AnySource = FileSource | UrlSource | DuckDBSource


@dataclass(frozen=True)
class Case:
    """A source built in the test's workspace, and the error its run must end with."""

    build: Callable[[Path, LocalServer], AnySource]
    error: type[Exception]
    message: str
    env: dict[str, str] = field(default_factory=dict)
    checks: SeriesChecks = field(default_factory=lambda: SeriesChecks(max_rejected_fraction=0))
    params: dict[str, object] = field(default_factory=dict)  # flow parameters replacing the defaults


def sample() -> pd.DataFrame:
    return pd.read_csv(SAMPLE)


def csv_file(name: str, content: bytes | str | pd.DataFrame) -> Callable[[Path, LocalServer], FileSource]:
    def build(root: Path, _: LocalServer) -> FileSource:
        path = root / name
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        return FileSource(path=str(path))
    return build


def parquet_file(name: str, frame: pd.DataFrame) -> Callable[[Path, LocalServer], FileSource]:
    def build(root: Path, _: LocalServer) -> FileSource:
        frame.to_parquet(root / name, index=False)
        return FileSource(path=str(root / name))
    return build


def fifo(name: str) -> Callable[[Path, LocalServer], FileSource]:
    def build(root: Path, _: LocalServer) -> FileSource:
        os.mkfifo(root / name)  # never opened by a correct reader: opening it would block the test
        return FileSource(path=str(root / name))
    return build


def with_bad_series(values: list[float | None], stamps: list[str] | None = None) -> pd.DataFrame:
    """The sample plus one series 'bad' with these values (monthly unless ``stamps`` are given)."""
    ds = stamps or list(pd.date_range("2000-01-01", periods=len(values), freq="MS").strftime("%Y-%m-%d"))
    return pd.concat([sample(), pd.DataFrame({"unique_id": "bad", "ds": ds, "y": values})], ignore_index=True)


def url(path: str, **kwargs: str) -> Callable[[Path, LocalServer], UrlSource]:
    return lambda _, server: UrlSource(url=server.url(path) if path.startswith("/") else path, **kwargs)


def duck(**kwargs: object) -> Callable[[Path, LocalServer], DuckDBSource]:
    def build(root: Path, _: LocalServer) -> DuckDBSource:
        path = root / "warehouse.duckdb"
        frame = sample()  # noqa: F841 - read by the CREATE TABLE below
        with duckdb.connect(str(path)) as con:
            con.execute("CREATE OR REPLACE TABLE macro AS SELECT * FROM frame")
        return DuckDBSource(database=str(kwargs.pop("database", path)), **kwargs)  # type: ignore[arg-type]
    return build


def rejected(reason: str) -> str:
    return rf"{reason} \(.*\): 1 series, e.g. 'bad'\..*Fix"


RNG = np.random.default_rng(0)
CASES: dict[str, Case] = {
    # files
    "missing column": Case(csv_file("a.csv", sample().drop(columns="y")), InputDataError,
                           r"columns are missing: \['y'\]"),
    "misnamed id column": Case(lambda r, s: FileSource(path=str(SAMPLE), columns={"id_col": "series"}),
                               InputDataError, r"columns are missing: \['series'\]"),
    "mixed types": Case(csv_file("a.csv", sample().astype({"y": object}).assign(
        y=lambda f: f["y"].where(f.index != 10, "twelve"))), InputDataError,
        r"Column 'y' has 1 values that are not numbers"),
    "unparseable date": Case(csv_file("a.csv", sample().assign(
        ds=lambda f: f["ds"].where(f.index != 5, "2009-13-45"))), InputDataError,
        r"Column 'ds' has 1 values that are not timestamps.*'2009-13-45'"),
    "mixed time zones": Case(csv_file("a.csv", sample().assign(
        ds=lambda f: f["ds"].where(f.index == 0, f["ds"] + "T00:00:00+02:00"))), InputDataError,
        r"mixes timestamps with and without a time zone.*'1959-01-01'"),
    "empty file": Case(csv_file("a.csv", b""), InputDataError, "is empty"),
    "header only": Case(csv_file("a.csv", "unique_id,ds,y\n"), InputDataError, "header but no data rows"),
    "not UTF-8": Case(csv_file("a.csv", "unique_id,ds,y\nZürich,2024-01-01,1\n".encode("latin-1")), InputDataError,
                      "is not UTF-8 text"),
    "wrong delimiter": Case(csv_file("a.csv", SAMPLE.read_text().replace(",", ";")), InputDataError,
                            "seems to use ';' as separator"),
    "path traversal": Case(lambda r, s: FileSource(path=str(r / ".." / ".." / "etc" / "passwd.csv")), InputDataError,
                           "is outside the data roots"),
    "glob matches nothing": Case(lambda r, s: FileSource(path=str(r / "*.parquet")), InputDataError,
                                 "No file matches"),
    "unsupported file type": Case(csv_file("a.xlsx", b"PK\x03\x04"), InputDataError, "Unsupported file type"),
    "empty ids": Case(csv_file("a.csv", sample().assign(unique_id=lambda f: f["unique_id"].where(f.index != 3))),
                      InputDataError, r"id column has 1 empty values \(rows \[3\]\)"),
    "NUL bytes, no line end": Case(csv_file("a.csv", b"\0" * (20 << 20)), InputDataError,
                                   r"is not a CSV file: its first line \(the header\) does not end within"),
    "NUL bytes in the header": Case(csv_file("a.csv", b"unique_id,\0ds,y\n" + b"\0" * 1000), InputDataError,
                                    "its header holds NUL bytes"),
    "short row": Case(csv_file("a.csv", SAMPLE.read_text().replace("\ncpi,1959-10-01,", "\ncpi,1959-10-01\n", 1)),
                      InputDataError, r"line \d+ has 2 fields, the header has 3: 'cpi,1959-10-01'"),
    "long row": Case(csv_file("a.csv", "unique_id,ds,y\na,2024-01-01,1\na,2024-01-02,2,9\n"), InputDataError,
                     r"line 3 has 4 fields, the header has 3"),
    "header named twice": Case(csv_file("a.csv", "unique_id,ds,y,y\na,2024-01-01,1,2\n"), InputDataError,
                               "has the column 'y' twice in its header"),
    "epoch seconds as time": Case(csv_file("a.csv", sample().assign(
        ds=lambda f: pd.to_datetime(f["ds"]).astype("int64") // 10**9 + 10**9)), InputDataError,
        r"time column 'ds' holds integers \(e.g. '\d+'\), not dates"),
    "integer time in Parquet": Case(parquet_file("a.parquet", sample().assign(ds=lambda f: f.index.astype("int64"))),
                                    InputDataError, r"time column 'ds' holds integers \(e.g. 0\), not dates"),
    "timestamps as values": Case(parquet_file("a.parquet", sample().assign(y=lambda f: pd.to_datetime(f["ds"]))),
                                 InputDataError, "Column 'y' holds timestamps, not numbers"),
    "a directory as the file": Case(lambda r, s: FileSource(path=str(r)), InputDataError,
                                    r"Input file .* is a directory; give a file, or a glob"),
    "a named pipe as the file": Case(fifo("pipe.csv"), InputDataError, r"is a named pipe \(FIFO\), not a regular file"),
    "a device as the file": Case(lambda r, s: FileSource(path="/dev/zero"), InputDataError,
                                 "is a character device, not a regular file", env={"FORECAST_DATA_ROOTS": "/dev"}),
    "wide without its time column": Case(lambda r, s: FileSource(path=str(SAMPLE), format="wide",
                                                                 columns={"time_col": "date"}),
                                         InputDataError, r"columns are missing: \['date'\]"),
    # URLs
    "HTML page from a URL": Case(url("/page"), InputDataError, "is an HTML page"),
    "URL 404": Case(url("/missing.csv"), InputDataError, "answered HTTP 404"),
    "URL 500": Case(url("/broken"), TransientSourceError, "answered HTTP 500"),
    "slow URL": Case(url("/slow"), TransientSourceError, "Timed out fetching"),
    "oversize URL": Case(url("/sample.csv"), InputDataError, "larger than the 1,000-byte download limit",
                         env={"FORECAST_URL_MAX_BYTES": "1000"}),
    "private address": Case(url("http://10.0.0.1/data.csv"), InputDataError, "resolves to 10.0.0.1"),
    "metadata address": Case(url("http://169.254.169.254/latest/meta-data/"), InputDataError,
                             "resolves to 169.254.169.254"),
    "loopback not allow-listed": Case(url("/sample.csv"), InputDataError, "resolves to 127.0.0.1",
                                      env={"FORECAST_URL_ALLOWLIST": ""}),
    "unknown content": Case(url("/blob"), InputDataError, "Cannot tell what"),
    # DuckDB
    "invalid SQL": Case(duck(query="SELEC * FROM macro"), InputDataError, "does not parse"),
    "write statement": Case(duck(query="DELETE FROM macro"), InputDataError, "is a DELETE statement"),
    "two statements": Case(duck(query="SELECT * FROM macro; SELECT 1"), InputDataError, "holds 2 statements"),
    "missing table": Case(duck(table="sales"), InputDataError, r"Table 'sales' does not exist.*\['macro'\]"),
    "database outside the roots": Case(duck(table="macro", database="/tmp/../var/x.duckdb"), InputDataError,
                                       "outside the data roots"),
    "database is a directory": Case(duck(table="macro", database="."), InputDataError,
                                    "DuckDB database .* is a directory"),
    "query past the time limit": Case(duck(query="SELECT count(*) AS unique_id, 1 AS ds, 1 AS y FROM range(100000000) "
                                             "a, range(100000000) b"), InputDataError,
                                      "ran longer than 1 s and was interrupted.*FORECAST_DUCKDB_TIMEOUT",
                                      env={"FORECAST_DUCKDB_TIMEOUT": "1"}),
    "SQL reading a file": Case(duck(query="SELECT * FROM read_csv('/etc/passwd')"), InputDataError,
                               "DuckDB could not read"),
    # per-series rejections
    "all-NaN series": Case(csv_file("a.csv", with_bad_series([None] * 10)), DataValidationError,
                           rejected("all_missing")),
    "too-short series": Case(csv_file("a.csv", with_bad_series([1.0, 2.0])), DataValidationError,
                             rejected("too_few_observations")),
    # Dates alone always fit some calendar (days, business days) with gaps; times of day on no grid do not.
    "irregular timestamps": Case(csv_file("a.csv", with_bad_series(
        [1.0, 2.0, 3.0, 4.0], ["2024-01-01 00:00", "2024-01-02 03:17", "2024-01-05 11:02", "2024-01-09 07:40"])),
        DataValidationError, rejected("irregular_timestamps")),
    "duplicate timestamps": Case(csv_file("a.csv", with_bad_series(
        [1.0, 2.0, 3.0], ["2024-01-01", "2024-01-01", "2024-02-01"])), DataValidationError,
        rejected("duplicate_timestamp")),
    "infinite value": Case(csv_file("a.csv", with_bad_series([1.0, float("inf"), 3.0, 4.0])), DataValidationError,
                           rejected("non_finite_value")),
    "empty timestamp": Case(csv_file("a.csv", with_bad_series([1.0, 2.0, 3.0, 4.0], [
        "2024-01-01", "", "2024-03-01", "2024-04-01"])), DataValidationError, rejected("null_timestamp")),
    "constant series": Case(csv_file("a.csv", with_bad_series([5.0] * 12)), DataValidationError, rejected("constant")),
    "too many gaps": Case(csv_file("a.csv", with_bad_series([1.0, None, None, None, 2.0, None, None, 3.0, 4.0])),
                          DataValidationError, rejected("too_many_gaps")),
    "value past float32": Case(csv_file("a.csv", with_bad_series([1.0, 2e300, 3.0, 4.0])), DataValidationError,
                               rejected("out_of_range")),
    "whole file past float32": Case(csv_file("a.csv", sample().assign(y=lambda f: f["y"] * 1e300)),
                                    DataValidationError, r"12 of 12 series cannot be forecast \(12 rejected",
                                    checks=SeriesChecks()),
    "model diverges on every series": Case(lambda r, s: FileSource(path=str(SAMPLE)), DataValidationError,
                                           r"No series could be forecast.*\(0 rejected, 12 failed\).*"
                                           r"non_finite_forecast \(.*\): 12",
                                           checks=SeriesChecks(max_rejected_fraction=1.0),
                                           params={"horizon": 10000}),
    # parameters and configuration
    "unknown frequency": Case(lambda r, s: FileSource(path=str(SAMPLE)), ParameterTypeError,
                              "freq: Value error, Unknown frequency 'XYZ'", params={"freq": "XYZ"}),
    "backward frequency": Case(lambda r, s: FileSource(path=str(SAMPLE)), ParameterTypeError,
                               "Frequency '-1D' steps back in time", params={"freq": "-1D"}),
    "output root is a device": Case(lambda r, s: FileSource(path=str(SAMPLE)), OutputRootError,
                                    "/dev/null is a character device, not a directory",
                                    params={"output_root": "/dev/null"}),
    "empty output root": Case(lambda r, s: FileSource(path=str(SAMPLE)), ParameterTypeError,
                              "output_root is empty", params={"output_root": ""}),
    # URLs, hostile
    "trickling server": Case(url("/trickle.csv"), TransientSourceError, "took longer than the 1-second total limit",
                             env={"FORECAST_URL_TOTAL_TIMEOUT": "1"}),
    "decompression bomb": Case(url("/bomb.csv"), InputDataError,
                               "larger than the 1,048,576-byte download limit once decompressed",
                               env={"FORECAST_URL_MAX_BYTES": str(1 << 20)}),
    "stacked encodings": Case(url("/nested.csv"), InputDataError, r"several content codings stacked \('gzip, gzip'\)"),
    "claims gzip, is not": Case(url("/not-gzip.csv"), InputDataError, "is sent as gzip .* but is not valid gzip"),
    "port out of range": Case(url("http://127.0.0.1:99999/x.csv"), InputDataError,
                              "port 99999 is out of range 1-65535"),
    "stale series": Case(csv_file("a.csv", with_bad_series(list(RNG.normal(size=12)),
                                                           [f"{y}-01-01" for y in range(1890, 1902)])),
                         DataValidationError, rejected("stale"),
                         checks=SeriesChecks(max_rejected_fraction=0, max_staleness=80)),
}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with http_server() as running:
        running.routes.update({
            "/sample.csv": Route(body=SAMPLE.read_bytes()),
            "/page": Route(body=b"<!DOCTYPE html><html><title>Login</title></html>", content_type="text/html"),
            "/broken": Route(500, b"down", "text/plain"),
            "/slow": Route(body=SAMPLE.read_bytes(), delay=3),
            "/blob": Route(body=SAMPLE.read_bytes(), content_type="application/octet-stream"),
            "/trickle.csv": Route(body=SAMPLE.read_bytes()[:100], trickle=0.05),
            "/bomb.csv": Route(body=gzip.compress(bytes(64 << 20)), headers={"Content-Encoding": "gzip"}),
            "/nested.csv": Route(body=gzip.compress(gzip.compress(SAMPLE.read_bytes())),
                                 headers={"Content-Encoding": "gzip, gzip"}),
            "/not-gzip.csv": Route(body=SAMPLE.read_bytes(), headers={"Content-Encoding": "gzip"}),
        })
        yield running


@pytest.fixture(scope="module")
def earlier_output(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: ResolvedCheckpoint) -> Path:
    """Output root of one good run of the job, copied into every case's workspace."""
    root = tmp_path_factory.mktemp("earlier") / "outputs"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root.parent)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root.parent / 'mlflow.db'}")
        patch.setenv("FORECAST_DATA_ROOTS", str(SAMPLE.parent))
        summary = batch_forecast(source=FileSource(path=str(SAMPLE)), horizon=4, job=JOB, as_of=AS_OF,
                                 model=ModelParams(checkpoint=str(tiny_checkpoint.weights.parent)),
                                 output_root=str(root))
    assert summary.series_ok == 12
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, workspace: Path, tiny_checkpoint: ResolvedCheckpoint, server: LocalServer,
                   earlier_output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    root = workspace / "outputs"
    shutil.copytree(earlier_output, root)
    before = snapshot(root)
    assert any("forecasts/job=corpus" in p for p in before)
    source = case.build(workspace, server)
    params = {"horizon": 4, "output_root": str(root), **case.params}
    with pytest.raises(case.error, match=case.message):
        batch_forecast(source=source, job=JOB, as_of=AS_OF, checks=case.checks,
                       model=ModelParams(checkpoint=str(tiny_checkpoint.weights.parent)), **params)
    assert snapshot(root) == before, f"{name}: the failed run changed the published outputs"
    assert not any((root / "_staging").iterdir()), f"{name}: staging left behind"


def test_corpus_covers_every_source_kind(tmp_path: Path) -> None:
    assert len(CASES) >= 25
    with http_server() as running:
        kinds = {type(case.build(tmp_path, running)).__name__ for case in CASES.values()}
    assert kinds == {"FileSource", "UrlSource", "DuckDBSource"}
