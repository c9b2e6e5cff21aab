"""DuckDB sources on real database files: tables, bound queries, time limits, and what is refused."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.canonical import to_canonical
from pipeline.contracts import DS, ID
from pipeline.errors import InputDataError
from pipeline.sources import DuckDBSource, SourcePolicy, read_source
from pipeline.sources.database import check_query


@pytest.fixture
def database(tmp_path: Path, sample_frame: pd.DataFrame) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA sales")
        con.execute("CREATE TABLE sales.macro AS SELECT unique_id, CAST(ds AS DATE) AS ds, y FROM sample_frame")
    return path


def read(database: Path, **kwargs: object) -> pd.DataFrame:
    return read_source(DuckDBSource(database=str(database), **kwargs), SourcePolicy(data_roots=(database.parent,)))


def test_table_and_schema_qualified_table(database: Path) -> None:
    assert len(read(database, table="sales.macro")) == 2436
    assert len(read(database, table="macro")) == 2436


def test_query_with_bound_parameters(database: Path) -> None:
    frame = read(database, query="SELECT * FROM sales.macro WHERE unique_id = ? AND ds >= ?",
                 params=["cpi", "2000-01-01"])
    assert set(frame["unique_id"]) == {"cpi"} and len(frame) == 39
    named = read(database, query="SELECT * FROM sales.macro WHERE unique_id = $id", params={"id": "m1"})
    assert set(named["unique_id"]) == {"m1"}


def test_injection_through_a_parameter_is_just_a_value(database: Path) -> None:
    frame = read(database, query="SELECT * FROM sales.macro WHERE unique_id = ?", params=["x' OR '1'='1"])
    assert frame.empty


@pytest.mark.parametrize(
    ("query", "message"),
    [("DELETE FROM sales.macro", "is a DELETE statement"),
     ("SELECT 1; DROP TABLE sales.macro", "holds 2 statements"),
     ("COPY sales.macro TO 'out.csv'", "is a COPY statement"),
     ("ATTACH 'other.db'", "is a ATTACH statement"),
     ("SELEC * FROM sales.macro", "does not parse")],
)
def test_only_one_select_is_accepted(database: Path, query: str, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        check_query(query)
    with pytest.raises(InputDataError, match=message):
        read(database, query=query)
    assert len(read(database, table="sales.macro")) == 2436, "the database must be unchanged"


def test_missing_table_lists_the_tables(database: Path) -> None:
    with pytest.raises(InputDataError, match=r"Table 'forecasts' does not exist.*\['macro'\]"):
        read(database, table="forecasts")


def test_sql_cannot_read_files(database: Path) -> None:
    with pytest.raises(InputDataError, match="DuckDB could not read"):
        read(database, query="SELECT * FROM read_csv('/etc/passwd')")


def test_database_outside_the_roots_is_refused(database: Path, tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="outside the data roots"):
        read_source(DuckDBSource(database=str(database), table="macro"),
                    SourcePolicy(data_roots=(tmp_path / "elsewhere",)))


def test_table_or_query_exactly_one() -> None:
    with pytest.raises(ValueError, match="exactly one of `table` or `query`"):
        DuckDBSource(database="x.duckdb")
    with pytest.raises(ValueError, match="exactly one of `table` or `query`"):
        DuckDBSource(database="x.duckdb", table="t", query="SELECT 1")


# A time limit on every query, special paths, ids and integer time columns.

SLOW = ("SELECT 'a' AS unique_id, DATE '2024-01-01' AS ds, count(*)::DOUBLE AS y "
        "FROM range(1000000000) AS a, range(1000000000) AS b")


def _timer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "duckdb-time-limit"]


def test_a_slow_query_is_interrupted_after_the_time_limit(database: Path) -> None:
    policy = SourcePolicy(data_roots=(database.parent,), query_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(InputDataError, match=r"^The DuckDB query ran longer than 0\.5 s and was interrupted\. Fix: "
                                             r"make it cheaper \(filter, aggregate\) or raise FORECAST_DUCKDB_TIMEOUT"):
        read_source(DuckDBSource(database=str(database), query=SLOW), policy)
    assert time.monotonic() - started < 30, "the query must stop soon after its time limit"
    assert not _timer_threads(), "the timer thread must end with the query"


def test_a_query_within_the_time_limit_leaves_no_timer(database: Path) -> None:
    policy = SourcePolicy(data_roots=(database.parent,), query_timeout=30)
    assert len(read_source(DuckDBSource(database=str(database), table="macro"), policy)) == 2436
    assert not _timer_threads(), "the timer thread must end with the query"


@pytest.mark.parametrize(("kind", "message"), [
    ("directory", r"DuckDB database .*/db\.duckdb is a directory; give the path of the \.duckdb file"),
    ("fifo", r"DuckDB database .*/db\.duckdb is a named pipe \(FIFO\), not a regular file"),
    ("missing", r"DuckDB database .*/db\.duckdb does not exist"),
], ids=["directory", "fifo", "missing"])
def test_a_database_path_that_is_not_a_file_says_what_it_is(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / "db.duckdb"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(InputDataError, match=message):
        read(path, table="macro")


def test_ids_keep_their_own_type_as_text(tmp_path: Path) -> None:
    path = tmp_path / "ids.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE text_ids AS SELECT * FROM (VALUES ('007', DATE '2024-01-01', 1.0), "
                    "('0042', DATE '2024-01-01', 2.0), ('7', DATE '2024-01-01', 3.0)) AS t(unique_id, ds, y)")
        con.execute("CREATE TABLE int_ids AS SELECT 7 AS unique_id, DATE '2024-01-01' AS ds, 1.0 AS y")
    assert sorted(to_canonical(read(path, table="text_ids"))[ID]) == ["0042", "007", "7"]
    assert to_canonical(read(path, table="int_ids"))[ID].tolist() == ["7"]


def test_integer_time_columns_are_years_or_refused(tmp_path: Path) -> None:
    path = tmp_path / "years.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE yearly AS SELECT 'a' AS unique_id, 1990 + i AS ds, i::DOUBLE AS y FROM range(3) t(i)")
        con.execute("CREATE TABLE with_null AS SELECT 'a' AS unique_id, CAST(NULL AS INTEGER) AS ds, 1.0 AS y "
                    "UNION ALL SELECT 'a', 1990, 2.0")
        con.execute("CREATE TABLE epoch AS SELECT 'a' AS unique_id, 1700000000 + i * 86400 AS ds, 1.0 AS y "
                    "FROM range(3) t(i)")
    frame = to_canonical(read(path, table="yearly"))
    assert frame[DS].tolist() == [pd.Timestamp(f"{year}-01-01") for year in (1990, 1991, 1992)]
    assert pd.Timestamp("1990-01-01") in to_canonical(read(path, table="with_null"))[DS].tolist()
    with pytest.raises(InputDataError, match=r"The time column 'ds' holds integers \(e\.g\. 1700000000\), not dates"):
        to_canonical(read(path, table="epoch"))


def test_table_names_in_messages_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "many.duckdb"
    with duckdb.connect(str(path)) as con:
        for index in range(30):
            con.execute(f'CREATE TABLE "{index:02d}_{"x" * 5000}" (a INTEGER)')
    with pytest.raises(InputDataError, match=r"Tables found: \[.*more characters.*and 20 more\]") as caught:
        read(path, table="y" * 100_000)
    assert len(str(caught.value)) < 2000, f"a message of {len(str(caught.value))} characters"
