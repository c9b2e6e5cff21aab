"""Covariate data (issue #19): split an input into history and future rows, check each series' covariates,
and hand the engine the values of the steps it uses.

The layout (docs/DATA_FORMAT.md, "Covariates"): covariate columns beside ``unique_id``, ``ds`` and ``y``.
Future values of the dynamic covariates come as rows after a series' last observed value with an empty
target (Nixtla's "future exogenous" convention), or from a second source with ``unique_id``, ``ds`` and the
dynamic columns. Static covariates are columns constant within a series.

What a series needs (else it is rejected, the run goes on): every dynamic covariate present and finite at
every step of the context the model uses (the last ``context_len`` steps of its regular grid, from its first
observed value) -> ``missing_covariates``; and at each of the ``horizon`` steps after its last observation
-> ``missing_future_covariates``; every static covariate given and one value within the series ->
``missing_covariates`` / ``static_covariate_varies``; no two rows of one timestamp -> ``duplicate_timestamp``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecast_model import CovariateForecast, Covariates
from forecast_model.errors import shorten_names
from pipeline.calendar import calendar_covariates
from pipeline.canonical import ColumnMapping, sorted_by_series_and_time, to_canonical
from pipeline.contracts import DS, ID, SeriesStatus, Y
from pipeline.errors import InputDataError
from pipeline.params import CovariateParams

__all__ = ["STEP", "AlignedCovariates", "check_covariates", "covariate_fingerprint", "effects_frame",
           "future_covariates", "split_future"]

STEP = "step"  # of an aligned covariate row: 0 for a context step, 1 ... horizon for a forecast step


def split_future(frame: pd.DataFrame, params: CovariateParams,
                 future: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The canonical target frame and the covariate frame of an input with covariate columns.

    With dynamic covariates, a series' rows after its last observed value are its future rows: they leave the
    target frame (they are not missing values) and keep their covariates. ``future`` (from
    :func:`future_covariates`) adds future rows; its rows at or before a series' last observation are left out
    (the input's own rows give those steps).

    Returns:
        ``(target, covariates)``: ``target`` has the canonical columns, ``covariates`` ``unique_id``, ``ds``
        and the covariate columns, history and future rows, sorted by series and time.

    Raises:
        InputDataError: ``future`` gives a timestamp of a series that the input gives too.
    """
    names = list(params.columns())
    if not params.dynamic():
        return frame[[ID, DS, Y]], frame[[ID, DS, *names]]
    last = frame.loc[frame[Y].notna()].groupby(ID, sort=False)[DS].max()
    ahead = (frame[DS] > frame[ID].map(last)).to_numpy(dtype=bool, na_value=False)
    target = frame.loc[~ahead, [ID, DS, Y]].reset_index(drop=True) if ahead.any() else frame[[ID, DS, Y]]
    covariates = frame[[ID, DS, *names]]
    if future is not None and len(future):
        after = (future[DS] > future[ID].map(last)).to_numpy(dtype=bool, na_value=False)
        future = future.loc[after].reindex(columns=[ID, DS, *names])
        both = covariates.merge(future[[ID, DS]], on=[ID, DS])
        if len(both):
            examples = [f"{i} at {d}" for i, d in both[[ID, DS]].head(3).itertuples(index=False)]
            raise InputDataError(f"covariates.future_source gives {len(both)} timestamps that the input gives too "
                                 f"(e.g. {shorten_names(examples)}). Fix: give each future step once, in the input's "
                                 "future rows or in the future source.")
        covariates = pd.concat([covariates, future], ignore_index=True)
        covariates = covariates.sort_values([ID, DS], kind="stable", ignore_index=True)
    return target, covariates


def future_covariates(raw: pd.DataFrame, columns: ColumnMapping, params: CovariateParams) -> pd.DataFrame:
    """The future source's rows as a covariate frame (``unique_id``, ``ds``, the dynamic columns).

    Raises:
        InputDataError: a column is missing or unreadable, or the source has target values (the future has
            none: a row with a target value belongs to the input).
    """
    kinds = {name: kind for name, kind in params.columns().items() if name in params.dynamic()}
    if columns.target_col not in raw.columns:
        raw = raw.assign(**{columns.target_col: np.nan})
    frame = to_canonical(raw, "long", columns, covariates=kinds)
    if frame[Y].notna().any():
        rows = frame.loc[frame[Y].notna(), [ID, DS]].head(3)
        examples = [f"{i} at {d}" for i, d in rows.itertuples(index=False)]
        raise InputDataError(f"covariates.future_source has {int(frame[Y].notna().sum())} target values in column "
                             f"{columns.target_col!r} (e.g. {shorten_names(examples)}); the future has none. Fix: move "
                             "those rows to the input, or drop the target column from the future source.")
    return frame.drop(columns=[Y])


