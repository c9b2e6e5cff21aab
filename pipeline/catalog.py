"""A DuckDB catalog file of views over the published Parquet, for BI tools and ad-hoc SQL.

Rebuilt after each publish into a temporary file that replaces the old one, so a reader never opens a
half-written catalog and two runs refreshing at once cannot corrupt it. The views hold the Parquet paths,
not the data.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.contracts import (
    ANOMALY_SCHEMA,
    COVARIATE_EFFECTS_SCHEMA,
    EVALUATION_SCHEMA,
    FORECAST_SCHEMA,
    QUANTILE_COLUMNS,
    REALIZED_SCHEMA,
    REALIZED_SERIES_SCHEMA,
    REVISION_SCHEMA,
    RUNS_SCHEMA,
    STATUS_SCHEMA,
)
from pipeline.monitoring import REALIZED_METRICS

__all__ = ["ACCURACY_WINDOW", "CATALOG_FILE", "STORAGE_VERSION", "TABLES", "build_catalog"]

CATALOG_FILE = "catalog.duckdb"
# The oldest storage format DuckDB still writes: the catalog holds only views, and BI tools bundle DuckDB 1.x,
# which cannot open files in 2.x's default format ("can only read versions between 64 and 68").
STORAGE_VERSION = "v1.0.0"
TABLES = {"forecasts": FORECAST_SCHEMA, "series_status": STATUS_SCHEMA, "runs": RUNS_SCHEMA,
          "evaluations": EVALUATION_SCHEMA, "anomalies": ANOMALY_SCHEMA, "anomaly_status": STATUS_SCHEMA,
          "revisions": REVISION_SCHEMA, "realized_accuracy": REALIZED_SCHEMA,
          "realized_accuracy_by_series": REALIZED_SERIES_SCHEMA,
          "covariate_effects": COVARIATE_EFFECTS_SCHEMA}
ACCURACY_WINDOW = 30  # accuracy_by_horizon, accuracy_by_series: the latest forecast (scoring) runs of each job
_DUCK_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
               pa.bool_(): "BOOLEAN", pa.date32(): "DATE",
               pa.timestamp("us"): "TIMESTAMP", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table_files(root: Path, table: str) -> list[Path]:
    return sorted(root.glob(f"{table}/*/*/*.parquet"))


def _read_sql(files: str) -> str:
    return f"SELECT * FROM read_parquet({files}, hive_partitioning = true, union_by_name = true)"


def _empty_sql(schema: pa.Schema) -> str:
    """An empty relation with the table's columns, for a table with no (readable) file yet."""
    columns = [f"CAST(NULL AS {_DUCK_TYPES[f.type]}) AS {f.name}" for f in schema]
    return "SELECT " + ", ".join([*columns, "CAST(NULL AS VARCHAR) AS job", "CAST(NULL AS DATE) AS as_of"]) + \
        " WHERE false"


def _create_table_view(con: duckdb.DuckDBPyConnection, root: Path, table: str, schema: pa.Schema) -> list[Path]:
    """Creates the view of one table over its Parquet files; returns the files it had to leave out.

    The view reads a glob, so partitions published later show without a rebuild. Creating it reads every
    file's footer, so one unreadable file (of any job) would fail it: then each file is checked alone and
    the view lists the readable ones by name.
    """
    files = _table_files(root, table)
    if not files:
        con.execute(f"CREATE VIEW {table} AS {_empty_sql(schema)}")
        return []
    try:
        con.execute(f"CREATE VIEW {table} AS {_read_sql(_literal(str(root / table / '*' / '*' / '*.parquet')))}")
        return []
    except duckdb.Error:
        pass
    readable: list[Path] = []
    unreadable: list[Path] = []
    for path in files:
        (readable if _readable(con, path) else unreadable).append(path)
    sql = _read_sql("[" + ", ".join(_literal(str(p)) for p in readable) + "]") if readable else _empty_sql(schema)
    con.execute(f"CREATE VIEW {table} AS {sql}")
    return unreadable


