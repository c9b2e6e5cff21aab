"""Parse CSV or Parquet bytes and map any raw frame to the canonical long frame (unique_id, ds, y).

Input content (column names, values, header lines) is quoted in messages only through ``shorten`` and
``shorten_names``: a hostile file must not turn one error into gigabytes of logs.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from forecast_model.errors import shorten, shorten_names
from pipeline.contracts import DS, ID, Y
from pipeline.errors import InputDataError

__all__ = ["HEADER_LIMIT", "ColumnMapping", "FileKind", "Layout", "csv_header", "empty_canonical", "parse_bytes",
           "to_canonical"]

Layout = Literal["long", "wide"]
FileKind = Literal["csv", "parquet"]
# A CSV header ends within the first 16 MiB (a wide file of a million series fits); a longer "first line"
# is not a header, and a file without one is refused before its size matters.
HEADER_LIMIT = 16 << 20
_UTF8_STEP = 1 << 20
_BLOCK = 1 << 20  # pyarrow parses blocks of this size in parallel
_MAX_BLOCK = 2**31 - 1
_ROW_OVER_A_BLOCK = ("straddling object", "cannot infer number of columns")  # pyarrow's words for it
_ZONE_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2})$"
_LINE_END = re.compile(rb"[\r\n]")
_OTHER_SEPARATORS = (";", "\t", "|")
_NOT_DATES_FIX = "Fix: give dates (2024-01-31) or 4-digit years (1990), or map the right column with --time-col."


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
    if not data or data.isspace():  # isspace stops at the first other byte; strip() would copy the content
        raise InputDataError(f"{name} is empty. Fix: point the source at a file with a header and data rows.")
    if _looks_like_html(data):
        raise InputDataError(f"{name} is an HTML page, not CSV or Parquet. Fix: link the data file itself "
                             "(for example the 'raw' or 'download' link).")
    if kind == "parquet":
        try:
            # A native buffer, not a BytesIO: pyarrow then decodes in its own threads (20M rows: 0.4 s, not 1.5 s).
            return pq.read_table(pa.BufferReader(data)).to_pandas()
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise InputDataError(f"{name} is not a readable Parquet file ({shorten(str(exc))}).") from exc
    return _parse_csv(data, name, text_columns)


def csv_header(head: bytes, name: str, *, complete: bool) -> list[str]:
    """The column names of a CSV file, from its first :data:`HEADER_LIMIT` bytes alone.

    Refuses, without reading further, content that is not a CSV file: no line end within ``head`` (unless
    ``complete``: ``head`` is the whole file), NUL bytes or non-UTF-8 bytes in the header, a name given
    twice, or one column whose name shows another separator. Unnamed columns are called ``Unnamed: <i>``.
    """
    line = _header_line(head, name, complete)
    try:
        fields = next(csv.reader([line.decode("utf-8")]), [])
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{name} is not UTF-8 text (its header, byte {exc.start}). Fix: re-encode the file "
                             "as UTF-8.") from exc
    except csv.Error as exc:
        raise InputDataError(f"{name}: its header is not a line of CSV ({shorten(str(exc))}). Fix the first "
                             "line: the column names, separated by commas.") from exc
    names = _column_names(fields, name)
    separator = next((sep for sep in _OTHER_SEPARATORS if len(names) == 1 and sep in names[0]), None)
    if separator:
        raise InputDataError(f"{name} has a single column {shorten(names[0])}: it seems to use {separator!r} as "
                             "separator. Fix: save it comma-separated, or as Parquet.")
    return names


def _header_line(head: bytes, name: str, complete: bool) -> bytes:
    """The first line that is not empty, refused when it does not end within ``head`` or holds NUL bytes: a
    binary file has neither, and parsing it whole would cost memory and time in proportion to its size."""
    body = head.removeprefix(codecs.BOM_UTF8).lstrip(b"\r\n")
    if not body and complete:
        raise InputDataError(f"{name} is empty. Fix: point the source at a file with a header and data rows.")
    end = _LINE_END.search(body)
    if end is None and not complete:
        raise InputDataError(f"{name} is not a CSV file: its first line (the header) does not end within the "
                             f"first {HEADER_LIMIT // 2**20} MiB. Fix: give a CSV file whose first line names "
                             "the columns, or a Parquet file.")
    line = body if end is None else body[:end.start()]
    if b"\0" in line:
        raise InputDataError(f"{name} is not a CSV file: its header holds NUL bytes (binary content). Fix: give "
                             "a UTF-8 CSV file whose first line names the columns, or a Parquet file.")
    return line


def _column_names(names: Sequence[str], source: str) -> list[str]:
    """Header names as pandas showed them (``Unnamed: 2`` for an empty one); a name given twice is refused,
    because every reader would keep only one of the two columns, silently."""
    named = [column or f"Unnamed: {index}" for index, column in enumerate(names)]
    seen: set[str] = set()
    for column in named:
        if column in seen:
            raise InputDataError(f"{source} has the column {shorten(column)} twice in its header. Fix: give each "
                                 "column its own name, or remove the copy.")
        seen.add(column)
    return named


def _parse_csv(data: bytes, name: str, text_columns: Sequence[str]) -> pd.DataFrame:
    csv_header(data[:HEADER_LIMIT], name, complete=len(data) <= HEADER_LIMIT)  # before parsing any of the rest
    _check_utf8(data, name)
    table = _read_csv_table(data, name, text_columns)
    try:
        return table.rename_columns(_column_names(table.column_names, name)).to_pandas()
    except pa.ArrowException as exc:
        raise InputDataError(f"{name} is not valid CSV: {shorten(str(exc))}.") from exc


def _check_utf8(data: bytes, name: str) -> None:
    """Refuses content that is not UTF-8, decoded a MiB at a time so that no copy of the whole text is made."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for start in range(0, len(data), _UTF8_STEP):
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous step
        try:
            decoder.decode(view[start:start + _UTF8_STEP], final=start + _UTF8_STEP >= len(data))
        except UnicodeDecodeError as exc:
            raise InputDataError(f"{name} is not UTF-8 text (byte {start - pending + exc.start}). Fix: re-encode "
                                 "the file as UTF-8.") from exc


