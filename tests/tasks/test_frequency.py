"""Frequency inference (gaps tolerated) and the alias -> TimesFM code mapping, for every alias family."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.errors import InputDataError
from tasks.frequency import freq_code, infer_frequency


@pytest.mark.parametrize(
    ("aliases", "code"),
    [
        (["s", "min", "30min", "h", "3h", "D", "B", "C", "ms", "us", "bh"], 0),
        (["W", "W-SUN", "W-MON", "MS", "ME", "BMS", "BME", "SMS", "SME", "2W"], 1),
        (["QS", "QE", "QS-OCT", "QE-DEC", "BQS", "BQE", "YS", "YE", "YS-JUL", "BYS", "BYE"], 2),
    ],
)
def test_alias_families(aliases: list[str], code: int) -> None:
    assert {alias: freq_code(alias) for alias in aliases} == dict.fromkeys(aliases, code)


@pytest.mark.parametrize(
    ("freq", "code"),
    [("QS", 2), ("QE", 2), ("YS", 2), ("YE", 2), ("MS", 1), ("ME", 1), ("W", 1), ("D", 0), ("h", 0),
     ("30min", 0)],
)
def test_inferred_frequency_gets_the_right_code(freq: str, code: int) -> None:
    stamps = pd.date_range("2001-01-01", periods=40, freq=freq)
    with_gaps = stamps.delete([5, 6, 20])
    inferred = infer_frequency(with_gaps)
    assert inferred is not None and freq_code(inferred) == code, f"{freq}: inferred {inferred}"
    assert pd.date_range(stamps[0], periods=40, freq=inferred).equals(stamps), f"{freq}: grid of {inferred} differs"


def test_unknown_alias() -> None:
    with pytest.raises(InputDataError, match="Unknown frequency 'fortnightly'"):
        freq_code("fortnightly")


def test_irregular_or_short_series_have_no_frequency() -> None:
    assert infer_frequency(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05", "2020-01-09"])) is None
    assert infer_frequency(pd.to_datetime(["2020-01-01", "2020-01-02"])) is None
