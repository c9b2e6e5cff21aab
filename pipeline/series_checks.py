"""Per-series checks and regularisation: which series are fit to forecast, and why the others are not.

Each rejected series gets one reason code (the first that applies, in the order of ``REASONS``); the
codes are documented in docs/DATA_FORMAT.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipeline.canonical import series_codes, sorted_by_series_and_time
from pipeline.contracts import DS, ID, SeriesStatus, Y
from pipeline.frequency import infer_frequency, on_grid, to_offset

__all__ = ["MAX_ABS_VALUE", "REASONS", "SeriesChecks", "check_series", "regularize"]

# TimesFM normalises each series in float32 with a sum of squares over a patch, which overflows (to inf,
# then NaN forecasts) from magnitudes around 1e18; 1e16 leaves a margin of a hundred.
MAX_ABS_VALUE = 1e16
FAILED_REASON = "non_finite_forecast"  # the one reason of status `failed`; every other one is `rejected`

REASONS = {
    "null_timestamp": "a row of the series has an empty timestamp",
    "duplicate_timestamp": "two rows of the series share a timestamp",
    "non_finite_value": "a value is infinite",
    "out_of_range": "a value's magnitude exceeds 1e16, past what TimesFM's float32 arithmetic can normalise",
    "all_missing": "the series has no value at all",
    "too_few_observations": "fewer values than `min_observations`",
    "irregular_timestamps": "no frequency fits the timestamps (or they are off the declared frequency's grid)",
    "too_many_gaps": "after regularising to the frequency, the share of missing values exceeds "
                     "`max_missing_fraction`",
    "constant": "every value is the same (and `reject_constant` is on)",
    "stale": "the last value is more than `max_staleness` periods before `as_of`",
    "missing_covariates": "a dynamic covariate is missing or not finite at a context step the model uses, or a "
                          "static covariate has no value (forecasts with covariates)",
    "missing_future_covariates": "a dynamic covariate has no value at a forecast step: no future row, or an empty "
                                 "value there (forecasts with covariates)",
    "static_covariate_varies": "a static covariate has more than one value within the series (forecasts with "
                               "covariates)",
    "non_finite_forecast": "the model returned a non-finite forecast (status `failed`; beyond 128 steps the model "
                           "feeds back its own forecasts, so a shorter horizon may help)",
    "too_short_for_backtest": "too few points for the backtest's windows plus a season of history (backtest only)",
    "context_too_short": "fewer than 3 observed points before the scoring window (anomaly detection only)",
    "nothing_to_score": "no point on or after `since` (anomaly detection only)",
}


class SeriesChecks(BaseModel):
    """Rules a series must meet to be forecast, and how many rejections a run tolerates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_observations: int = Field(3, ge=1, description="Fewest non-missing values a series needs.")
    max_missing_fraction: float = Field(0.5, ge=0, le=1, description="Largest share of missing values after "
                                                                     "regularising to the series' frequency.")
    reject_constant: bool = Field(True, description="Reject series whose values never change.")
    max_staleness: int | None = Field(None, ge=0, description="Reject series whose last value is more than "
                                                              "this many periods before as_of (empty: never).")
    max_rejected_fraction: float = Field(0.2, ge=0, le=1, description="Fail the run, publishing nothing, when "
                                                                      "a larger share of series is rejected.")


