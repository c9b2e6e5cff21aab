"""The great-expectations suite on the canonical frame, and failure messages that name the series."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.load import to_canonical
from tasks.validate import describe_failure, run_suite


def failures(frame: pd.DataFrame) -> list[str]:
    result = run_suite(frame)
    return [describe_failure(r) for r in result.results if not r.success]


def test_sample_passes(sample_frame: pd.DataFrame) -> None:
    assert failures(to_canonical(sample_frame)) == []


def test_duplicate_rows_name_the_series_and_fix(sample_frame: pd.DataFrame) -> None:
    raw = pd.concat([sample_frame, sample_frame[sample_frame["unique_id"] == "m1"].head(2)])
    (message,) = failures(to_canonical(raw))
    assert "Duplicate (unique_id, ds) rows" in message and "'m1'" in message and "aggregate or drop" in message


def test_empty_timestamps_name_the_series(sample_frame: pd.DataFrame) -> None:
    raw = sample_frame.copy()
    raw.loc[raw["unique_id"] == "pop", "ds"] = None
    messages = failures(to_canonical(raw))
    assert any("Column 'ds' has 203 empty values (series 'pop')" in m for m in messages), messages


def test_missing_values_are_allowed(sample_frame: pd.DataFrame) -> None:
    raw = sample_frame.copy()
    raw.loc[5:9, "y"] = None
    assert failures(to_canonical(raw)) == []


@pytest.mark.parametrize("column", ["unique_id", "ds", "y"])
def test_schema_requires_each_column(sample_frame: pd.DataFrame, column: str) -> None:
    messages = failures(to_canonical(sample_frame).drop(columns=column))
    assert any(f"Column {column!r} is missing" in m for m in messages), messages
