"""Shards: split a job by a stable hash of ``unique_id`` and read each shard alone, filtered inside DuckDB.

A series' shard is ``int(md5(unique_id)[:16 hex digits], 16) % shards``: the same in Python and in SQL,
on every machine and in every version, so with a fixed number of shards a series always lands in the same
shard. The plan step writes that map (one row per distinct id, read with only the id column) to the run's
staging directory. A file source (Parquet, CSV) is then split by the map in one DuckDB pass into a Parquet
part per shard under ``<staging>/shard_parts/``, so each shard reads its own small part instead of scanning
the whole source again (at 50 shards, one pass instead of 50); a DuckDB database source has no file access
from SQL, so its shards join their part of the map against the source query inside DuckDB instead. Either
way only that shard's rows ever reach Python: peak memory follows the shard size, not the job size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from forecast_model.errors import shorten, shorten_names
from pipeline.canonical import HEADER_LIMIT, ColumnMapping, csv_header, empty_canonical, to_canonical
from pipeline.contracts import ID
from pipeline.errors import InputDataError
from pipeline.sources import DuckDBSource, FileSource, SourcePolicy, UrlSource
from pipeline.sources.database import Scalar, check_query, database_path, duckdb_problem, table_sql, time_limit
from pipeline.sources.files import expand, require_input_file

__all__ = ["SHARD_MAP", "SHARD_PARTS", "ShardPlan", "plan_shards", "read_shard", "shard_of", "shard_sql"]

SHARD_MAP = "shard_map.parquet"
SHARD_PARTS = "shard_parts"  # beside the map: <staging>/shard_parts/<_PART_COLUMN>=<shard>/*.parquet
_PART_COLUMN = "_forecast_shard"
_DUCKDB_MEMORY = "2GB"  # DuckDB spills beyond this; the shard frame itself is held by pandas
_KINDS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


class ShardPlan(BaseModel):
    """How a job is split: the number of shards, series per shard, and the staged id -> shard map."""

    model_config = ConfigDict(frozen=True)

    shards: int
    series: int
    sizes: list[int]
    map_path: Path


def shard_of(ids: Iterable[str], shards: int) -> np.ndarray:
    """The shard of each id (the reference the SQL of :func:`shard_sql` matches)."""
    return np.array([int(hashlib.md5(i.encode()).hexdigest()[:16], 16) % shards for i in ids], dtype=np.int64)


def shard_sql(column: str, shards: int) -> str:
    """DuckDB expression of :func:`shard_of` for a quoted column name."""
    return f"(('0x' || left(md5(CAST({column} AS VARCHAR)), 16))::UBIGINT % {int(shards)})::INTEGER"


def plan_shards(source: FileSource | UrlSource | DuckDBSource, policy: SourcePolicy, staging: Path, *,
                series_per_shard: int, shards: int | None = None) -> ShardPlan:
    """Counts the source's series, picks the number of shards and stages the id -> shard map."""
    reader = _reader(source, policy)
    ident = _quote(source.columns.id_col)
    with reader.connect() as con:
        ids = con.sql(f"SELECT DISTINCT CAST({ident} AS VARCHAR) AS {ID} FROM {reader.relation} "
                          f"WHERE {ident} IS NOT NULL", params=_params(source)).to_arrow_table()
    if ids.num_rows == 0:
        raise InputDataError(f"{source.describe()} holds no series (no non-empty {shorten(source.columns.id_col)})."
                             " Fix the source or its columns.id_col.")
    count = shards or max(1, math.ceil(ids.num_rows / series_per_shard))
    assignment = shard_of(ids.column(ID).to_pylist(), count)
    path = staging / SHARD_MAP
    shard_map = pa.table({ID: ids.column(ID), "shard": pa.array(assignment, pa.int32())})
    pq.write_table(shard_map, path)
    if reader.database is None:
        _split(reader, ident, shard_map, staging / SHARD_PARTS)
    sizes = np.bincount(assignment, minlength=count).tolist()
    return ShardPlan(shards=count, series=ids.num_rows, sizes=sizes, map_path=path)


def _split(reader: _Reader, ident: str, shard_map: pa.Table, parts: Path) -> None:
    """Writes the source's rows, as read, into one Parquet part per shard (rows without an id have no shard,
    as in the per-shard query); a part is staged only when the whole pass has succeeded."""
    partial = parts.with_name(parts.name + ".partial")
    with reader.connect() as con:
        con.register("shard_map", shard_map)
        con.execute(f"COPY (SELECT source.*, shard_map.shard AS {_PART_COLUMN} FROM {reader.relation} AS source "
                    f"JOIN shard_map ON CAST(source.{ident} AS VARCHAR) = shard_map.{ID}) "
                    f"TO {_literal(str(partial))} (FORMAT parquet, PARTITION_BY ({_PART_COLUMN}))")
    partial.rename(parts)


