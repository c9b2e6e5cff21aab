"""The sample plot is a real PNG, one panel per plotted series."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.canonical import to_canonical
from pipeline.contracts import QUANTILE_COLUMNS
from pipeline.plot import plot_sample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file: starts with {data[:8]!r}"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def last_value_forecasts(history: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """A forecast table as the forecast stage writes it: last value, with a +-5% band."""
    rows = []
    for series_id, group in history.groupby("unique_id", sort=True):
        last = group.iloc[-1]
        stamps = pd.date_range(last["ds"], periods=horizon + 1, freq="QS")[1:]
        rows.append(pd.DataFrame({"unique_id": series_id, "ds": stamps, "step": np.arange(1, horizon + 1),
                                  "forecast": last["y"],
                                  **{q: last["y"] * (0.95 + 0.1 * i / 8) for i, q in enumerate(QUANTILE_COLUMNS)}}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize(("n_series", "panels"), [(6, 6), (2, 2), (50, 12)])
def test_plot_sample_writes_a_png_with_one_panel_per_series(tmp_path: Path, sample_frame: pd.DataFrame,
                                                            n_series: int, panels: int) -> None:
    history = to_canonical(sample_frame)
    path = plot_sample(history, last_value_forecasts(history, 8), tmp_path / "sample.png", n_series=n_series)
    assert path == tmp_path / "sample.png"
    assert png_size(path) == (9 * 90, round(2.2 * panels * 90)), "the figure is 9 in wide, 2.2 in per panel, 90 dpi"


def test_plot_of_no_forecast_still_writes_a_png(tmp_path: Path, sample_frame: pd.DataFrame) -> None:
    history = to_canonical(sample_frame)
    empty = last_value_forecasts(history, 8).iloc[:0]
    with pytest.warns(UserWarning, match="No artists with labels"):
        path = plot_sample(history, empty, tmp_path / "empty.png")
    assert png_size(path) == (810, 198)


def test_plot_anomalies_shows_the_series_with_the_most_surprising_points(tmp_path: Path, sample_frame: pd.DataFrame,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    from pipeline.plot import plot_anomalies

    history = to_canonical(sample_frame)
    scored = history.groupby("unique_id").tail(4).assign(expected=lambda f: f["y"], lower=lambda f: f["y"] - 1,
                                                         upper=lambda f: f["y"] + 1)
    scored["anomaly_probability"] = np.linspace(0, 0.999, len(scored))
    scored["is_anomaly"] = scored["anomaly_probability"] >= 0.95
    drawn: list[str] = []
    original = plt.Axes.set_title

    def remember(self: plt.Axes, label: str, *args: object, **kwargs: object) -> object:
        drawn.append(label)
        return original(self, label, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "set_title", remember)
    path = plot_anomalies(history, scored, tmp_path / "anomalies.png", n_series=3)
    assert png_size(path) == (9 * 90, round(2.2 * 3 * 90))
    expected = list(scored.groupby("unique_id")["anomaly_probability"].max().sort_values(ascending=False).index[:3])
    assert [label.split(" ")[0] for label in drawn] == expected, "the worst series first"
    assert "(max anomaly probability 0.999)" in drawn[0]
