"""The data contracts, stated once: canonical input frame, forecast table, series-status table.

Every loader produces the canonical frame; every writer checks its table against the schema here; the
docs (docs/DATA_FORMAT.md) describe the same columns.
"""

from __future__ import annotations

import enum

import pyarrow as pa

__all__ = [
    "DS",
    "FORECAST_SCHEMA",
    "ID",
    "QUANTILE_COLUMNS",
    "STATUS_SCHEMA",
    "SeriesStatus",
    "Y",
]

ID, DS, Y = "unique_id", "ds", "y"
QUANTILE_LEVELS = (10, 20, 30, 40, 50, 60, 70, 80, 90)
QUANTILE_COLUMNS = [f"q{level}" for level in QUANTILE_LEVELS]

# Canonical input: one row per series and timestamp, sorted by (unique_id, ds), (unique_id, ds) unique.
INPUT_SCHEMA = pa.schema([(ID, pa.string()), (DS, pa.timestamp("us")), (Y, pa.float64())])

FORECAST_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        (DS, pa.timestamp("us")),
        ("step", pa.int32()),
        ("forecast", pa.float64()),
        *[(name, pa.float64()) for name in QUANTILE_COLUMNS],
        ("model", pa.string()),
        ("cutoff", pa.timestamp("us")),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


class SeriesStatus(str, enum.Enum):
    """Outcome for one input series."""

    OK = "ok"
    REJECTED = "rejected"  # left out before inference; `reason` says why
    FAILED = "failed"  # inference ran but gave no usable forecast


STATUS_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("n_obs", pa.int64()),
        ("first_ds", pa.timestamp("us")),
        ("last_ds", pa.timestamp("us")),
        ("freq", pa.string()),
        ("missing_fraction", pa.float64()),
    ]
)