def _read_csv_table(data: bytes, name: str, text_columns: Sequence[str]) -> pa.Table:
    """Parses CSV with pyarrow: text columns stay text, the others are typed from all their values, empty
    cells are missing, quoted values may hold separators and line breaks. A row with more or fewer fields
    than the header is an error naming its line (blank lines, even of spaces, are skipped)."""
    try:
        try:
            return _arrow_csv(data, text_columns, block_size=_BLOCK)
        except pa.ArrowInvalid as exc:
            if not any(text in str(exc) for text in _ROW_OVER_A_BLOCK):
                raise
            # A row longer than a block (the rows of a wide file can be): parse the content as one block.
            return _arrow_csv(data, text_columns, block_size=_one_block(data))
    except pa.ArrowInvalid as exc:
        if "Expected" in str(exc) and "columns" in str(exc):
            raise _ragged_row_error(data, name, text_columns) from exc
        raise InputDataError(f"{name} is not valid CSV: {shorten(str(exc))}.") from exc
    except pa.ArrowException as exc:
        raise InputDataError(f"{name} is not valid CSV: {shorten(str(exc))}.") from exc


def _arrow_csv(data: bytes, text_columns: Sequence[str], block_size: int, use_threads: bool = True,
               on_invalid: Callable[[pacsv.InvalidRow], str] | None = None) -> pa.Table:
    return pacsv.read_csv(
        pa.py_buffer(data),  # no copy of the content
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=use_threads),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid or _skip_blank),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(text_columns, pa.string()),
                                             strings_can_be_null=True),
    )


