"""Anomaly detection: which of a series' latest observations its forecast did not expect.

Each accepted series is split into a scoring window (its last ``window`` points, or those on or after
``since``) and the history before it. ``block`` scoring forecasts the whole window from the history before
its start; ``rolling`` forecasts ``stride`` points at a time, each from everything before them. Every
scored observation gets the forecast's median, the bounds of its central ``threshold`` interval and an
anomaly probability (``pipeline.anomaly``: the tail model). A missing observation is not scored.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from forecast_model import ForecastResult
from pipeline.anomaly import DEFAULT_THRESHOLD, anomaly_probability, bounds
from pipeline.contracts import ANOMALY_SCHEMA, DS, ID, MAX_HORIZON, QUANTILE_COLUMNS, SeriesStatus, Y
from pipeline.frequency import season_length

__all__ = ["MIN_CONTEXT", "Cut", "DetectionSpec", "anomaly_table", "cut_for_detection", "cut_series"]

MIN_CONTEXT = 3  # observed points before the window: fewer cannot support a forecast distribution
_DEFAULT_WINDOW = 7  # when the frequency has no season (yearly, irregular multiples)
Array = NDArray[np.float64]


class DetectionSpec(BaseModel):
    """Which points each series scores, how, and what counts as an anomaly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: Annotated[int, Field(gt=0, le=MAX_HORIZON)] | None = Field(
        None, description="Score each series' last `window` points (default: one season of its frequency, "
                          "e.g. 7 days or 12 months; 7 when it has none).")
    since: date | None = Field(None, description="Score the points on or after this date instead of a window.")
    scoring: Literal["block", "rolling"] = Field(
        "block", description="block: forecast the whole window from the history before it (one forecast per "
                             "series); rolling: `stride` points at a time, each from everything before them.")
    stride: Annotated[int, Field(gt=0, le=MAX_HORIZON)] = Field(1, description="Points per forecast (rolling).")
    threshold: Annotated[float, Field(gt=0, lt=1)] = Field(
        DEFAULT_THRESHOLD, description="Anomaly probability at which a point is an anomaly (0.95: outside the "
                                       "central 95% of its forecast).")

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> DetectionSpec:
        if self.window is not None and self.since is not None:
            raise ValueError("give window or since, not both: window scores each series' last points, since "
                             "those on or after a date")
        return self


@dataclasses.dataclass(frozen=True)
class Cut:
    """One forecast of a series: the history before ``actual`` and the observations it is scored against."""

    unique_id: str
    context: Array
    actual: Array
    stamps: NDArray[np.datetime64]
    cutoff: np.datetime64


def cut_series(series_id: str, values: Array, stamps: NDArray[np.datetime64], freq: str,
               spec: DetectionSpec) -> list[Cut] | str:
    """The cuts of one regular series (its ``values`` at ``stamps``), or the reason it cannot be scored."""
    if spec.since is not None:
        start = int(np.searchsorted(stamps, np.datetime64(spec.since, "us"), side="left"))
    else:
        period = season_length(freq)
        start = len(values) - (spec.window or (period if period > 1 else _DEFAULT_WINDOW))
    start = max(start, 0)
    if start >= len(values):
        return "nothing_to_score"
    if np.count_nonzero(~np.isnan(values[:start])) < MIN_CONTEXT:
        return "context_too_short"
    step = spec.stride if spec.scoring == "rolling" else len(values) - start
    return [Cut(series_id, values[:s], values[s:s + step], stamps[s:s + step], stamps[s - 1])
            for s in range(start, len(values), step)]


def cut_for_detection(frame: pd.DataFrame, status: pd.DataFrame,
                      spec: DetectionSpec) -> tuple[list[Cut], pd.DataFrame]:
    """Cuts every accepted series of the regular ``frame``; a series that cannot be scored becomes rejected,
    with its reason, in the returned copy of ``status``."""
    status = status.copy()
    freqs = dict(zip(status[ID], status["freq"], strict=True))
    accepted = set(status.loc[status["status"] == SeriesStatus.OK.value, ID])
    cuts: list[Cut] = []
    unscored: dict[str, str] = {}
    for series_id, group in frame[frame[ID].isin(accepted)].groupby(ID, sort=False):
        cut = cut_series(str(series_id), group[Y].to_numpy(np.float64),
                         group[DS].to_numpy().astype("datetime64[us]"), freqs[series_id], spec)
        if isinstance(cut, str):
            unscored[str(series_id)] = cut
        else:
            cuts.extend(cut)
    left_out = status[ID].isin(unscored.keys())  # one assignment, not one scan of the table per series
    status.loc[left_out, "status"] = SeriesStatus.REJECTED.value
    status.loc[left_out, "reason"] = status.loc[left_out, ID].map(unscored)
    return cuts, status


def anomaly_table(cuts: list[Cut], result: ForecastResult, *, threshold: float, model: str,
                  run_id: str) -> tuple[pa.Table, set[str], int]:
    """The scored observations (``ANOMALY_SCHEMA``, sorted by series and time), the series whose forecast
    was not finite (failed: none of their points is scored), and the number of missing observations left
    unscored."""
    horizon = result.quantiles.shape[1]
    lengths = np.array([len(c.actual) for c in cuts])
    used = np.arange(horizon)[None, :] < lengths[:, None]  # (cuts, horizon): the steps each cut scores
    quantiles = result.quantiles.astype(np.float64)
    broken = ~np.isfinite(quantiles).all(axis=2) & used
    failed = {cuts[i].unique_id for i in np.flatnonzero(broken.any(axis=1))}
    y = np.full((len(cuts), horizon), np.nan)
    stamps = np.full((len(cuts), horizon), np.datetime64("NaT"), dtype="datetime64[us]")
    for i, cut in enumerate(cuts):
        y[i, :len(cut.actual)] = cut.actual
        stamps[i, :len(cut.actual)] = cut.stamps
    in_failed = np.array([c.unique_id in failed for c in cuts])[:, None]
    keep = used & ~in_failed & ~np.isnan(y)
    missing = int((used & ~in_failed & np.isnan(y)).sum())
    rows, steps = np.nonzero(keep)
    q = np.sort(quantiles[rows, steps], axis=1)
    observed = y[rows, steps]
    probability = anomaly_probability(q, observed)
    lower, upper = bounds(q, threshold)
    ids = np.array([c.unique_id for c in cuts], dtype=object)
    cutoffs = np.array([c.cutoff for c in cuts], dtype="datetime64[us]")
    table = pd.DataFrame({
        ID: pd.array(ids[rows], dtype="string"), DS: stamps[rows, steps],
        Y: observed, "expected": q[:, QUANTILE_COLUMNS.index("q50")], "lower": lower, "upper": upper,
        "anomaly_probability": probability, "is_anomaly": probability >= threshold,
        "cutoff": cutoffs[rows], "model": model, "run_id": run_id,
    }).sort_values([ID, DS], kind="stable", ignore_index=True)
    return pa.Table.from_pandas(table, schema=ANOMALY_SCHEMA, preserve_index=False), failed, missing