def check_series(frame: pd.DataFrame, rejected: dict[str, str], checks: SeriesChecks, freq: str | None,
                 as_of: date) -> pd.DataFrame:
    """One row per series: status, reason, n_obs, first/last timestamp, frequency and gap share.

    ``rejected`` holds reasons already found by row-level validation; those series are not re-checked.
    Frequencies are inferred once per distinct timestamp signature, not once per series: a panel of a
    million series on one calendar costs one inference.
    """
    codes, series = series_codes(frame[ID])
    segments = _Segments(codes, len(series))
    values, stamps = frame[Y].to_numpy(dtype=np.float64, na_value=np.nan), frame[DS].to_numpy()
    summary = pd.DataFrame(_series_stats(segments, values, stamps), index=series)
    summary["reason"] = pd.Series(rejected, dtype=object)  # aligned on the series ids
    summary["freq"] = None  # missing_fraction is set for the unrejected series below (NaN for the others)
    _flag(summary, summary["n_obs"] == 0, "all_missing")
    _flag(summary, summary["max_abs"] > MAX_ABS_VALUE, "out_of_range")
    _flag(summary, summary["n_obs"] < checks.min_observations, "too_few_observations")
    pending = summary["reason"].isna()
    summary.loc[pending, "freq"] = _frequencies(segments, stamps, pending.to_numpy(), series, freq)
    _flag(summary, summary["freq"].isna(), "irregular_timestamps")
    ok = summary["reason"].isna()
    grid = _per_distinct(summary.loc[ok, ["first_ds", "last_ds", "freq"]],
                         lambda first, last, f: len(pd.date_range(first, last, freq=f)))
    # (grid - n) / grid, not 1 - n / grid: the latter rounds 1/7 missing above a max_missing_fraction of 1/7.
    summary.loc[ok, "missing_fraction"] = ((grid - summary.loc[ok, "n_obs"]) / grid).astype("float64")
    _flag(summary, summary["missing_fraction"] > checks.max_missing_fraction, "too_many_gaps")
    if checks.reject_constant:
        _flag(summary, summary["constant"], "constant")
    if checks.max_staleness is not None:
        _flag(summary, _periods_since(summary, as_of) > checks.max_staleness, "stale")
    summary["status"] = np.where(summary["reason"].isna(), SeriesStatus.OK.value, SeriesStatus.REJECTED.value)
    summary["reason"] = summary["reason"].astype(object).where(summary["reason"].notna(), None)
    summary["unseen_covariate_levels"] = pd.Series(pd.NA, index=summary.index, dtype="Int64")  # set by a forecast
    return summary.drop(columns=["constant", "max_abs"]).rename_axis(ID).reset_index()


class _Segments:
    """The rows of every series as one contiguous run, so that a reduction over each series is one
    ``ufunc.reduceat`` over an array: no group-by, no hashing. The canonical frame is ordered by series
    already; any other order is sorted once (stably) by series number."""

    def __init__(self, codes: np.ndarray, groups: int) -> None:
        self.order = None if bool(np.all(codes[1:] >= codes[:-1])) else np.argsort(codes, kind="stable")
        self.bounds = np.searchsorted(codes if self.order is None else codes[self.order], np.arange(groups + 1))

    def arranged(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per row) in series order."""
        return values if self.order is None else values[self.order]

    def reduce(self, ufunc: np.ufunc, arranged: np.ndarray) -> np.ndarray:
        """``ufunc`` over each series' run of ``arranged``; every series has at least one row."""
        if len(self.bounds) == 1:
            return ufunc.reduceat(arranged[:1], np.zeros(0, dtype=np.intp))  # no series: empty, right dtype
        return ufunc.reduceat(arranged, self.bounds[:-1])

    def rows(self, group: int, arranged: np.ndarray) -> np.ndarray:
        """The run of series number ``group`` in ``arranged``."""
        return arranged[self.bounds[group]:self.bounds[group + 1]]


_NAT = np.iinfo(np.int64).min  # NaT's bits as int64
_NEVER = np.iinfo(np.int64).max


def _series_stats(segments: _Segments, values: np.ndarray, stamps: np.ndarray) -> dict[str, np.ndarray]:
    """Per series: observed values, first and last timestamp (NaT ignored), whether every observed value is
    the same, and the largest magnitude (NaN ignored; NaN for a series without a value)."""
    values, ticks = segments.arranged(values), segments.arranged(stamps.view(np.int64))
    first = segments.reduce(np.minimum, np.where(ticks == _NAT, _NEVER, ticks))
    return {"n_obs": segments.reduce(np.add, (~np.isnan(values)).astype(np.int64)),
            "first_ds": np.where(first == _NEVER, _NAT, first).view(stamps.dtype),
            "last_ds": segments.reduce(np.maximum, ticks).view(stamps.dtype),  # NaT is the smallest int64
            "constant": segments.reduce(np.fmax, values) == segments.reduce(np.fmin, values),  # False when all NaN
            "max_abs": segments.reduce(np.fmax, np.abs(values))}


def _flag(summary: pd.DataFrame, mask: pd.Series, reason: str) -> None:
    """Sets ``reason`` where ``mask`` holds and no earlier reason was found."""
    summary.loc[mask.astype(bool) & summary["reason"].isna(), "reason"] = reason  # NaN compares False


def _per_distinct(keys: pd.DataFrame, compute: Callable[..., Any]) -> pd.Series:
    """``compute(*key)`` for each row of ``keys``, evaluated once per distinct key."""
    codes = keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup().to_numpy()
    _, firsts = np.unique(codes, return_index=True)
    values = np.array([compute(*keys.iloc[first]) for first in firsts])
    return pd.Series(values[codes], index=keys.index).infer_objects()


