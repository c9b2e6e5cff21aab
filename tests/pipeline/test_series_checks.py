"""Per-series checks (one reason code per rejected series) and regularisation to the frequency grid."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

import pipeline.series_checks as series_checks
from pipeline.canonical import sorted_by_series_and_time, to_canonical
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
        "irregular": (pd.to_datetime(["2024-01-01 00:00", "2024-01-02 03:17", "2024-01-05 11:02",
                                      "2024-01-11 07:40", "2024-01-12 00:05"]), rng.normal(size=5)),
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
    assert status.loc["irregular", "reason"] == "irregular_timestamps"
    # On the daily grid, but 25 of its 30 days are missing.
    assert status.loc["gappy", "reason"] == "too_many_gaps"


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


def one_series(stamps: pd.DatetimeIndex, values: np.ndarray | None = None, series_id: str = "s") -> pd.DataFrame:
    values = np.linspace(1.0, 2.0, len(stamps)) if values is None else values
    return to_canonical(pd.DataFrame({"unique_id": series_id, "ds": stamps.astype(str), "y": values}))


def reason_of(frame: pd.DataFrame, checks: SeriesChecks, as_of: date = date(2024, 1, 31),
              freq: str | None = None) -> str | None:
    return check_series(frame, {}, checks, freq, as_of)["reason"].tolist()[0]


@pytest.mark.parametrize(("n", "reason"), [(4, "too_few_observations"), (5, None)])
def test_min_observations_is_the_fewest_allowed(n: int, reason: str | None) -> None:
    assert reason_of(one_series(pd.date_range("2024-01-01", periods=n, freq="D")),
                     SeriesChecks(min_observations=5)) == reason


@pytest.mark.parametrize(("missing", "reason"), [(5, None), (6, "too_many_gaps")])
def test_max_missing_fraction_is_the_largest_allowed(missing: int, reason: str | None) -> None:
    """20 grid days, ``missing`` of them absent: 5/20 = 0.25 is allowed at 0.25, 6/20 is not."""
    days = pd.date_range("2024-01-01", periods=20, freq="D")
    stamps = days.delete(list(range(2, 2 + missing)))
    assert reason_of(one_series(stamps), SeriesChecks(max_missing_fraction=0.25)) == reason


@pytest.mark.parametrize(("as_of", "reason"), [(date(2024, 1, 13), None), (date(2024, 1, 14), "stale")])
def test_max_staleness_counts_whole_periods_after_the_last_value(as_of: date, reason: str | None) -> None:
    """The last value is on Jan 10; on Jan 13 it is 3 daily periods old (allowed at 3), on Jan 14 four."""
    stamps = pd.date_range("2024-01-01", "2024-01-10", freq="D")
    assert reason_of(one_series(stamps), SeriesChecks(max_staleness=3), as_of) == reason


def test_a_series_ending_on_as_of_or_after_it_is_not_stale() -> None:
    stamps = pd.date_range("2024-01-01", "2024-01-10", freq="D")
    for as_of in (date(2024, 1, 10), date(2024, 1, 5)):
        assert reason_of(one_series(stamps), SeriesChecks(max_staleness=0), as_of) is None


def test_staleness_is_counted_in_the_series_own_periods() -> None:
    """Monthly values last in March; in mid-May that is 2 months old, not ~75 days."""
    stamps = pd.date_range("2023-01-01", "2024-03-01", freq="MS")
    assert reason_of(one_series(stamps), SeriesChecks(max_staleness=2), date(2024, 5, 15)) is None
    assert reason_of(one_series(stamps), SeriesChecks(max_staleness=1), date(2024, 5, 15)) == "stale"


def test_series_with_equal_count_and_ends_but_other_timestamps_get_their_own_frequency() -> None:
    """Same count, first and last timestamp; only the timestamps in between tell them apart."""
    every_other_day = pd.date_range("2024-01-01", "2024-01-21", freq="2D")  # 11 stamps
    days = pd.date_range("2024-01-01", "2024-01-21", freq="D")
    front_loaded = days[:10].append(days[-1:])  # 11 stamps, same first and last
    frame = pd.concat([one_series(every_other_day, series_id="a"), one_series(front_loaded, series_id="b")])
    status = check_series(frame, {}, SeriesChecks(), None, date(2024, 1, 21)).set_index("unique_id")
    assert status.loc["a", "freq"] == "2D" and status.loc["a", "missing_fraction"] == 0
    assert status.loc["b", "freq"] == "D" and status.loc["b", "missing_fraction"] == pytest.approx(10 / 21)


def test_constant_series_are_kept_when_asked() -> None:
    stamps = pd.date_range("2024-01-01", periods=10, freq="D")
    frame = one_series(stamps, np.full(10, 3.0))
    assert reason_of(frame, SeriesChecks()) == "constant"
    assert reason_of(frame, SeriesChecks(reject_constant=False)) is None
    assert reason_of(one_series(stamps, np.r_[np.full(9, 3.0), 3.5]), SeriesChecks()) is None


def test_regularize_keeps_complete_series_as_they_are_and_fills_the_others() -> None:
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    frame = pd.concat([one_series(days, series_id="full"), one_series(days.delete([2, 5]), series_id="gaps")])
    status = check_series(frame, {}, SeriesChecks(), None, date(2024, 1, 10))
    regular = regularize(frame, status)
    assert regular.groupby("unique_id").size().to_dict() == {"full": 10, "gaps": 10}
    gaps = regular[regular["unique_id"] == "gaps"].set_index("ds")["y"]
    assert gaps.isna().sum() == 2 and gaps.index.equals(pd.DatetimeIndex(days, name="ds"))
    full = regular[regular["unique_id"] == "full"]["y"].to_numpy()
    np.testing.assert_array_equal(full, np.linspace(1.0, 2.0, 10))
    assert regular.index.equals(pd.RangeIndex(20)) and list(regular.columns) == ["unique_id", "ds", "y"]


def test_regularize_keeps_rows_with_missing_values_once() -> None:
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    values = np.linspace(1.0, 2.0, 10)
    values[[3, 4]] = np.nan
    frame = one_series(days, values, series_id="holes")
    status = check_series(frame, {}, SeriesChecks(), None, date(2024, 1, 10))
    assert status["missing_fraction"].tolist() == [0.2]
    regular = regularize(frame, status)
    assert regular["ds"].tolist() == list(days) and np.array_equal(regular["y"].to_numpy(), values, equal_nan=True)


def test_a_single_observation_is_a_series_when_the_rules_allow_it() -> None:
    one = one_series(pd.date_range("2024-01-01", periods=1, freq="D"), np.array([5.0]))
    lenient = SeriesChecks(min_observations=1, reject_constant=False)
    status = check_series(one, {}, lenient, "D", date(2024, 1, 1)).iloc[0]
    assert (status["status"], status["freq"], status["missing_fraction"]) == ("ok", "D", 0.0)
    assert reason_of(one, SeriesChecks(min_observations=1), freq="D") == "constant", "one value never changes"


def test_rejected_series_have_no_frequency_or_gap_share() -> None:
    stamps = pd.date_range("2024-01-01", periods=2, freq="D")
    frame = pd.concat([one_series(stamps, series_id="a"), one_series(stamps, series_id="b")])
    status = check_series(frame, {"b": "duplicate_timestamp"}, SeriesChecks(), None, date(2024, 1, 2))
    assert status["reason"].tolist() == ["too_few_observations", "duplicate_timestamp"]
    assert status["freq"].tolist() == [None, None]
    assert status["missing_fraction"].dtype == np.float64 and status["missing_fraction"].isna().all()


def test_frequencies_are_inferred_once_per_distinct_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.series_checks as checks_module

    calls: list[int] = []
    real = checks_module.infer_frequency
    monkeypatch.setattr(checks_module, "infer_frequency", lambda index: calls.append(len(index)) or real(index))
    days = pd.date_range("2024-01-01", periods=20, freq="D")
    calendars = [days, days.delete([4]), days.delete([9]), pd.date_range("2024-01-01", periods=20, freq="MS")]
    frame = pd.concat([one_series(calendars[k % 4], series_id=f"s{k:02d}") for k in range(24)], ignore_index=True)
    status = check_series(frame, {}, SeriesChecks(), None, date(2026, 1, 1))
    assert sorted(calls) == [19, 19, 20, 20], "one inference per distinct set of timestamps, not per series"
    assert status["freq"].tolist() == ["D", "D", "D", "MS"] * 6


def test_frequencies_do_not_depend_on_the_row_order() -> None:
    """Validation sees the sorted canonical frame, but the checks must not rely on it: shuffled rows give the
    same status, each series' frequency from its own timestamps (many distinct calendars)."""
    starts = pd.date_range("2024-01-01", periods=40, freq="D")
    parts = [one_series(pd.date_range(start, periods=12, freq=freq), series_id=f"s{k:02d}")
             for k, (start, freq) in enumerate([(s, f) for s in starts[:10] for f in ("D", "W-MON", "MS", "h")])]
    frame = pd.concat(parts, ignore_index=True)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    expected = check_series(frame, {}, SeriesChecks(), None, date(2026, 1, 1))
    got = check_series(shuffled, {}, SeriesChecks(), None, date(2026, 1, 1))
    pd.testing.assert_frame_equal(got, expected)
    assert got["freq"].tolist() == ["D", "W-MON", "MS", "h"] * 10


