"""Write tables with exactly the schema of their contract."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["write_table"]


def write_table(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> Path:
    """Writes ``frame`` as Parquet with the contract's columns and types (fails if a column is off)."""
    pq.write_table(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False), path)
    return path
