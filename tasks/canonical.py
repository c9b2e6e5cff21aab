"""Parse CSV or Parquet bytes and map any raw frame to the canonical long frame (unique_id, ds, y)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Literal

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from forecast_model.errors import shorten
from tasks.contracts import DS, ID, Y
from tasks.errors import InputDataError

__all__ = ["ColumnMapping", "FileKind", "Layout", "parse_bytes", "to_canonical"]

Layout = Literal["long", "wide"]
FileKind = Literal["csv", "parquet"]
_ZONE_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2})$"


class ColumnMapping(BaseModel):
    """Names of the input columns that hold the series id, the timestamp and the value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id_col: str = Field("unique_id", min_length=1, description="Series identifier column (long format).")
    time_col: str = Field("ds", min_length=1, description="Timestamp column.")
    target_col: str = Field("y", min_length=1, description="Value column (long format).")

    def check_for(self, layout: Layout) -> None:
        """Refuses one input column mapped to two roles (``--id-col ds`` would read the timestamps as ids)."""
        roles = {"id_col": self.id_col, "time_col": self.time_col, "target_col": self.target_col}
        if layout == "wide":
            roles = {"time_col": self.time_col}
        names = list(roles.values())
        clash = [role for role, name in roles.items() if names.count(name) > 1]
        if clash:
            raise ValueError(f"columns {' and '.join(clash)} name the same input column "
                             f"{shorten(roles[clash[0]])}; each role needs its own column. Fix: map each of "
                             "--id-col, --time-col and --target-col to a different column.")

    def text_columns(self, layout: Layout) -> tuple[str, ...]:
        """Columns a CSV parser must keep as text: ids (``007`` is not ``7``) and timestamps (``1990`` is a
        year, not 1,990 nanoseconds after 1970)."""
        return (self.id_col, self.time_col) if layout == "long" else (self.time_col,)


def parse_bytes(data: bytes, kind: FileKind, name: str, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Parses CSV or Parquet content; ``name`` (a path or redacted URL) appears in errors.

    CSV columns named in ``text_columns`` are read as text, never as inferred numbers.
    """
    if not data.strip():
        raise InputDataError(f"{name} is empty. Fix: point the source at a file with a header and data rows.")
    if _looks_like_html(data):
        raise InputDataError(f"{name} is an HTML page, not CSV or Parquet. Fix: link the data file itself "
                             "(for example the 'raw' or 'download' link).")
    if kind == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(data))
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise InputDataError(f"{name} is not a readable Parquet file ({exc}).") from exc
    return _parse_csv(data, name, text_columns)


def _parse_csv(data: bytes, name: str, text_columns: Sequence[str]) -> pd.DataFrame:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{name} is not UTF-8 text (byte {exc.start}). Fix: re-encode the file as UTF-8.") \
            from exc
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=dict.fromkeys(text_columns, str))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputDataError(f"{name} is not valid CSV: {str(exc).strip()}.") from exc
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        separator = next((sep for sep in (";", "\t", "|") if sep in header), None)
        if separator:
            raise InputDataError(f"{name} has a single column {header!r}: it seems to use {separator!r} as "
                                 "separator. Fix: save it comma-separated, or as Parquet.")
    return frame


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def to_canonical(frame: pd.DataFrame, layout: Layout = "long", columns: ColumnMapping | None = None) -> pd.DataFrame:
    """Maps a long or wide frame to the canonical (unique_id, ds, y) frame, sorted by series and time.

    Long: one row per series and timestamp. Wide: one time column and one value column per series,
    the column name becoming ``unique_id``.
    """
    columns = columns or ColumnMapping()
    if layout == "wide":
        _require(frame, [columns.time_col], "--time-col (parameter source.columns.time_col)")
        # Melt into private names: a series may well be called "y" or "unique_id", which melt refuses.
        frame = frame.melt(id_vars=columns.time_col, var_name="__series__", value_name="__value__")
        frame = pd.DataFrame({ID: frame["__series__"], DS: frame[columns.time_col], Y: frame["__value__"]})
    else:
        _require(frame, [columns.id_col, columns.time_col, columns.target_col],
                 "--id-col/--time-col/--target-col (parameter source.columns), or use --format wide")
        frame = frame.rename(columns={columns.id_col: ID, columns.time_col: DS, columns.target_col: Y})
    if frame.empty:
        raise InputDataError("The source has a header but no data rows. Fix: point it at data.")
    if frame[ID].isna().any():
        rows = list(frame.index[frame[ID].isna()][:5])
        raise InputDataError(f"The series id column has {int(frame[ID].isna().sum())} empty values (rows {rows}). "
                             "Fix: fill in the id of those rows or remove them.")
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
    _refuse_mixed_zones(raw, original_name)
    parsed = _to_datetime(raw, format=None)
    bad = raw.notna() & parsed.isna()
    if bad.any():  # the format guessed from the first value may not fit all: retry value by value
        parsed = _to_datetime(raw, format="mixed")
        bad = raw.notna() & parsed.isna()
    if bad.any():
        raise InputDataError(
            f"Column {original_name!r} has {int(bad.sum())} values that are not timestamps, e.g. "
            f"{_examples(frame, bad, DS)}. Fix: correct or remove those rows, or map the right column with --time-col."
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _refuse_mixed_zones(raw: pd.Series, original_name: str) -> None:
    """Text timestamps with and without a UTC offset cannot be ordered without guessing the naive ones' zone."""
    if raw.dtype.kind not in "OU" and str(raw.dtype) not in ("str", "string"):
        return
    text = raw.dropna().astype(str).str.strip()
    zoned = text.str.contains(_ZONE_SUFFIX, regex=True)
    if zoned.any() and not zoned.all():
        raise InputDataError(
            f"Column {original_name!r} mixes timestamps with and without a time zone, e.g. {text[zoned].iloc[0]!r} "
            f"and {text[~zoned].iloc[0]!r}. Fix: write every timestamp with its UTC offset, or none of them."
        )


def _to_datetime(raw: pd.Series, format: str | None) -> pd.Series:
    """Parses timestamps; values in several UTC offsets (daylight saving time) are converted to UTC."""
    try:
        return pd.to_datetime(raw, errors="coerce", format=format)
    except ValueError:  # "Mixed timezones detected": convert every zone-aware value to UTC
        return pd.to_datetime(raw, errors="coerce", format=format, utc=True)


def _parse_values(frame: pd.DataFrame, original_name: str) -> pd.Series:
    raw = frame[Y]
    values = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & values.isna()
    if bad.any():
        raise InputDataError(
            f"Column {original_name!r} has {int(bad.sum())} values that are not numbers, e.g. "
            f"{_examples(frame, bad, Y)}. "
            "Fix: correct those values (leave missing ones empty), or map the right column with --target-col."
        )
    return values.astype("float64")


def _examples(frame: pd.DataFrame, bad: pd.Series, column: str, limit: int = 3) -> str:
    """The first bad values of ``column`` with their row and series, for an error message."""
    rows = frame.loc[bad, [ID, column]].head(limit)
    return ", ".join(f"{value!r} (row {row}, series {series!r})" for row, series, value in rows.itertuples())
