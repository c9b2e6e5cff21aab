"""PNGs of a few series: recent history with the forecast and its q10-q90 band, or with the scored
observations of an anomaly run, their expected band and the anomalies flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless workers: never look for a display

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from pipeline.contracts import DS, ID, Y

__all__ = ["SAMPLE_SERIES", "WORST_SERIES", "plot_anomalies", "plot_sample"]

SAMPLE_SERIES = 6  # series a sample plot shows
WORST_SERIES = 4  # series an anomaly plot shows: those with the most surprising observations


def plot_sample(history: pd.DataFrame, forecasts: pd.DataFrame, path: Path, n_series: int = SAMPLE_SERIES,
                history_factor: int = 3, title: str | None = None) -> Path:
    """Plots the first ``n_series`` forecast series; history shown for ``history_factor`` horizons."""
    ids = list(pd.unique(forecasts[ID]))[:n_series]
    horizon = int(forecasts["step"].max()) if len(forecasts) else 1
    figure, axes = _panels(len(ids))
    for axis, series_id in zip(axes[:, 0], ids, strict=False):
        past = history[history[ID] == series_id].tail(history_factor * horizon)
        future = forecasts[forecasts[ID] == series_id]
        axis.plot(past[DS], past[Y], color="black", linewidth=1, label="history")
        axis.fill_between(future[DS], future["q10"], future["q90"], alpha=0.3, label="q10-q90")
        axis.plot(future[DS], future["forecast"], linewidth=1.5, label="forecast")
        axis.set_title(str(series_id), fontsize=9, loc="left")
    return _save(figure, axes, path, title)


def plot_anomalies(history: pd.DataFrame, anomalies: pd.DataFrame, path: Path, n_series: int = WORST_SERIES,
                   title: str | None = None) -> Path:
    """Plots the ``n_series`` series with the highest anomaly probability: their history before the scored
    points (three times as many), the band between ``lower`` and ``upper``, the expected values, and the
    anomalies in red."""
    worst = anomalies.groupby(ID)["anomaly_probability"].max().sort_values(ascending=False, kind="stable")
    ids = list(worst.index[:n_series])
    figure, axes = _panels(len(ids))
    for axis, series_id in zip(axes[:, 0], ids, strict=False):
        scored = anomalies[anomalies[ID] == series_id].sort_values(DS)
        past = history[(history[ID] == series_id) & (history[DS] < scored[DS].min())].tail(3 * len(scored))
        flagged = scored[scored["is_anomaly"]]
        axis.plot(past[DS], past[Y], color="black", linewidth=1, label="history")
        axis.fill_between(scored[DS], scored["lower"], scored["upper"], alpha=0.3, label="expected band")
        axis.plot(scored[DS], scored["expected"], linewidth=1.2, label="expected")
        axis.plot(scored[DS], scored[Y], "o", color="black", markersize=3, label="observed")
        axis.plot(flagged[DS], flagged[Y], "o", color="red", markersize=6, label="anomaly")
        axis.set_title(f"{series_id} (max anomaly probability {worst[series_id]:.3f})", fontsize=9, loc="left")
    return _save(figure, axes, path, title)


def _panels(n: int) -> tuple[Figure, Any]:
    """One panel per series (at least one), 9 in wide and 2.2 in each."""
    return plt.subplots(n or 1, 1, figsize=(9, 2.2 * max(n, 1)), squeeze=False)


def _save(figure: Figure, axes: Any, path: Path, title: str | None) -> Path:
    axes[0, 0].legend(loc="upper left", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
