"""Series frequency: infer it from timestamps, check timestamps against it, map it to TimesFM's code."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from pandas.tseries import offsets

from forecast_model.errors import shorten
from pipeline.errors import InputDataError

__all__ = ["check_freq", "freq_code", "infer_frequency", "on_grid", "season_length", "to_offset"]

_MEDIUM = (offsets.Week, offsets.MonthBegin, offsets.MonthEnd, offsets.BusinessMonthBegin,
           offsets.BusinessMonthEnd, offsets.SemiMonthBegin, offsets.SemiMonthEnd)
_LOW = (offsets.QuarterBegin, offsets.QuarterEnd, offsets.BQuarterBegin, offsets.BQuarterEnd,
        offsets.YearBegin, offsets.YearEnd, offsets.BYearBegin, offsets.BYearEnd)
_WINDOWS = 64  # leading triples tried when gaps defeat inference on the whole series


def to_offset(freq: str) -> offsets.BaseOffset:
    """The pandas offset of an alias, or a clear error."""
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError) as exc:
        raise InputDataError(f"Unknown frequency {shorten(freq, 40)}; use a pandas alias such as 'h', 'D', 'W', "
                             "'MS', 'QS', 'YS'.") from exc


def check_freq(freq: str) -> str:
    """``freq`` if it is a pandas alias that steps forward in time; a clear error otherwise (a declared
    frequency of '-1D' would put every series off its grid)."""
    offset = to_offset(freq)
    if offset.n <= 0:
        raise InputDataError(f"Frequency {shorten(freq, 40)} steps {'back' if offset.n < 0 else 'nowhere'} in time; "
                             "use a positive multiple such as 'D' or '2D'.")
    return freq


def freq_code(freq: str) -> int:
    """TimesFM frequency code for a pandas alias: 0 high (up to daily), 1 medium (weekly, monthly),
    2 low (quarterly, yearly).

    Mapped by offset type, not by alias text: ``timesfm.freq_map`` misreads pandas' current aliases.
    """
    offset = to_offset(freq)
    if isinstance(offset, _LOW):
        return 2
    if isinstance(offset, _MEDIUM):
        return 1
    return 0


def on_grid(index: pd.DatetimeIndex, freq: str) -> bool:
    """Whether every timestamp lies on the grid of ``freq`` started at the first one (gaps allowed)."""
    grid = pd.date_range(index[0], index[-1], freq=freq)
    return len(grid) > 0 and grid[0] == index[0] and bool(index.isin(grid).all())


def infer_frequency(timestamps: pd.Series | pd.DatetimeIndex) -> str | None:
    """The pandas alias of a series' sampling frequency, tolerating gaps; ``None`` if irregular.

    Tries the whole series first; with gaps, tries runs of three consecutive timestamps and keeps the
    most common answer on whose grid every timestamp lies.
    """
    index = pd.DatetimeIndex(timestamps).sort_values()
    if len(index) < 3:
        return None
    whole = pd.infer_freq(index)
    if whole is not None:
        return whole
    votes = Counter(pd.infer_freq(index[i:i + 3]) for i in range(min(len(index) - 2, _WINDOWS)))
    votes.pop(None, None)
    return next((freq for freq, _ in votes.most_common() if on_grid(index, freq)), None)


def season_length(freq: str) -> int:
    """The usual seasonal period of a frequency: a day of sub-daily steps, a week of days, a year of months."""
    offset = to_offset(freq)
    if isinstance(offset, offsets.Day):  # a calendar day, not a fixed 24 h Tick, in pandas 3
        return 7 if offset.n == 1 else 1
    if isinstance(offset, offsets.Tick):
        seconds = pd.Timedelta(offset).total_seconds()
        if seconds < 86400:
            return max(int(86400 // seconds), 1)
        return 7 if seconds == 86400 else 1
    table: list[tuple[tuple[type, ...], int]] = [
        ((offsets.BusinessDay, offsets.CustomBusinessDay), 5), ((offsets.Week,), 52),
        ((offsets.SemiMonthBegin, offsets.SemiMonthEnd), 24), (_MEDIUM, 12), (_LOW[:4], 4),
    ]
    return next((period for kinds, period in table if isinstance(offset, kinds)), 1)
