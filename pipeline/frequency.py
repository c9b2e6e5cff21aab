"""Series frequency: infer it from timestamps, check timestamps against it, map it to TimesFM's code."""

from __future__ import annotations

import warnings
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
_MAX_GRID_PER_POINT = 20  # a grid more than 95% missing explains nothing: no fit


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
    return _grid_size(index, freq, bounded=False) is not None


def infer_frequency(timestamps: pd.Series | pd.DatetimeIndex) -> str | None:
    """The pandas alias of a series' sampling frequency, tolerating gaps; ``None`` if irregular.

    Tries the whole series first. With gaps, the candidates are the answers for runs of three consecutive
    timestamps, the shortest step between two timestamps, business days and hours, and the weekly,
    semi-monthly, monthly, quarterly and yearly calendars anchored at the first timestamp (which a short
    gappy series may never show in a run). Of those whose grid holds every timestamp, the one with the
    fewest grid points, i.e. the fewest missing values, wins: a business-day series with holidays missing
    fits the daily grid too, with every weekend missing.
    """
    index = pd.DatetimeIndex(timestamps).sort_values().unique()  # a repeated stamp is one grid point
    if len(index) < 3:
        return None
    whole = _infer(index)
    if whole is not None:
        return whole
    votes = Counter(_infer(index[i:i + 3]) for i in range(min(len(index) - 2, _WINDOWS)))
    # In this order, which breaks ties: a calendar's name (W-MON) says more than a step's (7D), and a
    # business calendar wins only by missing fewer points (a span without a weekend is plain days).
    candidates = [freq for freq, _ in votes.most_common() if freq is not None]
    candidates += [*_calendars(index[0]), _smallest_step(index), "B", "bh"]
    sizes = {freq: _grid_size(index, freq) for freq in dict.fromkeys(candidates)}
    fitting = {freq: size for freq, size in sizes.items() if size is not None}
    return min(fitting, key=fitting.__getitem__, default=None)  # min keeps the first of equals


def _infer(index: pd.DatetimeIndex) -> str | None:
    """``pd.infer_freq`` as an alias, whichever of its return types this pandas has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pandas 3 announces an offset return type
        found = pd.infer_freq(index)
    return getattr(found, "freqstr", found)


def _calendars(first: pd.Timestamp) -> list[str]:
    """Calendar offsets anchored where the series starts: with gaps, no run of three timestamps may show
    them (business days and hours are tried too, after the plain steps)."""
    month, weekday = first.strftime("%b").upper(), first.strftime("%a").upper()
    return ["MS", "ME", "BMS", "BME", "SMS", "SME", f"W-{weekday}", f"QS-{month}", f"QE-{month}", f"YS-{month}",
            f"YE-{month}"]


def _smallest_step(index: pd.DatetimeIndex) -> str:
    """The shortest step between timestamps as a fixed-length alias: the only clue in a short gappy series."""
    step = pd.Series(index).diff().min()
    days, rest = divmod(step, pd.Timedelta(days=1))
    if days and not rest:  # calendar days ('D'), not 24-hour ticks, so the grid follows the date
        return "D" if days == 1 else f"{days}D"
    return pd.tseries.frequencies.to_offset(step).freqstr


def _grid_size(index: pd.DatetimeIndex, freq: str, bounded: bool = True) -> int | None:
    """Points of the ``freq`` grid from the first timestamp to the last, or None if one lies off it.

    ``bounded``: a grid of more than ``_MAX_GRID_PER_POINT`` points per timestamp is no fit either (more
    than 95% of it would be missing), counted before it is built, so that inferring from random timestamps
    a second apart costs nothing. A declared frequency is not bounded: its gaps are counted and judged.
    """
    start = index[0]
    step = (start + to_offset(freq)) - start
    if bounded and (index[-1] - start) / step + 1 > _MAX_GRID_PER_POINT * len(index):
        return None
    grid = pd.date_range(start, index[-1], freq=freq)
    fits = len(grid) > 0 and grid[0] == start and bool(index.isin(grid).all())
    return len(grid) if fits else None


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