@pytest.mark.parametrize("dtype", [object, "str"])
def test_regularize_gives_the_same_sorted_frame_whatever_the_row_order(dtype: object) -> None:
    """A sorted frame without gaps is taken as it is (no sort); any other order is sorted: same result."""
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    frame = pd.concat([one_series(days, series_id=name) for name in ("b", "a", "é", "a1")], ignore_index=True)
    frame["unique_id"] = frame["unique_id"].astype(dtype)
    status = check_series(frame, {}, SeriesChecks(), None, date(2024, 1, 10))
    in_order = frame.sort_values(["unique_id", "ds"], ignore_index=True)
    expected = regularize(frame, status)
    assert list(expected["unique_id"].drop_duplicates()) == ["a", "a1", "b", "é"]
    for variant in (in_order, frame.sample(frac=1.0, random_state=1), in_order.iloc[::-1]):
        pd.testing.assert_frame_equal(regularize(variant, status), expected)
    pd.testing.assert_frame_equal(regularize(in_order, status, ordered=True), expected)
    reversed_but_trusted = regularize(in_order.iloc[::-1], status, ordered=True)
    assert reversed_but_trusted["unique_id"].iloc[0] == "é", "ordered=True is the caller's word: no sort"
    with_nat = in_order.copy()
    with_nat.loc[3, "ds"] = pd.NaT  # not sortable by comparison: the sort decides
    assert not sorted_by_series_and_time(with_nat)
    assert sorted_by_series_and_time(in_order) and sorted_by_series_and_time(in_order[:1])
    assert not sorted_by_series_and_time(pd.concat([in_order[:2], in_order[:1]]))  # a repeated stamp


