"""Frequency inference (gaps tolerated) and the alias -> TimesFM code mapping, for every alias family."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import InputDataError
from pipeline.frequency import check_freq, freq_code, infer_frequency, on_grid, season_length


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
    assert infer_frequency(pd.to_datetime(["2024-01-01 00:00", "2024-01-02 03:17", "2024-01-05 11:02",
                                           "2024-01-09 07:40"])) is None
    assert infer_frequency(pd.to_datetime(["2020-01-01", "2020-01-02"])) is None


def test_dates_with_gaps_everywhere_are_daily_with_missing_values() -> None:
    """No run of three consecutive days, yet every stamp is on the daily grid: gaps, not irregularity
    (the missing-value share then decides whether the series is fit to forecast)."""
    assert infer_frequency(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-05", "2020-01-09"])) == "D"
    assert infer_frequency(pd.to_datetime(["2021-01-01", "2021-01-03", "2021-01-07"])) == "2D"
    assert infer_frequency(pd.to_datetime(["2021-01-01 00:00", "2021-01-01 00:15", "2021-01-01 01:00"])) == "15min"


def test_a_grid_mostly_of_missing_points_is_no_fit() -> None:
    """Two stamps a second apart among a day's worth of others: a grid of seconds would be >95% missing."""
    stamps = pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:00:01", "2024-01-01 06:00:00",
                             "2024-01-01 13:00:00", "2024-01-02 00:00:00"])
    assert infer_frequency(stamps) is None


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


def _us_business_days(start: str, end: str) -> pd.DatetimeIndex:
    """Business days without the US federal holidays: what a real business-day series has."""
    from pandas.tseries.holiday import USFederalHolidayCalendar

    days = pd.bdate_range(start, end)
    return days[~days.isin(USFederalHolidayCalendar().holidays(start, end))]


@pytest.mark.parametrize(("start", "end"), [("2023-01-02", "2024-12-31"), ("2024-11-01", "2025-01-31")])
def test_business_days_with_holidays_missing_are_business_days(start: str, end: str) -> None:
    stamps = _us_business_days(start, end)
    assert len(stamps) < len(pd.bdate_range(start, end))  # holidays really are missing
    assert infer_frequency(stamps) == "B"


def test_daily_series_with_weekends_and_gaps_stays_daily() -> None:
    stamps = pd.date_range("2024-01-01", periods=60, freq="D").delete([10, 11, 30])
    assert infer_frequency(stamps) == "D"


def test_business_hours_with_gaps_are_business_hours() -> None:
    stamps = pd.date_range("2024-01-01 09:00", periods=200, freq="bh")
    assert infer_frequency(stamps) == "bh"
    assert infer_frequency(stamps.delete([3, 50, 51, 120])) == "bh"


@pytest.mark.parametrize("freq", ["SMS", "SME", "BMS", "BME"])
def test_calendar_offsets_with_and_without_gaps(freq: str) -> None:
    stamps = pd.date_range("2020-01-01", periods=40, freq=freq)
    assert infer_frequency(stamps) == freq
    assert infer_frequency(stamps.delete([5, 6, 20])) == freq


def test_the_offset_with_the_fewest_missing_points_wins() -> None:
    """Mondays with gaps fit a daily, a business-day and a weekly grid; the weekly one misses the least."""
    mondays = pd.date_range("2024-01-01", periods=30, freq="W-MON").delete([4, 5, 17])
    assert infer_frequency(mondays) == "W-MON"
    first_of_month = pd.date_range("2020-01-01", periods=30, freq="MS").delete([3, 4, 11])
    assert infer_frequency(first_of_month) == "MS"  # not SMS, whose grid also holds every 1st


def test_three_regular_timestamps_are_enough() -> None:
    assert infer_frequency(pd.date_range("2024-01-01", periods=3, freq="D")) == "D"
    assert infer_frequency(pd.date_range("2024-01-01", periods=3, freq="MS")) == "MS"


def test_unsorted_timestamps_are_inferred_like_sorted_ones() -> None:
    stamps = pd.date_range("2024-01-01", periods=30, freq="D").delete([4, 9])
    assert infer_frequency(stamps[::-1]) == "D"


@pytest.mark.parametrize(("freq", "season"), [
    ("min", 1440), ("15min", 96), ("h", 24), ("3h", 8), ("7h", 3), ("13h", 1), ("s", 86400), ("D", 7), ("2D", 1),
    ("24h", 7), ("48h", 1), ("B", 5), ("C", 5), ("W", 52), ("W-MON", 52), ("SMS", 24), ("SME", 24), ("MS", 12),
    ("ME", 12), ("BMS", 12), ("QS", 4), ("QE-DEC", 4), ("BQE", 4), ("YS", 1), ("YE", 1),
])
def test_season_lengths(freq: str, season: int) -> None:
    """A day of sub-daily steps (whole steps only), a week of days, a year of weeks, months or quarters."""
    assert season_length(freq) == season


