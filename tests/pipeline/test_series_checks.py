"""Per-series checks (one reason code per rejected series) and regularisation to the frequency grid."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipeline.canonical import to_canonical
from pipeline.frequency import infer_frequency
from pipeline.series_checks import (
    MAX_ABS_VALUE,
    REASONS,
    SeriesChecks,
    check_series,
    regularize,
)


def panel() -> pd.DataFrame:
    """One series per outcome, daily unless said otherwise."""
    days = pd.date_range("2024-01-01", periods=30, freq="D")
    rng = np.random.default_rng(0)
    series = {
        "good": (days, rng.normal(size=30)),
        "gappy_ok": (days.delete([3, 4, 10]), rng.normal(size=27)),
        "all_missing": (days, np.full(30, np.nan)),
        "short": (days[:2], [1.0, 2.0]),
        "irregular": (pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-11", "2024-01-12"]),
                      rng.normal(size=5)),
        "gappy": (days[[0, 1, 2, 20, 29]], rng.normal(size=5)),
        "constant": (days, np.full(30, 4.0)),
        "stale": (days[:10], rng.normal(size=10)),
        "flagged": (days, rng.normal(size=30)),
    }
    rows = [pd.DataFrame({"unique_id": k, "ds": d, "y": v}) for k, (d, v) in series.items()]
    return to_canonical(pd.concat(rows).astype({"ds": str}))


def test_each_series_gets_its_reason() -> None:
    checks = SeriesChecks(max_staleness=5)
    status = check_series(panel(), {"flagged": "duplicate_timestamp"}, checks, None, date(2024, 2, 3))
    reasons = dict(zip(status["unique_id"], status["reason"], strict=True))
    assert reasons == {"good": None, "gappy_ok": None, "all_missing": "all_missing",
                       "short": "too_few_observations", "irregular": "irregular_timestamps", "gappy": "too_many_gaps",
                       "constant": "constant", "stale": "stale", "flagged": "duplicate_timestamp"}
    assert set(reasons.values()) - {None} <= set(REASONS), "every reason code must be documented in REASONS"
    ok = status.set_index("unique_id").loc["gappy_ok"]
    assert ok["status"] == "ok" and ok["freq"] == "D" and ok["missing_fraction"] == pytest.approx(3 / 30)


def test_defaults_keep_old_series() -> None:
    status = check_series(panel(), {}, SeriesChecks(), None, date(2030, 1, 1))
    assert status.set_index("unique_id").loc["stale", "status"] == "ok", "staleness is off by default"


def test_declared_frequency_must_fit_the_timestamps() -> None:
    status = check_series(panel(), {}, SeriesChecks(), "W", date(2024, 2, 3)).set_index("unique_id")
    assert status.loc["good", "reason"] == "irregular_timestamps"
    status = check_series(panel(), {}, SeriesChecks(), "D", date(2024, 2, 3)).set_index("unique_id")
    assert status.loc["good", "status"] == "ok"
    # On the daily grid, but 7 of its 12 days are missing.
    assert status.loc["irregular", "reason"] == "too_many_gaps"


def test_regularize_fills_gaps_with_missing_values() -> None:
    frame = panel()
    status = check_series(frame, {}, SeriesChecks(), None, date(2024, 2, 3))
    regular = regularize(frame, status)
    gappy = regular[regular["unique_id"] == "gappy_ok"]
    assert len(gappy) == 30 and gappy["y"].isna().sum() == 3
    assert set(regular["unique_id"]) == set(status.loc[status["status"] == "ok", "unique_id"])


def test_frequencies_inferred_once_per_calendar_match_per_series_inference() -> None:
    calendars = {
        "daily": pd.date_range("2024-01-01", periods=40, freq="D"),
        "daily_late": pd.date_range("2024-01-05", periods=40, freq="D"),
        "monthly": pd.date_range("2020-01-01", periods=30, freq="MS"),
        "weekly_wed": pd.date_range("2024-01-03", periods=30, freq="W-WED"),
        "hourly_gaps": pd.date_range("2024-01-01", periods=60, freq="h").delete([5, 6, 30]),
        "quarter_end": pd.date_range("2015-03-31", periods=20, freq="QE"),
    }
    rows = []
    for k in range(60):  # many series share each calendar, as in a retail panel
        name = list(calendars)[k % len(calendars)]
        stamps = calendars[name]
        rows.append(pd.DataFrame({"unique_id": f"{name}-{k:02d}", "ds": stamps,
                                  "y": np.random.default_rng(k).normal(size=len(stamps))}))
    frame = to_canonical(pd.concat(rows).astype({"ds": str}))
    status = check_series(frame, {}, SeriesChecks(), None, date(2026, 1, 1)).set_index("unique_id")
    for series_id, group in frame.groupby("unique_id"):
        assert status.loc[series_id, "freq"] == infer_frequency(group["ds"]), series_id
    assert (status["status"] == "ok").all()
    regular = regularize(frame, status.reset_index())
    assert regular.groupby("unique_id").size().loc["hourly_gaps-04"] == 60, "gaps are filled"
    assert regular[["unique_id", "ds"]].equals(regular[["unique_id", "ds"]].sort_values(["unique_id", "ds"]))


@pytest.mark.parametrize(("peak", "reason"), [(1e16, None), (-1e16, None), (1.0000001e16, "out_of_range"),
                                              (-3e16, "out_of_range"), (1e300, "out_of_range")])
def test_values_past_what_float32_can_normalise_are_out_of_range(peak: float, reason: str | None) -> None:
    days = pd.date_range("2024-01-01", periods=12, freq="D").astype(str)
    values = np.linspace(1.0, 2.0, 12)
    values[5] = peak
    frame = to_canonical(pd.DataFrame({"unique_id": "s", "ds": days, "y": values}))
    status = check_series(frame, {}, SeriesChecks(), None, date(2024, 1, 12))
    assert status["reason"].tolist() == [reason]
    assert MAX_ABS_VALUE == 1e16 and "out_of_range" in REASONS
