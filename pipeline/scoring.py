"""Rolling-origin backtests: TimesFM against naive and seasonal-naive forecasts, scored per series.

Metrics follow ``utilsforecast.losses`` per (series, window) and are averaged over a series' windows:
MAE, RMSE, sMAPE (``|y - ŷ| / (|y| + |ŷ|)``, 0 where both are 0), MASE (MAE over the mean absolute
seasonal difference of the window's training part), scaled CRPS (``2 * mean quantile loss * n / Σ|y|``)
and the coverage of the q10-q90 interval. Missing actuals are left out of every metric.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from forecast_model import ForecastResult
from forecast_model.preprocess import fill_missing
from pipeline.contracts import ID, SeriesStatus, Y
from pipeline.frequency import season_length as frequency_season

__all__ = ["COVARIATE_MODEL", "METRICS", "QUANTILES", "BacktestSpec", "Window", "baseline_forecasts", "cut_windows",
           "make_windows", "overall_metrics", "score_windows", "share_beating", "summarize"]

METRICS = ("mae", "rmse", "smape", "mase", "scaled_crps", "coverage_80")
QUANTILES = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
Array = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Window:
    """One cut of one series: history up to the cutoff, and the next ``h`` actual values."""

    unique_id: str
    window: int
    train: Array
    actual: Array
    season_length: int


def make_windows(values: Array, series_id: str, h: int, n_windows: int, step: int,
                 season_length: int) -> list[Window] | None:
    """``n_windows`` cutoffs ``step`` apart, the last one ``h`` before the end; ``None`` if too short."""
    first_cut = len(values) - h - step * (n_windows - 1)
    if first_cut < season_length + 2 or np.count_nonzero(~np.isnan(values[:first_cut])) < season_length + 2:
        return None
    cuts = [first_cut + step * w for w in range(n_windows)]
    return [Window(series_id, w, values[:cut], values[cut:cut + h], season_length) for w, cut in enumerate(cuts)]


class BacktestSpec(BaseModel):
    """How the rolling-origin backtest cuts each series."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    h: int = Field(gt=0)
    n_windows: int = Field(gt=0)
    step: int = Field(gt=0)
    season_length: int | None = Field(None, gt=0)


def cut_windows(frame: pd.DataFrame, status: pd.DataFrame, spec: BacktestSpec) -> tuple[list[Window], pd.DataFrame]:
    """Cuts every accepted series of the regular ``frame``; those too short become rejected with
    ``too_short_for_backtest`` in the returned copy of ``status``."""
    values = {key: group.to_numpy(dtype=np.float64) for key, group in frame.groupby(ID, sort=False)[Y]}
    status = status.copy()
    windows: list[Window] = []
    for row in status[status["status"] == SeriesStatus.OK.value].itertuples():
        period = spec.season_length or frequency_season(row.freq)
        cut = make_windows(values[row.unique_id], row.unique_id, spec.h, spec.n_windows, spec.step, period)
        if cut is None:
            status.loc[status[ID] == row.unique_id, ["status", "reason"]] = [SeriesStatus.REJECTED.value,
                                                                             "too_short_for_backtest"]
        else:
            windows.extend(cut)
    return windows, status


def baseline_forecasts(train: Array, h: int, season_length: int) -> tuple[Array, Array]:
    """Naive (last value) and seasonal-naive (last season repeated) forecasts from gap-filled history."""
    filled = fill_missing(train.astype(np.float64))
    naive = np.full(h, filled[-1])
    season = filled[-season_length:]
    seasonal = season[np.arange(h) % season_length]
    return naive, seasonal


def _point_metrics(actual: Array, predicted: Array, scale: float) -> dict[str, float]:
    error = actual - predicted
    denominator = np.abs(actual) + np.abs(predicted)
    smape = np.divide(np.abs(error), denominator, out=np.zeros_like(error), where=denominator != 0)
    mae = float(np.mean(np.abs(error)))
    return {"mae": mae, "rmse": float(np.sqrt(np.mean(error ** 2))), "smape": float(np.mean(smape)),
            "mase": mae / scale if scale > 0 else np.nan}


