"""A table, or one read-only query, from a DuckDB database file opened read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.canonical import ColumnMapping, Layout
from tasks.errors import InputDataError
from tasks.sources.files import resolve_within_roots
from tasks.sources.policy import SourcePolicy

__all__ = ["DuckDBSource", "Scalar", "check_query", "read_duckdb", "table_sql"]

Scalar = str | int | float | bool | None


class DuckDBSource(BaseModel):
    """A DuckDB database file and either a table name or one SELECT/WITH query with bound parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["duckdb"] = "duckdb"
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
        raise InputDataError(f"The DuckDB query does not parse: {str(exc).splitlines()[0]}. Fix the SQL.") from exc
    if len(statements) != 1:
        raise InputDataError(f"The DuckDB query holds {len(statements)} statements; give exactly one SELECT.")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise InputDataError(f"The DuckDB query is a {statements[0].type.name} statement; only SELECT or WITH "
                             "queries are allowed (the database is opened read-only).")


def read_duckdb(source: DuckDBSource, policy: SourcePolicy) -> pd.DataFrame:
    """Runs the read on a read-only connection with file-system access from SQL disabled."""
    path = resolve_within_roots(Path(source.database), policy)
    if not path.is_file():
        raise InputDataError(f"DuckDB database {path} does not exist. Fix the database path.")
    if source.query is not None:
        check_query(source.query)
    try:
        with duckdb.connect(str(path), read_only=True, config={"enable_external_access": False}) as con:
            sql = table_sql(con, source.table) if source.table else str(source.query)
            return con.execute(sql, source.params or None).df()
    except duckdb.Error as exc:
        raise InputDataError(f"DuckDB could not read {source.describe()}: {str(exc).splitlines()[0]}.") from exc


def table_sql(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """``SELECT *`` from the named table, its schema found when not given; names are quoted, never spliced."""
    schema, _, name = table.rpartition(".")
    schemas = [row[0] for row in con.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_name = ? AND (? = '' OR "
        "table_schema = ?)", [name, schema, schema]).fetchall()]
    if not schemas:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        raise InputDataError(f"Table {table!r} does not exist in the database. Tables found: {tables[:20]}.")
    if len(schemas) > 1:
        raise InputDataError(f"Table {table!r} exists in several schemas {schemas}; write it as schema.table.")
    return "SELECT * FROM " + ".".join('"' + part.replace('"', '""') + '"' for part in (schemas[0], name))
