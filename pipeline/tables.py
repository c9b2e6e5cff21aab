"""Write tables with exactly the schema of their contract."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["parquet_options", "write_table"]


def parquet_options(schema: pa.Schema) -> dict[str, list[str]]:
    """Writer options for a contract table: dictionary encoding for every column but the floating-point ones.

    Forecasts and quantiles have nearly as many distinct values as rows: Parquet's writer tries a dictionary
    for each column chunk, gives up when it grows past a page, and the attempt costs more than half of a
    forecast table's write time and a quarter of its size (measured: 3.6 s, 226 MB -> 1.3 s, 169 MB at 2.8M rows).
    """
    return {"use_dictionary": [f.name for f in schema if not pa.types.is_floating(f.type)]}


def write_table(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> Path:
    """Writes ``frame`` as Parquet with the contract's columns and types (fails if a column is off)."""
    pq.write_table(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False), path,
                   **parquet_options(schema))
    return path