def test_on_grid_needs_the_first_timestamp_on_the_grid_and_no_stamp_off_it() -> None:
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    assert on_grid(days.delete([2, 3]), "D")
    assert not on_grid(days + pd.Timedelta(hours=1), "MS")  # the first stamp is not a month start
    assert not on_grid(days.append(pd.DatetimeIndex(["2024-01-10 12:00"])), "D")
    assert on_grid(pd.DatetimeIndex(["2024-01-01", "2025-01-01"]), "D"), "a declared grid is not bounded"


@pytest.mark.parametrize(("stamps", "freq"), [
    (["2024-01-01", "2024-01-03", "2024-01-04", "2024-01-08"], "B"),  # Mon, Wed, Thu, Mon: no run says B
    (["2024-01-01 09:00", "2024-01-01 11:00", "2024-01-01 12:00", "2024-01-02 09:00"], "bh"),
    (["2021-01-01", "2021-03-01", "2021-04-01"], "MS"),
    (["2021-01-31", "2021-03-31", "2021-04-30"], "ME"),
    (["2021-01-01 00:00", "2021-01-02 12:00", "2021-01-05 12:00", "2021-01-07 00:00"], "36h"),
    (["2021-01-04", "2021-01-18", "2021-01-25"], "W-MON"),
    (["2020-01-01", "2020-07-01", "2020-10-01"], "QS-JAN"),
    (["2010-03-01", "2012-03-01", "2013-03-01"], "YS-MAR"),
])
def test_short_gappy_series_are_found_by_their_calendar(stamps: list[str], freq: str) -> None:
    """Every run of three has a gap: only the calendars tried as candidates can explain them."""
    assert infer_frequency(pd.to_datetime(stamps)) == freq


def test_inference_returns_an_alias_whichever_type_pandas_infers() -> None:
    """pandas announces that infer_freq will return an offset; the inferred frequency stays an alias."""
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    option = "future.infer_freq_returns_offset"
    settings = [True, False] if "infer_freq_returns_offset" in dir(pd.options.future) else []  # pandas >= 3
    assert settings or pd.__version__ < "3", "pandas 3 has the switch: this test must exercise it"
    for returns_offset in settings:
        with pd.option_context(option, returns_offset):
            found = [infer_frequency(days), infer_frequency(days.delete([3, 4]))]
        assert found == ["D", "D"] and all(type(f) is str for f in found), found  # an offset compares equal to "D"
    assert infer_frequency(days) == "D"


def test_rarer_offsets_with_gaps_are_found_by_runs_of_three() -> None:
    """Business quarter ends are no calendar tried as such: only runs of three consecutive stamps show them."""
    stamps = pd.date_range("2015-01-01", periods=30, freq="BQE").delete([5, 12])
    assert infer_frequency(stamps) == "BQE-DEC"


@pytest.mark.parametrize(("freq", "message"), [
    ("-1D", "Frequency '-1D' steps back in time; use a positive multiple such as 'D' or '2D'."),
    ("0h", "Frequency '0h' steps nowhere in time; use a positive multiple such as 'D' or '2D'."),
    ("-" + "0" * 60 + "1D", "Frequency '-" + "0" * 39 + "'... (23 more characters) steps back in time; use a "
                            "positive multiple such as 'D' or '2D'."),
])
def test_backward_frequencies_are_refused_in_full(freq: str, message: str) -> None:
    with pytest.raises(InputDataError) as raised:
        check_freq(freq)
    assert str(raised.value) == message


@pytest.mark.parametrize(("last", "freq"), [(59, "s"), (60, None)])
def test_a_grid_may_be_at_most_twenty_points_per_timestamp(last: int, freq: str | None) -> None:
    """Three stamps a second apart at most: 60 grid seconds (20 per stamp) fit, 61 do not."""
    start = pd.Timestamp("2024-01-01 00:00:07")
    stamps = pd.DatetimeIndex([start, start + pd.Timedelta(seconds=1), start + pd.Timedelta(seconds=last)])
    assert infer_frequency(stamps) == freq


def test_an_unknown_alias_is_refused_with_examples_of_known_ones() -> None:
    with pytest.raises(InputDataError) as raised:
        check_freq("fortnightly")
    assert str(raised.value) == ("Unknown frequency 'fortnightly'; use a pandas alias such as 'h', 'D', 'W', 'MS', "
                                 "'QS', 'YS'.")


def test_repeated_timestamps_count_once() -> None:
    """Duplicates are rejected before inference in a run; called directly, they must not break it."""
    stamps = pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-03", "2024-01-04"])
    assert infer_frequency(stamps) == "D"
    assert infer_frequency(pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02"])) is None, "two stamps"
