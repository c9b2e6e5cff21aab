"""Frequency inference (gaps tolerated) and the alias -> TimesFM code mapping, for every alias family."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import InputDataError
from pipeline.frequency import check_freq, freq_code, infer_frequency


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


@pytest.mark.parametrize("freq", ["D", "2D", "h", "15min", "W-MON", "MS", "QS-OCT", "YE"])
def test_forward_frequencies_are_accepted(freq: str) -> None:
    assert check_freq(freq) == freq


@pytest.mark.parametrize(("freq", "message"),
                         [("-1D", "'-1D' steps back in time"), ("0h", "'0h' steps nowhere"),
                          ("XYZ", "Unknown frequency 'XYZ'"), ("", "Unknown frequency ''"),
                          ("D" * 10_000, r"Unknown frequency 'DDDD.*\(9,960 more characters\)")])
def test_bad_frequencies_are_refused_with_the_fix(freq: str, message: str) -> None:
    with pytest.raises(InputDataError, match=message) as raised:
        check_freq(freq)
    assert "use a" in str(raised.value) and len(str(raised.value)) < 300
