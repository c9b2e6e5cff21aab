"""A table, or one read-only query, from a DuckDB database file opened read-only."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from forecast_model.errors import shorten, shorten_names
from pipeline.canonical import ColumnMapping, Layout
from pipeline.errors import InputDataError
from pipeline.sources.files import require_file, resolve_within_roots
from pipeline.sources.policy import SourcePolicy, fixed_kind

__all__ = ["DuckDBSource", "Scalar", "check_query", "database_path", "duckdb_problem", "read_duckdb",
           "table_sql", "time_limit"]

Scalar = str | int | float | bool | None
_REINTERRUPT_S = 0.05  # how often a query past its time is interrupted again (see _interrupt_after)


class DuckDBSource(BaseModel):
    """A DuckDB database file and either a table name or one SELECT/WITH query with bound parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["duckdb"] = Field("duckdb", description="Fixed: a DuckDB source.", json_schema_extra=fixed_kind)
    database: str = Field(..., min_length=1, description="Path of the .duckdb file, under a data root.")
    table: str | None = Field(None, description="Table or view to read whole, optionally schema.table.")
    query: str | None = Field(None, description="One SELECT or WITH statement; write values as ? or $name.")
    params: list[Scalar] | dict[str, Scalar] = Field(
        default_factory=list, description="Values bound to the query's ? or $name placeholders.")
    format: Layout = Field("long", description="long or wide, as for files.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="Input column names.")

    @model_validator(mode="after")
    def _columns_fit_layout(self) -> DuckDBSource:
        self.columns.check_for(self.format)
        return self

    @model_validator(mode="after")
    def _table_or_query(self) -> DuckDBSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self

    def describe(self) -> str:
        """A loggable description (the query text is kept: values are bound, never written into it)."""
        return f"duckdb:{self.database}?" + (f"table={self.table}" if self.table else f"query={self.query}")


def check_query(query: str) -> None:
    """Accepts exactly one SELECT (or WITH ... SELECT) statement; parses it without running it."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise InputDataError(f"The DuckDB query does not parse: {duckdb_problem(exc)}. Fix the SQL.") from exc
    if len(statements) != 1:
        raise InputDataError(f"The DuckDB query holds {len(statements)} statements; give exactly one SELECT.")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise InputDataError(f"The DuckDB query is a {statements[0].type.name} statement; only SELECT or WITH "
                             "queries are allowed (the database is opened read-only).")


def read_duckdb(source: DuckDBSource, policy: SourcePolicy) -> pd.DataFrame:
    """Runs the read on a read-only connection with file-system access from SQL disabled, interrupted after
    ``policy.query_timeout`` seconds."""
    path = database_path(source, policy)
    if source.query is not None:
        check_query(source.query)
    try:
        with duckdb.connect(str(path), read_only=True, config={"enable_external_access": False}) as con, \
                time_limit(con, policy.query_timeout):
            sql = table_sql(con, source.table) if source.table else str(source.query)
            return con.execute(sql, source.params or None).df()
    except duckdb.Error as exc:
        raise InputDataError(f"DuckDB could not read {source.describe()}: {duckdb_problem(exc)}.") from exc


def database_path(source: DuckDBSource, policy: SourcePolicy) -> Path:
    """The database file's real path: under a data root, and a regular file (never opened to find out)."""
    path = resolve_within_roots(Path(source.database), policy)
    require_file(path, "DuckDB database", "give the path of the .duckdb file")
    return path


@contextlib.contextmanager
def time_limit(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupts what runs on ``con`` once ``seconds`` have passed, and reports it as an InputDataError.

    DuckDB has no statement timeout of its own: without this, a costly query (a join without a condition)
    holds the worker for as long as it runs. The timer thread always ends with the block.
    """
    done, fired = threading.Event(), threading.Event()
    timer = threading.Thread(target=_interrupt_after, args=(con, seconds, done, fired), daemon=True,
                             name="duckdb-time-limit")
    timer.start()
    try:
        yield
    except duckdb.InterruptException as exc:
        if not fired.is_set():
            raise
        raise InputDataError(f"The DuckDB query ran longer than {seconds:g} s and was interrupted. Fix: make it "
                             "cheaper (filter, aggregate) or raise FORECAST_DUCKDB_TIMEOUT.") from exc
    finally:
        done.set()
        timer.join()  # so that no interrupt reaches the connection once it is closed


def _interrupt_after(con: duckdb.DuckDBPyConnection, seconds: float, done: threading.Event,
                     fired: threading.Event) -> None:
    if done.wait(seconds):
        return
    fired.set()
    while True:  # again and again: an interrupt that falls between two statements is lost
        con.interrupt()
        if done.wait(_REINTERRUPT_S):
            return


def duckdb_problem(exc: duckdb.Error) -> str:
    """DuckDB's message, first line only (it goes on with hints and options), cut to a bounded length: it
    may quote the query or a line of the data."""
    return shorten(str(exc).partition("\n")[0], 300)


def table_sql(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """``SELECT *`` from the named table, its schema found when not given; names are quoted, never spliced."""
    schema, _, name = table.rpartition(".")
    schemas = [row[0] for row in con.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_name = ? AND (? = '' OR "
        "table_schema = ?)", [name, schema, schema]).fetchall()]
    if not schemas:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        raise InputDataError(f"Table {shorten(table, 100)} does not exist in the database. Tables found: "
                             f"{shorten_names(tables, 10, 60)}.")
    if len(schemas) > 1:
        raise InputDataError(f"Table {shorten(table, 100)} exists in several schemas "
                             f"{shorten_names(schemas, 10, 60)}; write it as schema.table.")
    return "SELECT * FROM " + ".".join('"' + part.replace('"', '""') + '"' for part in (schemas[0], name))
