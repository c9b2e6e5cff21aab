"""DuckDB sources on real database files: tables, bound queries, and what is refused."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tasks.errors import InputDataError
from tasks.sources import DuckDBSource, SourcePolicy, read_source
from tasks.sources.database import check_query


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