def test_sorted_check_compares_every_adjacent_pair() -> None:
    day = pd.Timestamp("2024-01-01")
    two = pd.DataFrame({"unique_id": ["b", "a"], "ds": [day, day]})
    assert not sorted_by_series_and_time(two), "two rows are checked too"
    repeated = pd.DataFrame({"unique_id": ["a", "a"], "ds": [day, day]})
    assert not sorted_by_series_and_time(repeated), "a repeated stamp is not strictly increasing"


def test_segments_reduce_each_series_whatever_the_row_order() -> None:
    codes = np.array([0, 2, 1, 1, 0])  # the first code is the smallest, the rest out of order
    segments = series_checks._Segments(codes, 3)
    values = segments.arranged(np.array([1.0, 5.0, 2.0, 3.0, 4.0]))
    assert segments.reduce(np.add, values).tolist() == [5.0, 5.0, 5.0]
    assert [segments.rows(g, values).tolist() for g in range(3)] == [[1.0, 4.0], [2.0, 3.0], [5.0]], "stable"
    nothing = series_checks._Segments(np.zeros(0, dtype=np.intp), 0).reduce(np.maximum, np.zeros(0))
    assert nothing.tolist() == [] and nothing.dtype == np.float64, "no series: an empty result of the right type"


@pytest.mark.parametrize("shuffled", [False, True])
def test_series_stats_equal_a_group_by_with_missing_values_and_timestamps(shuffled: bool) -> None:
    """The reduceat statistics against pandas' group-by on a panel with NaN, NaT, one-row and all-missing series."""
    rng = np.random.default_rng(7)
    parts = []
    for k in range(60):
        days = pd.date_range("2024-01-01", periods=int(rng.integers(1, 9)), freq="D")
        stamps = pd.Series(days.astype("datetime64[us]"))
        values = rng.normal(size=len(stamps)).round(1) * 10 ** float(rng.integers(0, 18))
        if k % 5 == 0:
            values[:] = 2.5
        if k % 7 == 0:
            values[rng.integers(len(values))] = np.nan
        if k % 11 == 0:
            values[:] = np.nan
        if k % 13 == 0:
            stamps.iloc[-1] = pd.NaT
        parts.append(pd.DataFrame({"unique_id": f"s{k:02d}", "ds": stamps, "y": values}))
    frame = pd.concat(parts, ignore_index=True)
    if shuffled:
        frame = frame.sample(frac=1.0, random_state=2).reset_index(drop=True)
    codes, series = series_checks.series_codes(frame["unique_id"])
    got = pd.DataFrame(series_checks._series_stats(series_checks._Segments(codes, len(series)),
                                                   frame["y"].to_numpy(), frame["ds"].to_numpy()), index=series)
    grouped = frame.groupby("unique_id")
    expected = pd.DataFrame({"n_obs": grouped["y"].count(), "first_ds": grouped["ds"].min(),
                             "last_ds": grouped["ds"].max(), "constant": grouped["y"].std(ddof=0) == 0,
                             "max_abs": grouped["y"].apply(lambda y: y.abs().max())})
    pd.testing.assert_frame_equal(got, expected, check_names=False)
    assert got["constant"].any() and got["n_obs"].eq(0).any() and frame["ds"].isna().any(), "every case is there"


def test_timestamp_hashes_are_splitmix64_in_any_block_size() -> None:
    def splitmix64_finaliser(x: int) -> int:  # the reference, in Python integers
        mask = (1 << 64) - 1
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & mask
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & mask
        return x ^ (x >> 31)

    ticks = np.array([0, 1, 86_400_000_000, -1, np.iinfo(np.int64).min, 1_700_000_000_000_000], dtype=np.int64)
    expected = [splitmix64_finaliser(int(t) & ((1 << 64) - 1)) for t in ticks]
    for block in (1, 4, 1 << 16):
        assert series_checks._mixed(ticks, block).tolist() == expected, f"block {block}"