def covariate_fingerprint(target_fingerprint: str, covariates: pd.DataFrame) -> str:
    """The input fingerprint of a run with covariates: the target frame's, and every covariate value."""
    digest = hashlib.sha256(target_fingerprint.encode())
    digest.update(",".join(map(str, covariates.columns)).encode())
    digest.update(pd.util.hash_pandas_object(covariates, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def check_covariates(frame: pd.DataFrame, status: pd.DataFrame, covariates: pd.DataFrame, params: CovariateParams,
                     *, horizon: int, context_len: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rejects the accepted series whose covariates cannot serve (module docstring), and lines up the others'.

    Args:
        frame: the canonical target frame (finds each series' first observed value).
        status: the series-status table of the per-series checks; its accepted series are checked.
        covariates: the covariate frame of :func:`split_future`.

    Returns:
        ``(status, aligned)``: the status with the new rejections, and one row per accepted series and step it
        uses (``unique_id``, ``ds``, ``step``, the covariate columns, the calendar features), sorted by series,
        then step (the context's steps oldest first, then the horizon's).
    """
    status = status.copy()
    ok = status["status"] == SeriesStatus.OK.value
    wanted = _wanted_steps(frame, status[ok], horizon, context_len)
    reasons = _static_reasons(covariates, params)
    if not sorted_by_series_and_time(covariates):  # canonical order has no duplicate: 2 s of hashing saved at 5M rows
        doubled = covariates.loc[covariates.duplicated([ID, DS], keep=False), ID].unique()
        reasons = pd.concat([pd.Series("duplicate_timestamp", index=pd.Index(doubled, name=ID)), reasons])
        covariates = covariates.drop_duplicates([ID, DS])
    aligned = wanted.merge(covariates, on=[ID, DS], how="left", sort=False)
    for reason, part in (("missing_covariates", aligned[STEP] == 0), ("missing_future_covariates", aligned[STEP] > 0)):
        missing = _missing(aligned, params.dynamic()) & part.to_numpy()
        reasons = pd.concat([reasons, pd.Series(reason, index=pd.Index(aligned.loc[missing, ID].unique(), name=ID))])
    reasons = reasons[~reasons.index.duplicated()]  # the first reason found, in the order above
    rejected = ok & status[ID].isin(reasons.index)
    status.loc[rejected, "status"] = SeriesStatus.REJECTED.value
    status.loc[rejected, "reason"] = status.loc[rejected, ID].map(reasons)
    aligned = aligned[~aligned[ID].isin(reasons.index)].reset_index(drop=True)
    for name in params.static():  # a static covariate's one value on every row of the series
        aligned[name] = aligned[ID].map(covariates.dropna(subset=[name]).groupby(ID)[name].first())
    if params.calendar:
        aligned = pd.concat([aligned, calendar_covariates(aligned[DS], params.calendar)], axis=1)
    return status, aligned


def _wanted_steps(frame: pd.DataFrame, accepted: pd.DataFrame, horizon: int, context_len: int) -> pd.DataFrame:
    """Every accepted series' context steps (its regular grid from its first observed value, the last
    ``context_len`` of them) and horizon steps; the grids are built once per distinct (first, last, freq)."""
    first = frame.loc[frame[Y].notna()].groupby(ID, sort=False)[DS].min()
    keys = pd.DataFrame({"first": accepted[ID].map(first).to_numpy(), "last": accepted["last_ds"].to_numpy(),
                         "freq": accepted["freq"].to_numpy()})
    codes, distinct = pd.MultiIndex.from_frame(keys).factorize()
    grids, steps = [], []
    for start, last, freq in distinct:
        context = pd.date_range(start, last, freq=freq)[-context_len:]
        ahead = pd.date_range(last, periods=horizon + 1, freq=freq)[1:]
        grids.append(context.append(ahead).to_numpy().astype("datetime64[us]"))
        steps.append(np.r_[np.zeros(len(context), np.int32), np.arange(1, horizon + 1, dtype=np.int32)])
    sizes = np.array([len(grids[c]) for c in codes], dtype=np.int64)
    return pd.DataFrame({
        ID: np.repeat(accepted[ID].to_numpy(), sizes),
        DS: np.concatenate([grids[c] for c in codes]) if len(codes) else np.empty(0, "datetime64[us]"),
        STEP: np.concatenate([steps[c] for c in codes]) if len(codes) else np.empty(0, np.int32),
    })


def _static_reasons(covariates: pd.DataFrame, params: CovariateParams) -> pd.Series:
    """Per series with a bad static covariate: ``missing_covariates`` (none given) or
    ``static_covariate_varies`` (more than one value)."""
    found = []
    for name in params.static():
        counts = covariates.groupby(ID, sort=False)[name].nunique()
        found.append(pd.Series("missing_covariates", index=counts.index[counts == 0]))
        found.append(pd.Series("static_covariate_varies", index=counts.index[counts > 1]))
    reasons = pd.concat(found) if found else pd.Series(dtype=object)
    return reasons.rename_axis(ID)


def _missing(aligned: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """Rows where any of the ``names`` columns is missing or not finite."""
    missing = np.zeros(len(aligned), dtype=bool)
    for name in names:
        column = aligned[name]
        if column.dtype.kind == "f":
            missing |= ~np.isfinite(column.to_numpy())
        else:
            missing |= column.isna().to_numpy()
    return missing


class AlignedCovariates:
    """The aligned covariates of a run (:func:`check_covariates`), cut into the engine's per-series arrays."""

    def __init__(self, aligned: pd.DataFrame, params: CovariateParams) -> None:
        self.params = params
        ids = aligned[ID].to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.empty(0, np.int64)
        ends = np.r_[starts[1:], len(ids)]
        self._rows = {name: (int(s), int(e)) for name, s, e in zip(ids[starts], starts, ends, strict=True)}
        self._context = aligned[STEP].to_numpy() == 0
        numbers = (*params.dynamic_numerical, *params.static_numerical)
        self._numbers = {name: aligned[name].to_numpy(dtype=np.float64) for name in numbers}
        # Text levels as a NumPy string array, calendar levels as ints: the engine checks object arrays value by
        # value (a quarter of its time at 3,000 series), these at once.
        self._levels = {name: aligned[name].astype(str).to_numpy(dtype=str)
                        for name in (*params.dynamic_categorical, *params.static_categorical)}
        self._levels.update({name: aligned[name].to_numpy(dtype=np.int64) for name in params.calendar})

    def for_series(self, ids: Sequence[str], lengths: Sequence[int], horizon: int) -> Covariates:
        """The :class:`Covariates` of ``ids``, whose values have ``lengths`` points each, for a forecast of
        ``horizon`` steps: the aligned steps, preceded by filler for the points before the context (the engine
        never reads them)."""
        for name, length in zip(ids, lengths, strict=True):
            start, end = self._rows[name]
            used = int(self._context[start:end].sum())
            if used > length or end - start != used + horizon:
                raise LookupError(f"Series {name!r} has {end - start} aligned covariate steps for {length} points "
                                  f"and horizon {horizon}.")
        totals = [length + horizon for length in lengths]
        return self.windows(ids, totals, totals)

    def windows(self, ids: Sequence[str], totals: Sequence[int], ends: Sequence[int]) -> Covariates:
        """The :class:`Covariates` of ``ids`` at the steps ``0 ... end - 1`` of each one's grid, whose aligned
        steps are its last ones up to step ``total - 1``; the steps before them are filler (a backtest window
        ending before the series does takes the first ``end`` steps)."""
        params = self.params
        dynamic_numerical: dict[str, list[np.ndarray]] = {name: [] for name in params.dynamic_numerical}
        dynamic_categorical: dict[str, list[np.ndarray]] = {name: [] for name in (*params.dynamic_categorical,
                                                                                  *params.calendar)}
        static_numerical: dict[str, list[float]] = {name: [] for name in params.static_numerical}
        static_categorical: dict[str, list[object]] = {name: [] for name in params.static_categorical}
        for name, total, stop in zip(ids, totals, ends, strict=True):
            start, end = self._rows[name]
            pad = total - (end - start)
            if pad < 0 or not pad < stop <= total:
                raise LookupError(f"Series {name!r} has {end - start} aligned covariate steps, not the steps up to "
                                  f"{stop} of {total}.")
            end = start + stop - pad
            for column, values in dynamic_numerical.items():
                values.append(np.r_[np.zeros(pad), self._numbers[column][start:end]])
            for column, levels in dynamic_categorical.items():
                part = self._levels[column][start:end]
                levels.append(np.r_[np.full(pad, part[0]), part])
            for column, numbers in static_numerical.items():
                numbers.append(float(self._numbers[column][start]))
            for column, kinds in static_categorical.items():
                kinds.append(self._levels[column][start])
        return Covariates(dynamic_numerical=dynamic_numerical, dynamic_categorical=dynamic_categorical,
                          static_numerical={k: np.array(v) for k, v in static_numerical.items()},
                          static_categorical=static_categorical)


def effects_frame(ids: Sequence[str], forecast: CovariateForecast) -> pd.DataFrame:
    """One row per series and effect that applies to it (``unique_id``, ``covariate``, ``coefficient``)."""
    coefficients = forecast.coefficients
    series, effect = np.nonzero(np.isfinite(coefficients))
    return pd.DataFrame({ID: np.asarray(ids, dtype=object)[series],
                         "covariate": np.asarray(forecast.effect_names, dtype=object)[effect],
                         "coefficient": coefficients[series, effect].astype(np.float64)})