def _readable(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    try:
        con.execute(f"DESCRIBE SELECT * FROM read_parquet({_literal(str(path))}, hive_partitioning = true)")
    except duckdb.Error:
        return False
    return True


def _style_views() -> dict[str, str]:
    quantiles = ", ".join(f'f.{q} AS "TimesFM-q-{q[1:]}"' for q in QUANTILE_COLUMNS)
    return {
        # The latest run of each job, its series only: a series that run left out is absent, not yesterday's.
        "forecasts_latest": "SELECT * FROM forecasts QUALIFY as_of = max(as_of) OVER (PARTITION BY job)",
        # Each series' latest forecast, falling back to an earlier run; is_stale marks those fallbacks.
        "forecasts_latest_by_series": (
            "SELECT * EXCLUDE (job_as_of), as_of < job_as_of AS is_stale FROM (SELECT *, max(as_of) OVER "
            "(PARTITION BY job) AS job_as_of FROM forecasts QUALIFY as_of = max(as_of) OVER (PARTITION BY job, "
            "unique_id))"
        ),
        # Shaped like BigQuery AI.FORECAST: every input series, with an empty status when forecast.
        "forecasts_bigquery": (
            "SELECT s.job, s.as_of, s.unique_id, f.ds AS forecast_timestamp, f.forecast AS forecast_value, "
            "f.q10 AS prediction_interval_lower_bound, f.q90 AS prediction_interval_upper_bound, "
            "0.8 AS confidence_level, CASE WHEN s.status = 'ok' THEN '' ELSE s.status || ': ' || s.reason END "
            "AS ai_forecast_status FROM series_status s LEFT JOIN forecasts f USING (job, as_of, unique_id)"
        ),
        # The latest anomaly run of each job.
        "anomalies_latest": "SELECT * FROM anomalies QUALIFY as_of = max(as_of) OVER (PARTITION BY job)",
        # Each job's latest revisions: how its latest forecast moved since the run before.
        "revisions_latest": "SELECT * FROM revisions QUALIFY as_of = max(as_of) OVER (PARTITION BY job)",
        # Realized accuracy per job and horizon step over the job's latest ACCURACY_WINDOW forecast runs.
        "accuracy_by_horizon": (
            f"SELECT job, step, min(forecast_as_of) AS first_forecast_as_of, max(forecast_as_of) AS "
            f"last_forecast_as_of, count(DISTINCT forecast_as_of) AS n_forecast_runs, {REALIZED_METRICS} FROM "
            f"(SELECT *, dense_rank() OVER (PARTITION BY job ORDER BY forecast_as_of DESC) AS recency FROM "
            f"realized_accuracy) WHERE recency <= {ACCURACY_WINDOW} GROUP BY job, step"
        ),
        # Realized accuracy per job and forecast run, every step scored so far.
        "accuracy_trend": f"SELECT job, forecast_as_of, max(step) AS max_step, {REALIZED_METRICS} "
                          "FROM realized_accuracy GROUP BY job, forecast_as_of",
        # Realized accuracy per job and series over the points the job's latest ACCURACY_WINDOW runs scored.
        "accuracy_by_series": (
            f"SELECT job, unique_id, min(first_forecast_as_of) AS first_forecast_as_of, max(last_forecast_as_of) "
            f"AS last_forecast_as_of, {REALIZED_METRICS} FROM (SELECT *, dense_rank() OVER (PARTITION BY job "
            f"ORDER BY as_of DESC) AS recency FROM realized_accuracy_by_series) WHERE recency <= {ACCURACY_WINDOW} "
            "GROUP BY job, unique_id"
        ),
        # Shaped like Nixtla's libraries: one column per model and quantile.
        "forecasts_nixtla": f"SELECT f.job, f.as_of, f.unique_id, f.ds, f.cutoff, f.forecast AS \"TimesFM\", "
                            f"{quantiles}, f.seasonal_naive AS \"SeasonalNaive\" FROM forecasts f",
    }


def build_catalog(root: Path) -> tuple[Path, list[Path]]:
    """Writes ``<root>/catalog.duckdb`` with the views; returns its path and the Parquet files left out
    because DuckDB cannot read them. The temporary file is removed however the build ends."""
    target = root / CATALOG_FILE
    temporary = root / f".{CATALOG_FILE}.{os.getpid()}.tmp"
    skipped: list[Path] = []
    try:
        temporary.unlink(missing_ok=True)
        with duckdb.connect(str(temporary), config={"storage_compatibility_version": STORAGE_VERSION}) as con:
            for table, schema in TABLES.items():
                skipped += _create_table_view(con, root, table, schema)
            for name, sql in _style_views().items():
                con.execute(f"CREATE VIEW {name} AS {sql}")
        os.replace(temporary, target)
    finally:
        for leftover in (temporary, temporary.with_name(temporary.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return target, skipped
