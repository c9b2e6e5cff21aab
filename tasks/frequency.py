"""Series frequency: infer it from timestamps and map it to TimesFM's frequency code."""

from __future__ import annotations

import pandas as pd
from pandas.tseries import offsets

from tasks.errors import InputDataError

__all__ = ["freq_code", "infer_frequency"]

_MEDIUM = (offsets.Week, offsets.MonthBegin, offsets.MonthEnd, offsets.BusinessMonthBegin,
           offsets.BusinessMonthEnd, offsets.SemiMonthBegin, offsets.SemiMonthEnd)
_LOW = (offsets.QuarterBegin, offsets.QuarterEnd, offsets.BQuarterBegin, offsets.BQuarterEnd,
        offsets.YearBegin, offsets.YearEnd, offsets.BYearBegin, offsets.BYearEnd)


def freq_code(freq: str) -> int:
    """TimesFM frequency code for a pandas alias: 0 high (up to daily), 1 medium (weekly, monthly),
    2 low (quarterly, yearly).

    Mapped by offset type, not by alias text: ``timesfm.freq_map`` misreads pandas' current aliases.
    """
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError as exc:
        raise InputDataError(f"Unknown frequency {freq!r}; use a pandas alias such as 'D', 'W', 'MS', 'QS'.") from exc
    if isinstance(offset, _LOW):
        return 2
    if isinstance(offset, _MEDIUM):
        return 1
    return 0


def infer_frequency(timestamps: pd.Series, series_id: str) -> str:
    """The pandas alias of a series' sampling frequency, inferred from its timestamps."""
    index = pd.DatetimeIndex(timestamps)
    inferred = pd.infer_freq(index) if len(index) >= 3 else None
    if inferred is None:
        raise InputDataError(
            f"Cannot infer the frequency of series {series_id!r} from its timestamps (irregular, or fewer "
            "than 3 points). Fix: pass the frequency explicitly (parameter `freq`, CLI --freq), e.g. 'D'."
        )
    return inferred