def _one_block(data: bytes) -> int:
    return min(len(data) + 1, _MAX_BLOCK)


def _skip_blank(row: pacsv.InvalidRow) -> str:
    """pyarrow skips empty lines but counts a line of spaces as a row of one field; pandas skipped both."""
    return "skip" if not row.text.strip() else "error"


def _ragged_row_error(data: bytes, name: str, text_columns: Sequence[str]) -> InputDataError:
    """The error for the first row whose field count differs from the header's. The parallel parse may
    stop at any bad row, so this parses again on one thread, which meets them in order, and finds the
    row's line (as an editor numbers it) from its text: pyarrow numbers rows, not lines."""
    rows: list[pacsv.InvalidRow] = []

    def first(row: pacsv.InvalidRow) -> str:
        if not row.text.strip():
            return "skip"
        rows.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowException):
        _arrow_csv(data, text_columns, block_size=_one_block(data), use_threads=False, on_invalid=first)
    if not rows:
        return InputDataError(f"{name} is not valid CSV: a row has other than the header's number of fields. Fix: "
                              "give every row as many fields as the header.")
    row = rows[0]
    line = _line_of(data, row.text.encode("utf-8"))
    return InputDataError(
        f"{name}: {f'line {line}' if line else 'a row'} has {row.actual_columns} "
        f"{'field' if row.actual_columns == 1 else 'fields'}, the header has "
        f"{row.expected_columns}: {shorten(row.text, 80)}. Fix: give every row {row.expected_columns} fields "
        "(leave a missing value empty, as in 'a,2024-01-31,'), and quote values that hold a comma (an unclosed "
        "quote runs on into the following lines).")


def _line_of(data: bytes, row: bytes) -> int | None:
    """The 1-based line on which ``row`` stands as a whole row, from a line start to a line end.

    Found by its last bytes and the line end after them: rows that merely begin like it (``a,1`` before
    ``a,1,2``) are passed over at once, and a row of gigabytes is never copied.
    """
    tail = row[-256:]
    for ending in (b"\n", b"\r"):  # LF, or CR (alone or before LF)
        found = data.find(tail + ending, len(row) - len(tail))
        while found >= 0:
            start = found + len(tail) - len(row)
            if _starts_line(data, start) and data.startswith(row, start):
                return _line_number(data, start)
            found = data.find(tail + ending, found + 1)
    start = len(data) - len(row)  # the last line, with no line end after it
    return _line_number(data, start) if data.endswith(row) and _starts_line(data, start) else None


def _starts_line(data: bytes, offset: int) -> bool:
    return offset == 0 or (offset > 0 and data[offset - 1] in b"\r\n")


