"""A retail-style panel for scale benchmarks: N series x L daily points, written as Parquet in chunks.

Values are synthetic (level + weekly and yearly seasonality + trend + noise, seeded): the scale benchmarks
measure time and memory, and the tiny checkpoint they run has random weights, so no forecast from them
means anything. Ids look like ``S0042-P01234`` (store x product); every series ends on the same day.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["write_panel"]

_SCHEMA = pa.schema([("unique_id", pa.string()), ("ds", pa.timestamp("us")), ("y", pa.float64())])
_CHUNK = 20_000  # series per row group: about 4M rows, ~100 MB in memory while writing


def write_panel(path: Path, n_series: int, length: int = 200, seed: int = 0, end: str = "2026-11-01") -> Path:
    """Writes the panel (sorted by id, then time) and returns its path; memory stays at one chunk."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(end=end, periods=length, freq="D").to_numpy().astype("datetime64[us]")
    t = np.arange(length)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, _SCHEMA, compression="zstd") as writer:
        for start in range(0, n_series, _CHUNK):
            count = min(_CHUNK, n_series - start)
            ids = np.array([f"S{i // 1000:04d}-P{i % 1000:05d}" for i in range(start, start + count)], dtype=object)
            level = rng.uniform(10, 1000, size=(count, 1))
            weekly = rng.uniform(0, 0.3, size=(count, 1)) * np.sin(2 * np.pi * (t + rng.integers(0, 7, (count, 1))) / 7)
            yearly = rng.uniform(0, 0.2, size=(count, 1)) * np.sin(2 * np.pi * t / 365.25)
            trend = rng.normal(0, 0.001, size=(count, 1)) * t
            values = level * (1 + weekly + yearly + trend) + rng.normal(0, 1, size=(count, length)) * np.sqrt(level)
            writer.write_table(pa.table({"unique_id": np.repeat(ids, length), "ds": np.tile(days, count),
                                         "y": values.reshape(-1)}, schema=_SCHEMA))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    print(write_panel(args.path, args.series, args.length))


if __name__ == "__main__":
    main()
