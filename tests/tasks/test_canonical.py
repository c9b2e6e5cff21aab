"""Parsing CSV/Parquet bytes and mapping long and wide frames to the canonical frame; errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.canonical import ColumnMapping, parse_bytes, to_canonical
from tasks.contracts import DS, ID, Y
from tasks.errors import InputDataError


def test_long_format_with_custom_column_names(sample_frame: pd.DataFrame) -> None:
    renamed = sample_frame.rename(columns={"unique_id": "series", "ds": "quarter", "y": "value"})
    raw = renamed.sample(frac=1, random_state=0)
    frame = to_canonical(raw, "long", ColumnMapping(id_col="series", time_col="quarter", target_col="value"))
    assert list(frame.columns) == [ID, DS, Y]
    assert frame[ID].nunique() == 12 and len(frame) == len(sample_frame)
    assert str(frame[DS].dtype) == "datetime64[us]" and frame[Y].dtype == "float64"
    assert frame.equals(frame.sort_values([ID, DS], ignore_index=True)), "canonical frame must be sorted"
    cpi = frame[frame[ID] == "cpi"]
    assert cpi[DS].iloc[0] == pd.Timestamp("1959-01-01") and cpi[Y].iloc[0] == pytest.approx(28.98)


def test_wide_format_with_custom_time_column(sample_frame: pd.DataFrame) -> None:
    wide = sample_frame.pivot(index="ds", columns="unique_id", values="y").reset_index().rename(columns={"ds": "date"})
    frame = to_canonical(wide, "wide", ColumnMapping(time_col="date"))
    expected = to_canonical(sample_frame)
    pd.testing.assert_frame_equal(frame, expected)


def test_parse_csv_and_parquet_bytes(tmp_path: Path, sample_frame: pd.DataFrame) -> None:
    sample_frame.to_parquet(tmp_path / "in.parquet")
    assert len(parse_bytes(sample_frame.to_csv(index=False).encode(), "csv", "x")) == len(sample_frame)
    assert len(parse_bytes((tmp_path / "in.parquet").read_bytes(), "parquet", "x")) == len(sample_frame)


def test_missing_column_names_it_and_the_fix(sample_frame: pd.DataFrame) -> None:
    with pytest.raises(InputDataError, match=r"columns are missing: \['y'\].*--target-col"):
        to_canonical(sample_frame.rename(columns={"y": "value"}))


def test_unparseable_timestamp_names_column_row_and_series(sample_frame: pd.DataFrame) -> None:
    raw = sample_frame.copy()
    raw.loc[7, "ds"] = "not-a-date"
    with pytest.raises(InputDataError, match=r"Column 'ds' has 1 values that are not timestamps, "
                                             r"e.g. 'not-a-date' \(row 7, series 'cpi'\)\. Fix"):
        to_canonical(raw)


def test_non_numeric_value_names_the_column(sample_frame: pd.DataFrame) -> None:
    raw = sample_frame.rename(columns={"y": "v"}).astype({"v": object})
    raw.loc[3, "v"] = "12,5"
    with pytest.raises(InputDataError, match=r"Column 'v' has 1 values that are not numbers.*'12,5'"):
        to_canonical(raw, columns=ColumnMapping(target_col="v"))


def test_mixed_timestamp_formats_are_parsed() -> None:
    raw = pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2024-01-01", "2024-01-02 00:00:00"], "y": [1, 2]})
    assert to_canonical(raw)[DS].tolist() == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]


def test_timezone_aware_timestamps_become_utc() -> None:
    raw = pd.DataFrame({"unique_id": ["a"], "ds": ["2024-01-01T02:00:00+02:00"], "y": [1.0]})
    assert to_canonical(raw)[DS].iloc[0] == pd.Timestamp("2024-01-01 00:00")


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"", "csv", "is empty"),
        (b"<!DOCTYPE html><html><body>login</body></html>", "csv", "is an HTML page"),
        ("unique_id,ds,y\nmünchen,2024-01-01,1\n".encode("latin-1"), "csv", "is not UTF-8 text"),
        (b"unique_id;ds;y\na;2024-01-01;1\n", "csv", "seems to use ';' as separator"),
        (b"PAR1garbage", "parquet", "is not a readable Parquet file"),
    ],
)
def test_unreadable_content_is_named(data: bytes, kind: str, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        parse_bytes(data, kind, "src")  # type: ignore[arg-type]


def test_header_only_and_empty_ids() -> None:
    with pytest.raises(InputDataError, match="header but no data rows"):
        to_canonical(parse_bytes(b"unique_id,ds,y\n", "csv", "src"))
    with pytest.raises(InputDataError, match=r"id column has 1 empty values \(rows \[1\]\)"):
        to_canonical(pd.DataFrame({"unique_id": ["a", None], "ds": ["2024-01-01"] * 2, "y": [1, 2]}))


def test_daylight_saving_offsets_convert_to_utc() -> None:
    raw = pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2024-03-30T12:00+01:00", "2024-04-01T12:00+02:00"],
                        "y": [1.0, 2.0]})
    assert to_canonical(raw)["ds"].tolist() == [pd.Timestamp("2024-03-30 11:00"), pd.Timestamp("2024-04-01 10:00")]