def read_shard(source: FileSource | UrlSource | DuckDBSource, policy: SourcePolicy, map_path: Path,
               shard: int, covariates: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The canonical frame of one shard's series: its part, when the plan split the source, else the map's
    ids for ``shard`` joined against the source inside DuckDB; with ``covariates``, their columns too (see
    :func:`pipeline.canonical.to_canonical`)."""
    reader = _reader(source, policy)  # checked here too: a worker applies its own data roots
    ident = _quote(source.columns.id_col)
    parts = map_path.parent / SHARD_PARTS
    if parts.is_dir():
        frame = _read_part(parts / f"{_PART_COLUMN}={int(shard)}", source.columns, reader.timeout)
    else:
        ids = pq.read_table(map_path, columns=[ID], filters=[("shard", "=", shard)])
        with reader.connect() as con:
            con.register("shard_ids", ids)
            frame = con.execute(f"SELECT * FROM {reader.relation} WHERE CAST({ident} AS VARCHAR) IN "
                                f"(SELECT {ID} FROM shard_ids)", _params(source)).df()
    if frame.empty:  # a shard the hash gave no id (more shards than series, or bad luck): nothing to forecast
        empty = empty_canonical()
        return empty.assign(**{name: pd.Series(dtype="float64" if kind == "numerical" else "string")
                               for name, kind in (covariates or {}).items()})
    return to_canonical(frame, "long", source.columns, covariates=covariates)


def _read_part(part: Path, columns: ColumnMapping, timeout: float) -> pd.DataFrame:
    """One shard's part, ordered by id and time inside DuckDB (the split does not keep the source's order, and
    a frame that arrives in canonical order is not sorted again); a shard without series has no part."""
    files = sorted(part.glob("*.parquet")) if part.is_dir() else []
    if not files:
        return pd.DataFrame()
    order = [_quote(name) for name in (columns.id_col, columns.time_col) if name in pq.read_schema(files[0]).names]
    with _Reader("", timeout).connect() as con:
        return con.execute(f"SELECT * FROM read_parquet({_literal(str(part / '*.parquet'))}, hive_partitioning = "
                           f"false) ORDER BY {', '.join(order)}").df()


@dataclasses.dataclass(frozen=True)
class _Reader:
    """A source as one DuckDB relation, the database (None: in memory) to run it on, and how long its
    queries may run."""

    relation: str
    timeout: float
    database: Path | None = None

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A capped connection (a database is opened read-only, without file access from SQL) whose queries
        are interrupted after ``timeout`` seconds; DuckDB errors become an InputDataError."""
        config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": _DUCKDB_MEMORY}
        if self.database is not None:
            config["enable_external_access"] = False
        try:
            with duckdb.connect(str(self.database or ":memory:"), read_only=self.database is not None,
                                config=config) as con, time_limit(con, self.timeout):
                yield con
        except duckdb.Error as exc:
            raise InputDataError(f"DuckDB could not read the source: {_problem(exc)}. "
                                 "Fix the source, its columns or its query.") from exc


def _problem(exc: duckdb.Error) -> str:
    """DuckDB's first line, and for a CSV row of the wrong width the line that says so (DuckDB's words and
    two numbers; the "Original Line" before it, which quotes the data, is left out)."""
    width = next((line for line in str(exc).splitlines() if line.startswith("Expected Number of Columns")), "")
    return duckdb_problem(exc) + (f" ({width[:100]})" if width else "")


def _reader(source: FileSource | UrlSource | DuckDBSource, policy: SourcePolicy) -> _Reader:
    if isinstance(source, UrlSource) or source.format != "long":
        raise InputDataError(
            f"Sharded runs read long-format Parquet or CSV files, or DuckDB, so that each shard can be read "
            f"alone; {source.describe()} is {'a URL' if isinstance(source, UrlSource) else 'wide'}. Fix: use "
            "the batch-forecast flow, or convert the data to long-format Parquet under a data root.")
    if isinstance(source, DuckDBSource):
        return _duckdb_reader(source, policy)
    return _file_reader(source, policy)


def _file_reader(source: FileSource, policy: SourcePolicy) -> _Reader:
    paths = expand(source.path, policy)
    kinds = {_KINDS.get(p.suffix.lower()) for p in paths}
    if len(kinds) != 1 or None in kinds:
        raise InputDataError(f"{source.describe()} matches {sorted(str(k) for k in kinds)} files; a sharded run "
                             "reads files of one kind, .parquet or .csv. Fix the path or glob.")
    for path in paths:
        require_input_file(path)  # expand leaves a missing single path to the reader
    files = "[" + ", ".join(_literal(str(p)) for p in paths) + "]"
    if kinds == {"parquet"}:
        return _Reader(f"read_parquet({files})", policy.query_timeout)
    return _Reader(f"read_csv({files}, {_csv_options(paths)})", policy.query_timeout)


def _csv_options(paths: list[Path]) -> str:
    """read_csv options that read every column as text, under the header's names, and fail on a row of
    another width. DuckDB's sniffer is kept out: given one short row it reads each whole line as a single
    column, and it renames a repeated header name (y, y_1) where the plain reader refuses it."""
    names = _csv_names(paths)
    columns = "{" + ", ".join(f"{_literal(name)}: 'VARCHAR'" for name in names) + "}"
    return (f"header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
            f"columns = {columns}")


def _csv_names(paths: list[Path]) -> list[str]:
    """The header of every file, checked from its first HEADER_LIMIT bytes; all files must have the same one."""
    first: list[str] = []
    for path in paths:
        with path.open("rb") as stream:  # a regular file: expand has refused pipes and devices
            head = stream.read(HEADER_LIMIT + 1)
        names = csv_header(head[:HEADER_LIMIT], str(path), complete=len(head) <= HEADER_LIMIT)
        if first and names != first:
            raise InputDataError(f"{path} has columns {shorten_names(names, 10, 60)}, the first file has "
                                 f"{shorten_names(first, 10, 60)}. Fix: give all files of a glob the same columns.")
        first = first or names
    return first


def _duckdb_reader(source: DuckDBSource, policy: SourcePolicy) -> _Reader:
    path = database_path(source, policy)
    if source.query is not None:
        check_query(source.query)
    reader = _Reader("", policy.query_timeout, path)
    with reader.connect() as con:
        sql = table_sql(con, source.table) if source.table else str(source.query)
    return _Reader(f"({sql}) AS source", policy.query_timeout, path)


def _params(source: FileSource | UrlSource | DuckDBSource) -> list[Scalar] | dict[str, Scalar] | None:
    return (source.params or None) if isinstance(source, DuckDBSource) else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
