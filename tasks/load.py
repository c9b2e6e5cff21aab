"""Read a local CSV or Parquet file and map it to the canonical long frame (unique_id, ds, y)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from tasks.contracts import DS, ID, Y
from tasks.errors import InputDataError

__all__ = ["ColumnMapping", "Layout", "load_series", "read_table", "to_canonical"]

Layout = Literal["long", "wide"]
_READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


class ColumnMapping(BaseModel):
    """Names of the input columns that hold the series id, the timestamp and the value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id_col: str = Field("unique_id", min_length=1, description="Series identifier column (long format).")
    time_col: str = Field("ds", min_length=1, description="Timestamp column.")
    target_col: str = Field("y", min_length=1, description="Value column (long format).")


def read_table(path: Path) -> pd.DataFrame:
    """Reads a CSV or Parquet file, chosen by its extension."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputDataError(f"Unsupported file type {path.suffix!r} for {path}; use .csv or .parquet.")
    if not path.is_file():
        raise InputDataError(f"Input file {path} does not exist. Fix the source path.")
    try:
        return reader(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputDataError(f"Cannot read {path}: {exc}. Check that the file is valid {path.suffix[1:]}.") from exc


def to_canonical(frame: pd.DataFrame, layout: Layout = "long", columns: ColumnMapping | None = None) -> pd.DataFrame:
    """Maps a long or wide frame to the canonical (unique_id, ds, y) frame, sorted by series and time.

    Long: one row per series and timestamp. Wide: one time column and one value column per series,
    the column name becoming ``unique_id``.
    """
    columns = columns or ColumnMapping()
    if layout == "wide":
        _require(frame, [columns.time_col], "--time-col (parameter source.columns.time_col)")
        frame = frame.melt(id_vars=columns.time_col, var_name=ID, value_name=Y)
        frame = frame.rename(columns={columns.time_col: DS})
    else:
        _require(frame, [columns.id_col, columns.time_col, columns.target_col],
                 "--id-col/--time-col/--target-col (parameter source.columns), or use --format wide")
        frame = frame.rename(columns={columns.id_col: ID, columns.time_col: DS, columns.target_col: Y})
    canonical = pd.DataFrame({
        ID: frame[ID].astype("string").astype(object),
        DS: _parse_timestamps(frame, columns.time_col),
        Y: _parse_values(frame, columns.target_col if layout == "long" else "series values"),
    })
    return canonical.sort_values([ID, DS], kind="stable", ignore_index=True)


def _require(frame: pd.DataFrame, names: list[str], how_to_map: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InputDataError(
            f"The following columns are missing: {missing}. Found columns: {list(frame.columns)[:20]}. "
            f"Fix: rename them in the file or map them with {how_to_map}."
        )


def _parse_timestamps(frame: pd.DataFrame, original_name: str) -> pd.Series:
    raw = frame[DS]
    parsed = pd.to_datetime(raw, errors="coerce")
    bad = raw.notna() & parsed.isna()
    if bad.any():  # the format guessed from the first value may not fit all: retry value by value
        parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
        bad = raw.notna() & parsed.isna()
    if bad.any():
        rows = frame.loc[bad, [ID, DS]].head(3)
        examples = ", ".join(f"{v!r} (row {i}, series {s!r})" for i, s, v in rows.itertuples())
        raise InputDataError(
            f"Column {original_name!r} has {int(bad.sum())} values that are not timestamps, e.g. {examples}. "
            "Fix: correct or remove those rows, or map the right column with --time-col."
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _parse_values(frame: pd.DataFrame, original_name: str) -> pd.Series:
    raw = frame[Y]
    values = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & values.isna()
    if bad.any():
        rows = frame.loc[bad, [ID, Y]].head(3)
        examples = ", ".join(f"{v!r} (row {i}, series {s!r})" for i, s, v in rows.itertuples())
        raise InputDataError(
            f"Column {original_name!r} has {int(bad.sum())} values that are not numbers, e.g. {examples}. "
            "Fix: correct those values (leave missing ones empty), or map the right column with --target-col."
        )
    return values.astype("float64")


@task(name="load-series", cache_policy=NO_CACHE)
def load_series(path: Path, layout: Layout, columns: ColumnMapping, staging: Path) -> Path:
    """Loads the source file into the canonical frame and stages it as Parquet; returns the staged path."""
    frame = to_canonical(read_table(path), layout, columns)
    staged = staging / "input.parquet"
    frame.to_parquet(staged, index=False)
    get_run_logger().info("Loaded %d rows of %d series from %s", len(frame), frame[ID].nunique(), path)
    return staged
