"""Frequency aliases map to TimesFM codes by offset type, for every alias family."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.errors import InputDataError
from tasks.frequency import freq_code, infer_frequency


@pytest.mark.parametrize(
    ("aliases", "code"),
    [
        (["s", "min", "h", "3h", "D", "B", "C", "ms", "us", "bh"], 0),
        (["W", "W-SUN", "W-MON", "MS", "ME", "BMS", "BME", "SMS", "SME", "2W"], 1),
        (["QS", "QE", "QS-OCT", "QE-DEC", "BQS", "BQE", "YS", "YE", "YS-JUL", "BYS", "BYE"], 2),
    ],
)
def test_alias_families(aliases: list[str], code: int) -> None:
    assert {alias: freq_code(alias) for alias in aliases} == dict.fromkeys(aliases, code)


def test_unknown_alias() -> None:
    with pytest.raises(InputDataError, match="Unknown frequency 'fortnightly'"):
        freq_code("fortnightly")


def test_infer_from_timestamps() -> None:
    assert infer_frequency(pd.Series(pd.date_range("2020-01-01", periods=10, freq="QS")), "a") == "QS-JAN"
    assert infer_frequency(pd.Series(pd.date_range("2020-01-05", periods=10, freq="W")), "a") == "W-SUN"


def test_irregular_series_names_the_series_and_fix() -> None:
    stamps = pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05"]))
    with pytest.raises(InputDataError, match=r"series 'store-7'.*pass the frequency explicitly"):
        infer_frequency(stamps, "store-7")
