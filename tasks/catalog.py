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
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.contracts import EVALUATION_SCHEMA, FORECAST_SCHEMA, QUANTILE_COLUMNS, RUNS_SCHEMA, STATUS_SCHEMA

__all__ = ["CATALOG_FILE", "build_catalog", "refresh_catalog"]

CATALOG_FILE = "catalog.duckdb"
TABLES = {"forecasts": FORECAST_SCHEMA, "series_status": STATUS_SCHEMA, "runs": RUNS_SCHEMA,
          "evaluations": EVALUATION_SCHEMA}
_DUCK_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
               pa.bool_(): "BOOLEAN", pa.timestamp("us"): "TIMESTAMP", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table_sql(root: Path, table: str, schema: pa.Schema) -> str:
    """The Parquet files of a table with its partition columns, or an empty typed relation if none exist."""
    pattern = root / table / "*" / "*" / "*.parquet"
    if any(root.glob(f"{table}/*/*/*.parquet")):
        return f"SELECT * FROM read_parquet({_literal(str(pattern))}, hive_partitioning = true, union_by_name = true)"
    columns = [f"CAST(NULL AS {_DUCK_TYPES[f.type]}) AS {f.name}" for f in schema]
    return "SELECT " + ", ".join([*columns, "CAST(NULL AS VARCHAR) AS job", "CAST(NULL AS DATE) AS as_of"]) + \
        " WHERE false"


def _style_views() -> dict[str, str]:
    quantiles = ", ".join(f'f.{q} AS "TimesFM-q-{q[1:]}"' for q in QUANTILE_COLUMNS)
    return {
        # Forecasts for the latest as_of of each job and series.
        "forecasts_latest": "SELECT * FROM forecasts QUALIFY as_of = max(as_of) OVER (PARTITION BY job, unique_id)",
        # Shaped like BigQuery AI.FORECAST: every input series, with an empty status when forecast.
        "forecasts_bigquery": (
            "SELECT s.job, s.as_of, s.unique_id, f.ds AS forecast_timestamp, f.forecast AS forecast_value, "
            "f.q10 AS prediction_interval_lower_bound, f.q90 AS prediction_interval_upper_bound, "
            "0.8 AS confidence_level, CASE WHEN s.status = 'ok' THEN '' ELSE s.status || ': ' || s.reason END "
            "AS ai_forecast_status FROM series_status s LEFT JOIN forecasts f USING (job, as_of, unique_id)"
        ),
        # Shaped like Nixtla's libraries: one column per model and quantile.
        "forecasts_nixtla": f"SELECT f.job, f.as_of, f.unique_id, f.ds, f.cutoff, f.forecast AS \"TimesFM\", "
                            f"{quantiles} FROM forecasts f",
    }


def build_catalog(root: Path) -> Path:
    """Writes ``<root>/catalog.duckdb`` with the views; returns its path."""
    target = root / CATALOG_FILE
    temporary = root / f".{CATALOG_FILE}.{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    with duckdb.connect(str(temporary)) as con:
        for table, schema in TABLES.items():
            con.execute(f"CREATE VIEW {table} AS {_table_sql(root, table, schema)}")
        for name, sql in _style_views().items():
            con.execute(f"CREATE VIEW {name} AS {sql}")
    os.replace(temporary, target)
    return target


@task(name="refresh-catalog", cache_policy=NO_CACHE)
def refresh_catalog(root: Path) -> Path:
    """Rebuilds the BI catalog after a publish."""
    path = build_catalog(root)
    get_run_logger().info("Refreshed BI catalog %s", path)
    return path