def _line_number(data: bytes, offset: int) -> int:
    return (data.count(b"\n", 0, offset) or data.count(b"\r", 0, offset)) + 1


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def to_canonical(frame: pd.DataFrame, layout: Layout = "long", columns: ColumnMapping | None = None,
                 covariates: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Maps a long or wide frame to the canonical (unique_id, ds, y) frame, sorted by series and time.

    Long: one row per series and timestamp. Wide: one time column and one value column per series,
    the column name becoming ``unique_id``. ``covariates`` (long only): input columns kept after the canonical
    ones under their own names, each ``"numerical"`` (float64) or ``"categorical"`` (text levels; see
    :func:`covariate_levels`).
    """
    columns = columns or ColumnMapping()
    covariates = dict(covariates or {})
    if covariates:
        _check_covariate_columns(frame, layout, columns, covariates)
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
        ID: frame[ID].astype("string").astype("str"),  # Arrow-backed where pandas has it: no Python objects
        DS: _parse_timestamps(frame, columns.time_col),
        Y: _parse_values(frame, columns.target_col if layout == "long" else "series values"),
        **{name: _parse_values(frame, name, column=name, fix="name the right column in covariates")
           if kind == "numerical" else covariate_levels(frame[name])
           for name, kind in covariates.items()},
    }, copy=False)  # the columns are new already (or the caller's, whom copy-on-write protects): no copy of 20M rows
    return sort_canonical(canonical)


def empty_canonical() -> pd.DataFrame:
    """The canonical frame without a row, with its columns' types (a shard the hash gave no series)."""
    return pd.DataFrame({ID: pd.Series(dtype="str"), DS: pd.Series(dtype="datetime64[us]"),
                         Y: pd.Series(dtype="float64")})


def sort_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` ordered by id, then timestamp (empty timestamps last), rows with equal keys in their order.

    Most sources come sorted already, and checking that costs a tenth of sorting 20M rows; otherwise Arrow
    sorts (stable, UTF-8 byte order, which is the code-point order Python and pandas sort strings by).
    """
    if sorted_by_series_and_time(frame):
        return frame.reset_index(drop=True)
    keys = pa.table({ID: pa.array(frame[ID], type=pa.string()), DS: pa.array(frame[DS], type=pa.timestamp("us"))})
    order = pc.sort_indices(keys, sort_keys=[(ID, "ascending"), (DS, "ascending")], null_placement="at_end")
    return frame.take(order.to_numpy()).reset_index(drop=True)


def sorted_by_series_and_time(frame: pd.DataFrame) -> bool:
    """Whether the rows are ordered by id, then by strictly increasing timestamp (no NaT), as sorting would
    leave them. Arrow compares the ids: UTF-8 byte order is the code-point order pandas sorts strings by."""
    if len(frame) < 2:
        return True
    ids = pa.array(frame[ID], type=pa.string())
    earlier, later = ids[:-1], ids[1:]
    if not pc.all(pc.less_equal(earlier, later)).as_py():
        return False
    same = pc.equal(earlier, later).to_numpy(zero_copy_only=False)
    stamps = frame[DS].to_numpy()
    return bool(np.all(stamps[1:][same] > stamps[:-1][same]))


def arrow_ids(ids: pd.Series, kind: pa.DataType | None = None) -> pa.Array:
    """The ids as one contiguous Arrow array (Arrow-backed ids of a concatenated frame come in pieces)."""
    column = pa.array(ids, type=kind or pa.string())
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def series_codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Each row's series number and the distinct ids in sorted order: ``ids[i] == index[codes[i]]``.

    Grouping by these integers instead of the ids saves hashing 20M strings for every group-by. Ids in
    sorted order (the canonical frame's) are numbered where they change; any other order is factorised.
    """
    column = arrow_ids(ids)
    if len(column) and pc.all(pc.less_equal(column[:-1], column[1:])).as_py():
        changed = pc.not_equal(column[1:], column[:-1]).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, changed])
        return np.r_[0, np.cumsum(changed)].astype(np.intp), pd.Index(
            column.take(pa.array(starts, type=pa.int64())).to_pylist(), name=ID)
    codes, uniques = pd.factorize(ids, sort=True)
    return codes.astype(np.intp), pd.Index(uniques, name=ID)


def _require(frame: pd.DataFrame, names: list[str], how_to_map: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InputDataError(
            f"The following columns are missing: {shorten_names(missing, each=60)}. Found columns: "
            f"{shorten_names(frame.columns, each=60)}. Fix: rename them in the file or map them with {how_to_map}."
        )


def _parse_timestamps(frame: pd.DataFrame, original_name: str) -> pd.Series:
    if isinstance(frame[DS].dtype, np.dtype) and frame[DS].dtype.kind == "M":  # typed, no zone: nothing to parse
        return frame[DS].astype("datetime64[us]")
    raw = _years_as_text(frame[DS], original_name)
    _refuse_mixed_zones(raw, original_name)
    parsed = _to_datetime(raw, format=None)
    bad = raw.notna() & parsed.isna()
    if bad.any():  # the format guessed from the first value may not fit all: retry value by value
        parsed = _to_datetime(raw, format="mixed")
        bad = raw.notna() & parsed.isna()
    if bad.any():
        raise InputDataError(
            f"Column {shorten(original_name)} has {int(bad.sum())} values that are not timestamps, e.g. "
            f"{_examples(frame, bad, DS)}. Fix: correct or remove those rows, or map the right column with --time-col."
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _years_as_text(raw: pd.Series, original_name: str) -> pd.Series:
    """Numbers in a time column: 4-digit years (1000..9999) become the year's text, which parses as its
    January 1st; any other number is refused. pandas would read 1700000000 (epoch seconds) as nanoseconds
    after 1970, and every value of a series would then fall within the same second."""
    _refuse_digit_text(_text_values(raw), original_name)
    numeric = _number_mask(raw)
    if not numeric.any():
        return raw
    numbers = _as_floats(raw[numeric])
    years = (numbers >= 1000) & (numbers <= 9999) & (numbers == np.floor(numbers))
    if not years.all():
        raise _not_dates(original_name, float(numbers[~years][0]))
    text = raw.to_numpy(dtype=object, copy=True)
    text[numeric] = numbers.astype("int64").astype(str)
    return pd.Series(text, index=raw.index, name=raw.name)


def _number_mask(raw: pd.Series) -> np.ndarray:
    """Which values are numbers (not missing, not booleans): a numeric column's, or an object column's."""
    if raw.dtype.kind in "iuf":
        return raw.notna().to_numpy(dtype=bool)
    if raw.dtype == object:
        return raw.map(_is_number).to_numpy(dtype=bool)
    return np.zeros(len(raw), dtype=bool)


def _as_floats(values: pd.Series) -> np.ndarray:
    if values.dtype != object:
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.array([_as_float(value) for value in values], dtype="float64")


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # a Python int beyond any float is no year either
        return math.inf


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_) \
        and not pd.isna(value)


def _text_values(raw: pd.Series) -> pd.Series:
    if raw.dtype == object:
        return raw[raw.map(lambda value: isinstance(value, str)).to_numpy(dtype=bool)]
    return raw if pd.api.types.is_string_dtype(raw.dtype) else raw.iloc[:0]


def _refuse_digit_text(text: pd.Series, original_name: str) -> None:
    """Text of digits only is a year (``1990``) or a date written ``20240131``; any other (``1700000000``,
    ``0042``) is a number, not a date."""
    if text.empty:
        return
    digits = text[_digits_only(text)]
    length = digits.str.len()
    dates = ((length == 4) & (digits >= "1000")) | (length == 8)
    if not dates.all():
        example = str(digits[~dates].iloc[0])
        raise InputDataError(f"The time column {shorten(original_name)} holds integers (e.g. {shorten(example, 40)}), "
                             f"not dates. {_NOT_DATES_FIX}")


def _digits_only(text: pd.Series) -> np.ndarray:
    """Which values are ASCII digits only; on pyarrow-backed text, pyarrow's kernel is faster than a regex."""
    if isinstance(text.dtype, pd.StringDtype) and text.dtype.storage == "pyarrow":
        decimal = pc.ascii_is_decimal(pa.array(text, from_pandas=True)).fill_null(False)
        return np.asarray(decimal.to_numpy(zero_copy_only=False), dtype=bool)
    return text.str.fullmatch("[0-9]+", na=False).to_numpy(dtype=bool)


def _not_dates(original_name: str, example: float) -> InputDataError:
    integral = math.isfinite(example) and example.is_integer()
    shown = str(int(example)) if integral else repr(example)
    return InputDataError(f"The time column {shorten(original_name)} holds {'integers' if integral else 'numbers'} "
                          f"(e.g. {shown}), not dates. {_NOT_DATES_FIX}")


def _refuse_mixed_zones(raw: pd.Series, original_name: str) -> None:
    """Text timestamps with and without a UTC offset cannot be ordered without guessing the naive ones' zone."""
    if raw.dtype.kind not in "OU" and str(raw.dtype) not in ("str", "string"):
        return
    text = raw.dropna().astype(str).str.strip()
    zoned = text.str.contains(_ZONE_SUFFIX, regex=True)
    if zoned.any() and not zoned.all():
        raise InputDataError(
            f"Column {shorten(original_name)} mixes timestamps with and without a time zone, e.g. "
            f"{shorten(text[zoned].iloc[0])} and {shorten(text[~zoned].iloc[0])}. Fix: write every timestamp "
            "with its UTC offset, or none of them."
        )


def _to_datetime(raw: pd.Series, format: str | None) -> pd.Series:
    """Parses timestamps; values in several UTC offsets (daylight saving time) are converted to UTC."""
    try:
        return pd.to_datetime(raw, errors="coerce", format=format)
    except ValueError:  # "Mixed timezones detected": convert every zone-aware value to UTC
        return pd.to_datetime(raw, errors="coerce", format=format, utc=True)


def _check_covariate_columns(frame: pd.DataFrame, layout: Layout, columns: ColumnMapping,
                             covariates: Mapping[str, str]) -> None:
    """Refuses covariates of a wide input, covariates that are missing, and names the canonical frame uses."""
    if layout == "wide":
        raise InputDataError("Covariates need the long format (one row per series and timestamp, one column per "
                             "covariate). Fix: give the input in long format, or leave the covariates out.")
    roles = {columns.id_col, columns.time_col, columns.target_col, ID, DS, Y}
    if clash := sorted(set(covariates) & roles):
        raise InputDataError(f"Covariates {shorten_names(clash)} name the id, time or target column. Fix: name "
                             "covariate columns other than those.")
    if missing := [name for name in covariates if name not in frame.columns]:
        raise InputDataError(f"Covariate columns {shorten_names(missing)} are not in the source, whose columns are "
                             f"{shorten_names([str(c) for c in frame.columns])}. Fix: name columns the source has "
                             "(names are case-sensitive).")


def covariate_levels(raw: pd.Series) -> pd.Series:
    """A categorical covariate's values as text levels, missing ones kept missing: numbers go through Arrow's
    cast, which writes whole numbers without a decimal part, so ``1`` read from a CSV column with gaps (1.0)
    and ``1`` from another source are the same level (and a million rows cost milliseconds, not seconds)."""
    if raw.dtype.kind not in "fiub":
        return raw.astype("string")
    text = pa.array(raw, from_pandas=True).cast(pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(text), index=raw.index)


def _parse_values(frame: pd.DataFrame, original_name: str, column: str = Y,
                  fix: str = "map the right column with --target-col") -> pd.Series:
    raw = frame[column]
    if raw.dtype.kind in "mM" or isinstance(raw.dtype, pd.DatetimeTZDtype):
        # pd.to_numeric would turn timestamps into nanoseconds since 1970, silently
        if raw.notna().any():
            raise InputDataError(f"Column {shorten(original_name)} holds timestamps, not numbers, e.g. "
                                 f"{_examples(frame, raw.notna(), column)}. Fix: {fix}.")
        return pd.Series(np.nan, index=raw.index, dtype="float64")
    if raw.dtype == np.float64:  # typed already: every value is a number or missing
        return raw
    values = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & values.isna()
    if bad.any():
        raise InputDataError(
            f"Column {shorten(original_name)} has {int(bad.sum())} values that are not numbers, e.g. "
            f"{_examples(frame, bad, column)}. "
            f"Fix: correct those values (leave missing ones empty), or {fix}."
        )
    return values.astype("float64")


def _examples(frame: pd.DataFrame, bad: pd.Series, column: str, limit: int = 3) -> str:
    """The first bad values of ``column`` with their row and series, for an error message."""
    rows = frame.loc[bad, [ID, column]].head(limit)
    return ", ".join(f"{shorten(value, 60)} (row {row}, series {shorten(series, 60)})"
                     for row, series, value in rows.itertuples())