def _quantile_metrics(actual: Array, quantiles: Array) -> dict[str, float]:
    delta = actual[:, None] - quantiles
    pinball = np.maximum(QUANTILES * delta, (QUANTILES - 1) * delta)
    norm = np.sum(np.abs(actual))
    crps = 2 * float(np.mean(pinball)) * len(actual) / (norm + np.finfo(np.float64).eps)
    coverage = float(np.mean((quantiles[:, 0] <= actual) & (actual <= quantiles[:, -1])))
    return {"scaled_crps": crps, "coverage_80": coverage}


def seasonal_scale(train: Array, season_length: int) -> float:
    """Mean absolute seasonal difference of the training part (the MASE denominator), ignoring gaps."""
    differences = np.abs(train[season_length:] - train[:-season_length])
    return float(np.nanmean(differences)) if np.isfinite(differences).any() else np.nan


COVARIATE_MODEL = "TimesFMCovariates"  # the backtest's model name for forecasts with covariates


def score_windows(windows: Sequence[Window], timesfm: ForecastResult,
                  with_covariates: ForecastResult | None = None) -> pd.DataFrame:
    """One row per window and model with every metric; ``timesfm`` holds one forecast per window, as does
    ``with_covariates`` (scored as model ``TimesFMCovariates``) when given."""
    forecasts = {"TimesFM": timesfm, **({COVARIATE_MODEL: with_covariates} if with_covariates is not None else {})}
    rows = []
    for index, window in enumerate(windows):
        observed = ~np.isnan(window.actual)
        if not observed.any():
            continue
        actual = window.actual[observed]
        naive, seasonal = baseline_forecasts(window.train, len(window.actual), window.season_length)
        scale = seasonal_scale(window.train, window.season_length)
        predictions = {**{model: result.point[index].astype(np.float64) for model, result in forecasts.items()},
                       "SeasonalNaive": seasonal, "Naive": naive}
        for model, predicted in predictions.items():
            row = {"unique_id": window.unique_id, "window": window.window, "model": model,
                   "n_points": int(observed.sum()), **_point_metrics(actual, predicted[observed], scale),
                   "scaled_crps": np.nan, "coverage_80": np.nan}
            if model in forecasts:
                sorted_quantiles = np.sort(forecasts[model].quantiles[index], axis=-1).astype(np.float64)
                row.update(_quantile_metrics(actual, sorted_quantiles[observed]))
            rows.append(row)
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame, season_lengths: dict[str, int]) -> pd.DataFrame:
    """Per series and model: metrics averaged over windows, and whether TimesFM beats seasonal naive on MASE.

    Rows with ``unique_id == "__all__"`` average the per-series metrics of each model over all series.
    """
    metrics = list(METRICS)
    per_series = scores.groupby(["unique_id", "model"], sort=True).agg(
        n_windows=("window", "nunique"), n_points=("n_points", "sum"), **{m: (m, "mean") for m in metrics},
    ).reset_index()
    mase = per_series.pivot(index="unique_id", columns="model", values="mase")
    beats = (mase["TimesFM"] < mase["SeasonalNaive"]).where(mase[["TimesFM", "SeasonalNaive"]].notna().all(axis=1))
    per_series["beats_seasonal_naive"] = [beats.get(s) if m == "TimesFM" else None
                                          for s, m in zip(per_series["unique_id"], per_series["model"], strict=True)]
    per_series["season_length"] = per_series["unique_id"].map(season_lengths)
    overall = per_series.groupby("model", sort=True).agg(
        n_windows=("n_windows", "sum"), n_points=("n_points", "sum"), **{m: (m, "mean") for m in metrics},
    ).reset_index()
    overall["unique_id"], overall["beats_seasonal_naive"], overall["season_length"] = "__all__", None, None
    return pd.concat([per_series, overall[per_series.columns]], ignore_index=True)



def share_beating(table: pd.DataFrame, model: str, other: str) -> float | None:
    """The share of series (of those both models scored) on which ``model``'s MASE is below ``other``'s."""
    per_series = table[table["unique_id"] != "__all__"].pivot(index="unique_id", columns="model", values="mase")
    if model not in per_series or other not in per_series:
        return None
    both = per_series[[model, other]].dropna()
    return round(float((both[model] < both[other]).mean()), 4) if len(both) else None


def overall_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Model -> metric -> value, from the ``__all__`` rows of a summary (missing metrics left out)."""
    overall = table[table["unique_id"] == "__all__"].set_index("model")
    return {str(model): {m: round(float(row[m]), 6) for m in METRICS if pd.notna(row[m])}
            for model, row in overall.iterrows()}
