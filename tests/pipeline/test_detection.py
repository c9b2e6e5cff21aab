"""Anomaly detection's pure steps: which points each series scores, from which history, and their scores."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from forecast_model import ForecastResult
from pipeline.anomaly import LEVELS
from pipeline.contracts import ANOMALY_SCHEMA
from pipeline.detection import MIN_CONTEXT, Cut, DetectionSpec, anomaly_table, cut_for_detection, cut_series
from pipeline.series_checks import REASONS

STAMPS = pd.date_range("2026-01-01", periods=12, freq="D").to_numpy().astype("datetime64[us]")
VALUES = np.arange(12, dtype=np.float64)


def spans(cuts: list[Cut] | str) -> list[tuple[int, int]]:
    assert not isinstance(cuts, str), cuts
    return [(len(c.context), len(c.context) + len(c.actual)) for c in cuts]


def test_the_default_window_is_one_season() -> None:
    assert spans(cut_series("s", VALUES, STAMPS, "D", DetectionSpec())) == [(5, 12)], "a week of days"
    monthly = cut_series("s", np.arange(30.0), pd.date_range("2024-01-01", periods=30, freq="MS").to_numpy(),
                         "MS", DetectionSpec())
    assert spans(monthly) == [(18, 30)], "a year of months"
    yearly = cut_series("s", np.arange(20.0), pd.date_range("2000-01-01", periods=20, freq="YS").to_numpy(),
                        "YS", DetectionSpec())
    assert spans(yearly) == [(13, 20)], "no season: 7 points"


def test_window_since_and_rolling() -> None:
    assert spans(cut_series("s", VALUES, STAMPS, "D", DetectionSpec(window=4))) == [(8, 12)]
    assert spans(cut_series("s", VALUES, STAMPS, "D", DetectionSpec(since=date(2026, 1, 10)))) == [(9, 12)]
    rolling = cut_series("s", VALUES, STAMPS, "D", DetectionSpec(window=5, scoring="rolling", stride=2))
    assert spans(rolling) == [(7, 9), (9, 11), (11, 12)], "each from everything before it"
    assert not isinstance(rolling, str) and rolling[1].cutoff == STAMPS[8] and list(rolling[1].actual) == [9.0, 10.0]


def test_series_that_cannot_be_scored_say_why() -> None:
    assert cut_series("s", VALUES, STAMPS, "D", DetectionSpec(since=date(2026, 2, 1))) == "nothing_to_score"
    assert cut_series("s", VALUES, STAMPS, "D", DetectionSpec(window=12)) == "context_too_short"
    gappy = VALUES.copy()
    gappy[:7] = np.nan  # 8 points of history, only 1 observed
    assert cut_series("s", gappy, STAMPS, "D", DetectionSpec(window=4)) == "context_too_short"
    assert f"fewer than {MIN_CONTEXT} observed points" in REASONS["context_too_short"]
    assert "nothing_to_score" in REASONS


def test_window_and_since_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="give window or since, not both"):
        DetectionSpec(window=3, since=date(2026, 1, 1))


def test_cutting_a_panel_marks_the_series_it_cannot_score() -> None:
    frame = pd.DataFrame({"unique_id": ["a"] * 12 + ["b"] * 4 + ["c"] * 12,
                          "ds": np.concatenate([STAMPS, STAMPS[:4], STAMPS]), "y": np.arange(28.0)})
    status = pd.DataFrame({"unique_id": ["a", "b", "c"], "status": ["ok", "ok", "rejected"],
                           "reason": [None, None, "constant"], "freq": ["D", "D", "D"]})
    cuts, marked = cut_for_detection(frame, status, DetectionSpec(window=3))
    assert [c.unique_id for c in cuts] == ["a"], "c was rejected by validation, b has 1 point of history"
    assert marked.set_index("unique_id").loc["b", ["status", "reason"]].tolist() == ["rejected", "context_too_short"]
    assert status.loc[1, "status"] == "ok", "the caller's table is not changed"


def laplace_result(centres: list[float], horizon: int) -> ForecastResult:
    """Quantiles of Laplace(centre, 1) at every step: beyond q10/q90 the tail model is that Laplace exactly."""
    offsets = np.array([math.log(2 * p) if p < 0.5 else -math.log(2 - 2 * p) for p in LEVELS])
    quantiles = (np.array(centres)[:, None, None] + offsets[None, None, :]).repeat(horizon, axis=1)
    point = quantiles[:, :, 4]
    return ForecastResult(point=point.astype(np.float32), mean=point.astype(np.float32),
                          quantiles=quantiles.astype(np.float32))


def test_scores_are_exact_for_known_quantiles() -> None:
    cuts = [Cut("a", np.zeros(5), np.array([10.0, 13.0, np.nan]), STAMPS[5:8], STAMPS[4]),
            Cut("b", np.zeros(5), np.array([-5.0]), STAMPS[5:6], STAMPS[4])]
    table, failed, missing = anomaly_table(cuts, laplace_result([10.0, 0.0], 3), threshold=0.95, model="m",
                                           run_id="r")
    assert table.schema == ANOMALY_SCHEMA and failed == set() and missing == 1
    rows = table.to_pandas()
    assert rows["unique_id"].tolist() == ["a", "a", "b"] and rows["ds"].tolist() == list(pd.to_datetime(
        [STAMPS[5], STAMPS[6], STAMPS[5]]))
    assert rows["anomaly_probability"].tolist() == pytest.approx([0.0, 1 - math.exp(-3), 1 - math.exp(-5)], rel=1e-6)
    assert rows["is_anomaly"].tolist() == [False, True, True], "1 - e^-3 = 0.950 reaches 0.95"
    assert rows["expected"].tolist() == pytest.approx([10.0, 10.0, 0.0])
    assert rows["lower"].tolist() == pytest.approx([10 + math.log(0.05), 10 + math.log(0.05), math.log(0.05)],
                                                   rel=1e-6)
    assert (rows["cutoff"] == pd.Timestamp(STAMPS[4])).all() and set(rows["model"]) == {"m"}


def test_a_series_with_a_non_finite_forecast_fails_and_scores_nothing() -> None:
    result = laplace_result([0.0, 0.0], 2)
    result.quantiles[1, 1, 3] = np.nan
    cuts = [Cut("a", np.zeros(5), np.array([1.0, 2.0]), STAMPS[5:7], STAMPS[4]),
            Cut("b", np.zeros(5), np.array([1.0, 2.0]), STAMPS[5:7], STAMPS[4])]
    table, failed, _ = anomaly_table(cuts, result, threshold=0.9, model="m", run_id="r")
    assert failed == {"b"} and set(table.column("unique_id").to_pylist()) == {"a"}