def _frequencies(segments: _Segments, stamps: np.ndarray, wanted: np.ndarray, series: pd.Index,
                 declared: str | None) -> pd.Series:
    """The frequency of each wanted series (None where none fits), once per timestamp signature; ``wanted``
    masks the series by number.

    A signature is (count, first, last, sum of the timestamps' 64-bit hashes), empty timestamps left out:
    equal timestamp sets give equal signatures, and unequal ones collide with negligible probability.
    """
    ticks = segments.arranged(stamps.view(np.int64))
    dated = ticks != _NAT
    keys = pd.DataFrame({"n": segments.reduce(np.add, dated.astype(np.int64)),
                         "first": segments.reduce(np.minimum, np.where(dated, ticks, _NEVER)),
                         "last": segments.reduce(np.maximum, ticks),
                         "hash": segments.reduce(np.add, np.where(dated, _mixed(ticks), np.uint64(0)))})[wanted]
    signature = keys.groupby(list(keys.columns), sort=False).ngroup().to_numpy()
    _, firsts = np.unique(signature, return_index=True)  # one series per signature, in signature order
    asked, arranged = np.flatnonzero(wanted), segments.arranged(stamps)
    found = [_frequency(pd.DatetimeIndex(_dated(segments.rows(asked[first], arranged))), declared)
             for first in firsts]
    return pd.Series(np.array(found, dtype=object)[signature], index=series[asked], dtype=object)


def _mixed(ticks: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """A 64-bit hash of each value (splitmix64's finaliser): sums of these tell timestamp sets apart.

    Computed in blocks that stay in the CPU's cache: five passes over 20M values in memory cost 4x more.
    """
    mixed = ticks.astype(np.uint64)
    for start in range(0, len(mixed), block):
        part = mixed[start:start + block]  # a view: the operations below write into ``mixed``
        part ^= part >> np.uint64(30)
        part *= np.uint64(0xBF58476D1CE4E5B9)
        part ^= part >> np.uint64(27)
        part *= np.uint64(0x94D049BB133111EB)
        part ^= part >> np.uint64(31)
    return mixed


def _dated(stamps: np.ndarray) -> np.ndarray:
    return stamps[~np.isnat(stamps)]


def _frequency(index: pd.DatetimeIndex, declared: str | None) -> str | None:
    index = index.sort_values()
    if declared is None:
        return infer_frequency(index)
    return declared if on_grid(index, declared) else None


def _periods_since(summary: pd.DataFrame, as_of: date) -> pd.Series:
    """Whole periods from each unrejected series' last timestamp to ``as_of`` (NaN for the rejected)."""
    ok = summary["reason"].isna()
    periods = _per_distinct(summary.loc[ok, ["last_ds", "freq"]], lambda last, f: max(
        len(pd.date_range(last, pd.Timestamp(as_of), freq=to_offset(f))) - 1, 0))
    return periods.reindex(summary.index)


def regularize(frame: pd.DataFrame, summary: pd.DataFrame, *, ordered: bool = False) -> pd.DataFrame:
    """The accepted series on their full frequency grid: every gap becomes a row with a missing value.

    Series with no missing value have a row for every grid point (checked: no duplicates, all on the
    grid) and are taken as they are; only the others are reindexed, one by one. ``ordered``: the caller
    found ``frame`` in canonical order already (:func:`sorted_by_series_and_time`), and so is any subset.

    Returns ``frame`` itself when it is regular already (every series accepted, none with a gap, canonical
    order, the canonical columns only), so a caller holding a staged copy of it need not write another.
    """
    ok = summary["status"] == SeriesStatus.OK.value
    accepted = summary[ok].set_index(ID)
    rows = frame if ok.all() else frame[frame[ID].isin(accepted.index)]  # isin hashes every row's id
    gappy = accepted.index[accepted["missing_fraction"] > 0]
    if gappy.empty and (ordered or sorted_by_series_and_time(rows)):  # canonical already: no sort of every row
        if rows is frame and list(frame.columns) == [ID, DS, Y] and isinstance(frame.index, pd.RangeIndex):
            return frame
        return rows[[ID, DS, Y]].reset_index(drop=True)
    parts = [rows[~rows[ID].isin(gappy)]]
    for series_id, group in rows[rows[ID].isin(gappy)].groupby(ID):
        row = accepted.loc[series_id]
        grid = pd.date_range(row["first_ds"], row["last_ds"], freq=row["freq"])
        values = group.set_index(DS)[Y].reindex(grid)
        parts.append(pd.DataFrame({ID: series_id, DS: grid.astype("datetime64[us]"), Y: values.to_numpy()}))
    return pd.concat(parts)[[ID, DS, Y]].sort_values([ID, DS], ignore_index=True)  # (id, ds) is unique
