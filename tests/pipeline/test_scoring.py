"""Backtest windows, baselines and metrics, checked by hand and against utilsforecast.losses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from utilsforecast import losses

from forecast_model import ForecastResult
from pipeline.frequency import season_length
from pipeline.scoring import QUANTILES, baseline_forecasts, make_windows, score_windows, summarize


def test_windows_end_h_before_the_end_and_step_apart() -> None:
    values = np.arange(30, dtype=float)
    windows = make_windows(values, "a", h=4, n_windows=3, step=2, season_length=4)
    assert windows is not None
    assert [len(w.train) for w in windows] == [22, 24, 26]
    assert windows[-1].actual.tolist() == [26, 27, 28, 29]
    assert make_windows(values[:10], "a", h=4, n_windows=3, step=2, season_length=4) is None


def test_baselines() -> None:
    naive, seasonal = baseline_forecasts(np.array([1.0, 2, 3, 4, 5, np.nan]), h=5, season_length=3)
    assert naive.tolist() == [5.0] * 5, "naive repeats the last (gap-filled) value"
    assert seasonal.tolist() == [4.0, 5.0, 5.0, 4.0, 5.0]


def test_seasonal_naive_mase_by_hand() -> None:
    # Season 4. History 1 2 3 4 | 3 4 5 6: mean |y_t - y_{t-4}| = 2. Actuals 4 5 6 7, seasonal naive
    # repeats 3 4 5 6, so MAE = 1 and MASE = 1 / 2.
    values = np.array([1, 2, 3, 4, 3, 4, 5, 6, 4, 5, 6, 7], dtype=float)
    windows = make_windows(values, "s", h=4, n_windows=1, step=4, season_length=4)
    assert windows is not None
    dummy = ForecastResult(point=np.zeros((1, 4), np.float32), mean=np.zeros((1, 4), np.float32),
                           quantiles=np.zeros((1, 4, 9), np.float32))
    scores = score_windows(windows, dummy).set_index("model")
    assert scores.loc["SeasonalNaive", "mae"] == pytest.approx(1.0)
    assert scores.loc["SeasonalNaive", "mase"] == pytest.approx(0.5)
    assert scores.loc["Naive", "mase"] == pytest.approx(np.mean([2, 1, 0, 1]) / 2)


def random_case(seed: int = 0) -> tuple[list, ForecastResult, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    series = {f"s{i}": rng.normal(10, 3, size=40) + np.sin(np.arange(40)) * 4 for i in range(3)}
    windows = [w for key, values in series.items()
               for w in make_windows(values, key, h=5, n_windows=2, step=3, season_length=6) or []]
    quantiles = np.sort(rng.normal(10, 3, size=(len(windows), 5, 9)), axis=-1).astype(np.float32)
    result = ForecastResult(point=quantiles[:, :, 4], mean=quantiles[:, :, 4], quantiles=quantiles)
    rows, train = [], []
    for index, w in enumerate(windows):
        cutoff = len(w.train) - 1
        rows.append(pd.DataFrame({
            "unique_id": w.unique_id, "cutoff": cutoff, "ds": np.arange(cutoff + 1, cutoff + 6), "y": w.actual,
            "TimesFM": quantiles[index, :, 4].astype(float),
            **{f"TimesFM-q-{int(q * 100)}": quantiles[index, :, j].astype(float) for j, q in enumerate(QUANTILES)},
        }))
    for key, values in series.items():
        train.append(pd.DataFrame({"unique_id": key, "ds": np.arange(40), "y": values}))
    return windows, result, pd.concat(rows, ignore_index=True), pd.concat(train, ignore_index=True)


def test_metrics_match_utilsforecast() -> None:
    windows, result, frame, train = random_case()
    ours = score_windows(windows, result).query("model == 'TimesFM'")
    ours = ours.assign(cutoff=[len(w.train) - 1 for w in windows]).set_index(["unique_id", "cutoff"])
    reference = {
        "mae": losses.mae(frame, ["TimesFM"], cutoff_col="cutoff"),
        "rmse": losses.rmse(frame, ["TimesFM"], cutoff_col="cutoff"),
        "smape": losses.smape(frame, ["TimesFM"], cutoff_col="cutoff"),
        "mase": losses.mase(frame, ["TimesFM"], seasonality=6, train_df=train, cutoff_col="cutoff"),
        "scaled_crps": losses.scaled_crps(frame, {"TimesFM": [f"TimesFM-q-{int(q * 100)}" for q in QUANTILES]},
                                          QUANTILES, cutoff_col="cutoff"),
        "coverage_80": losses.coverage(frame.assign(**{"TimesFM-lo-80": frame["TimesFM-q-10"],
                                                      "TimesFM-hi-80": frame["TimesFM-q-90"]}),
                                       ["TimesFM"], level=80, cutoff_col="cutoff"),
    }
    for metric, table in reference.items():
        expected = table.set_index(["unique_id", "cutoff"])["TimesFM"]
        np.testing.assert_allclose(ours.loc[expected.index, metric], expected, rtol=1e-9,
                                   err_msg=f"{metric} differs from utilsforecast.losses")


def test_summary_flags_and_overall_rows() -> None:
    windows, result, _, _ = random_case(1)
    table = summarize(score_windows(windows, result), {"s0": 6, "s1": 6, "s2": 6})
    series_rows = table[(table["unique_id"] != "__all__") & (table["model"] == "TimesFM")].set_index("unique_id")
    per_model = table[table["unique_id"] != "__all__"].pivot(index="unique_id", columns="model", values="mase")
    assert (series_rows["beats_seasonal_naive"] == (per_model["TimesFM"] < per_model["SeasonalNaive"])).all()
    assert table.loc[table["model"] != "TimesFM", "beats_seasonal_naive"].isna().all()
    overall = table[table["unique_id"] == "__all__"].set_index("model")
    assert overall.loc["TimesFM", "mae"] == pytest.approx(series_rows["mae"].mean())
    assert set(overall.index) == {"TimesFM", "SeasonalNaive", "Naive"} and overall["n_windows"].eq(6).all()


@pytest.mark.parametrize(("freq", "expected"), [("h", 24), ("30min", 48), ("D", 7), ("B", 5), ("W", 52), ("MS", 12),
                                                ("QS", 4), ("YS", 1)])
def test_season_length_from_frequency(freq: str, expected: int) -> None:
    assert season_length(freq) == expected


def test_share_beating_counts_the_series_both_models_scored() -> None:
    from pipeline.scoring import share_beating

    table = pd.DataFrame({"unique_id": ["a", "a", "b", "b", "c", "__all__"],
                          "model": ["TimesFM", "TimesFMCovariates"] * 2 + ["TimesFM", "TimesFM"],
                          "mase": [1.0, 0.5, 1.0, 2.0, 1.0, 1.0]})
    assert share_beating(table, "TimesFMCovariates", "TimesFM") == 0.5
    assert share_beating(table, "Naive", "TimesFM") is None
