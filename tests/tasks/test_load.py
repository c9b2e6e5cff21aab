"""Loading long and wide files into the canonical frame, and the errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.contracts import DS, ID, Y
from tasks.errors import InputDataError
from tasks.load import ColumnMapping, read_table, to_canonical


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


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_csv_and_parquet(tmp_path: Path, sample_frame: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    sample_frame.to_csv(path, index=False) if suffix == ".csv" else sample_frame.to_parquet(path)
    assert len(read_table(path)) == len(sample_frame)


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


def test_unsupported_file_type(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"Unsupported file type '.xlsx'"):
        read_table(tmp_path / "x.xlsx")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="does not exist"):
        read_table(tmp_path / "x.csv")
