"""Property-based fuzzing of the loaders and the validation: whatever the input, the only failure is a
documented one (InputDataError, or its DataValidationError), and what validation lets through always
meets the data contract, so bad data can never reach a published table."""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.canonical import ColumnMapping, parse_bytes, to_canonical
from pipeline.contracts import DS, ID, SeriesStatus, Y
from pipeline.errors import InputDataError
from pipeline.series_checks import SeriesChecks
from tasks.validate import validate_series
from tests.conftest import make_run

# FUZZ_EXAMPLES=3000 for a deeper run than CI's (docs/RELIABILITY.md records one).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cells = st.one_of(
    st.none(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.dates(date(1677, 10, 1), date(2262, 4, 1)).map(str),
    st.datetimes().map(lambda d: d.isoformat()), st.sampled_from(["", "NaN", "inf", "-", "2024-13-45", "1e309"]),
)
column_names = st.sampled_from(["unique_id", "ds", "y", "series", "date", "value", "", "extra", "y "])


def assert_canonical(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == [ID, DS, Y]
    assert frame[ID].map(lambda v: isinstance(v, str)).all(), "ids are strings"
    assert str(frame[DS].dtype).startswith("datetime64") and frame[DS].dt.tz is None, "naive UTC timestamps"
    assert frame[Y].dtype == np.float64
    assert frame.equals(frame.sort_values([ID, DS], kind="stable", ignore_index=True)), "sorted by series, time"


@FAST
@given(data=st.binary(max_size=2048), kind=st.sampled_from(["csv", "parquet"]))
def test_any_bytes_parse_or_fail_with_a_documented_error(data: bytes, kind: str) -> None:
    try:
        frame = parse_bytes(data, kind, "fuzz.bin")  # type: ignore[arg-type]
    except InputDataError as exc:
        assert "fuzz.bin" in str(exc), "the error names the source"
        return
    assert isinstance(frame, pd.DataFrame)


@FAST
@given(header=st.lists(column_names, min_size=1, max_size=5),
       rows=st.lists(st.lists(cells, min_size=0, max_size=6), max_size=12), layout=st.sampled_from(["long", "wide"]))
def test_any_csv_table_maps_to_the_contract_or_fails_cleanly(header: list[str], rows: list[list[object]],
                                                             layout: str) -> None:
    text = ",".join(header) + "\n" + "\n".join(",".join("" if c is None else str(c) for c in row) for row in rows)
    try:
        frame = to_canonical(parse_bytes(text.encode(), "csv", "fuzz.csv"), layout)  # type: ignore[arg-type]
    except InputDataError:
        return
    assert_canonical(frame)


frames = st.integers(0, 6).flatmap(lambda n: st.fixed_dictionaries({
    "unique_id": st.lists(st.one_of(st.sampled_from(["a", "b", "ü"]), st.integers(0, 3), st.none()),
                          min_size=n, max_size=n),
    "ds": st.lists(st.one_of(st.datetimes(), st.dates().map(str), st.text(max_size=8), st.none(),
                             st.integers(0, 2**40)), min_size=n, max_size=n),
    "y": st.lists(st.one_of(cells, st.booleans()), min_size=n, max_size=n),
}))


@FAST
@given(columns=frames, drop=st.sets(st.sampled_from(["unique_id", "ds", "y"]), max_size=1))
def test_any_frame_shape_maps_to_the_contract_or_fails_cleanly(columns: dict[str, list], drop: set[str]) -> None:
    raw = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items() if k not in drop})
    try:
        frame = to_canonical(raw, "long", ColumnMapping())
    except InputDataError:
        return
    assert_canonical(frame)


# A few series on daily or monthly calendars, with duplicates, gaps, missing and non-finite values mixed in.
observations = st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.integers(0, 40),
                                  st.one_of(st.floats(-1e6, 1e6), st.just(np.nan), st.just(np.inf),
                                            st.just(1.0))), min_size=1, max_size=80)


@pytest.mark.slow  # ~45 s with its Prefect API: a fifth of the fast tier; the full suite runs it
@pytest.mark.usefixtures("prefect_api")
@settings(max_examples=max(10, EXAMPLES // 12), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rows=observations, freq=st.sampled_from(["D", "MS"]), declared=st.booleans(),
       checks=st.builds(SeriesChecks, min_observations=st.integers(1, 5),
                        max_missing_fraction=st.sampled_from([0.0, 0.3, 1.0]),
                        max_rejected_fraction=st.sampled_from([0.0, 0.5, 1.0])))
def test_validation_lets_through_only_series_that_meet_the_contract(
        tmp_path: Path, rows: list[tuple[str, int, float]], freq: str, declared: bool, checks: SeriesChecks) -> None:
    calendar = pd.date_range("2024-01-01", periods=41, freq=freq)
    frame = pd.DataFrame({ID: [r[0] for r in rows], DS: calendar[[r[1] for r in rows]].astype("datetime64[us]"),
                          Y: [r[2] for r in rows]}).sort_values([ID, DS], kind="stable", ignore_index=True)
    staging = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example: tmp_path is shared by all of them
    frame.to_parquet(staging / "input.parquet")
    try:
        outcome = validate_series(staging / "input.parquet", staging,
                                  make_run(checks=checks, freq=freq if declared else None, as_of=date(2027, 1, 1)))
    except InputDataError:
        return
    status = pd.read_parquet(outcome.status_path)
    regular = pd.read_parquet(outcome.regular_path)
    accepted = set(status.loc[status["status"] == SeriesStatus.OK.value, ID])
    assert set(regular[ID]) == accepted, "only accepted series go on to the model"
    assert set(status[ID]) == set(frame[ID]), "every input series has a status"
    for series_id, group in regular.groupby(ID):
        original = frame[frame[ID] == series_id]
        assert not original.duplicated(DS).any(), f"{series_id}: duplicate timestamps accepted"
        assert np.isfinite(original[Y].dropna()).all(), f"{series_id}: a non-finite value accepted"
        assert group[Y].notna().sum() >= checks.min_observations
        assert group[Y].isna().mean() <= checks.max_missing_fraction + 1e-9
        steps = group[DS].diff().dropna()
        assert (steps > pd.Timedelta(0)).all(), f"{series_id}: timestamps not increasing"
        series_freq = status.set_index(ID).loc[series_id, "freq"]
        expected = pd.date_range(group[DS].iloc[0], group[DS].iloc[-1], freq=series_freq)
        assert list(group[DS]) == list(expected), f"{series_id}: not on its {series_freq} grid"
    rejected = len(status) - len(accepted)
    assert rejected / len(status) <= checks.max_rejected_fraction, "too many rejections must fail the run"



@FAST
@given(header_width=st.integers(1, 4), widths=st.lists(st.integers(0, 5), min_size=1, max_size=15))
def test_a_row_of_another_width_is_refused_at_its_line(header_width: int, widths: list[int]) -> None:
    header = ",".join(f"c{i}" for i in range(header_width))
    lines = [",".join(str(j) for j in range(width)) for width in widths]  # width 0: an empty line, skipped
    data = (header + "\n" + "\n".join(lines) + "\n").encode()
    ragged = [index for index, width in enumerate(widths) if width not in (0, header_width)]
    if not ragged:
        assert len(parse_bytes(data, "csv", "fuzz.csv")) == widths.count(header_width)
        return
    with pytest.raises(InputDataError, match=f"^fuzz.csv: line {ragged[0] + 2} has {widths[ragged[0]]} fields?, "
                                             f"the header has {header_width}"):
        parse_bytes(data, "csv", "fuzz.csv")


@FAST
@given(ids=st.lists(st.from_regex(r"[0-9]{1,6}", fullmatch=True), min_size=1, max_size=10, unique=True))
def test_digit_ids_stay_distinct_text(ids: list[str]) -> None:
    data = ("unique_id,ds,y\n" + "".join(f"{i},2024-01-01,1\n" for i in ids)).encode()
    frame = to_canonical(parse_bytes(data, "csv", "fuzz.csv", ColumnMapping().text_columns("long")))
    assert sorted(frame[ID]) == sorted(ids), "ids are read as written"


@FAST
@given(values=st.lists(st.integers(-10**12, 10**12), min_size=1, max_size=8))
def test_integer_time_values_are_years_or_refused(values: list[int]) -> None:
    raw = pd.DataFrame({ID: [str(i) for i in range(len(values))], DS: pd.array(values, dtype="int64"), Y: 1.0})
    if all(1000 <= value <= 9999 for value in values):
        assert to_canonical(raw).set_index(ID)[DS].dt.year.to_dict() == {str(i): v for i, v in enumerate(values)}
        return
    with pytest.raises(InputDataError, match="holds integers"):
        to_canonical(raw)


# Series that meet the contract by construction: a calendar, some interior points removed, finite values
# that change; then the same with exactly one rule broken.
FREQS = ["D", "B", "h", "W-SUN", "MS", "QS", "SMS"]
# check_series costs ~40 ms a call: a third of the examples keeps these two under 10 s in the fast tier.
CHECKS = settings(max_examples=max(25, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def contract_series(draw: st.DrawFn) -> tuple[pd.DatetimeIndex, np.ndarray, str, int]:
    freq = draw(st.sampled_from(FREQS))
    n = draw(st.integers(3, 60))
    grid = pd.date_range(draw(st.sampled_from(["2021-01-01", "2023-06-05", "2024-02-29"])), periods=n, freq=freq)
    removed = draw(st.sets(st.integers(1, n - 2), max_size=(n - 2) // 2)) if n > 2 else set()
    stamps = grid.delete(sorted(removed))
    values = np.array(draw(st.lists(st.floats(-1e6, 1e6), min_size=len(stamps), max_size=len(stamps))))
    if np.ptp(values) < 1:  # a spread of 1e-308 is constant to the check's float arithmetic, and rightly
        values[-1] = values[0] + 1.0
    return stamps, values, freq, len(removed)


def status_of(stamps: pd.DatetimeIndex, values: np.ndarray, checks: SeriesChecks, freq: str | None,
              as_of: date = date(2030, 1, 1)) -> pd.Series:
    frame = pd.DataFrame({ID: "s", DS: stamps.astype("datetime64[us]"), Y: values})
    from pipeline.series_checks import check_series

    return check_series(frame, {}, checks, freq, as_of).iloc[0]


@CHECKS
@given(series=contract_series(), declared=st.booleans())
def test_every_series_that_meets_the_contract_is_accepted(series: tuple, declared: bool) -> None:
    stamps, values, freq, removed = series
    grid_size = len(stamps) + removed
    checks = SeriesChecks(min_observations=len(stamps), max_missing_fraction=removed / grid_size)
    status = status_of(stamps, values, checks, freq if declared else None)
    assert status["status"] == SeriesStatus.OK.value, f"{freq} series rejected: {status['reason']}"
    if declared:
        assert status["freq"] == freq and status["missing_fraction"] == pytest.approx(removed / grid_size)
    else:  # the inferred grid holds every timestamp and misses no more points than the true one
        inferred = pd.date_range(stamps[0], stamps[-1], freq=status["freq"])
        assert stamps.isin(inferred).all() and len(inferred) <= grid_size, (freq, status["freq"])


@CHECKS
@given(series=contract_series(), rule=st.sampled_from(["too_few_observations", "too_many_gaps", "constant",
                                                        "non_finite", "stale"]))
def test_a_series_that_breaks_one_rule_is_rejected_for_it(series: tuple, rule: str) -> None:
    stamps, values, freq, removed = series
    grid_size = len(stamps) + removed
    checks = {"min_observations": len(stamps), "max_missing_fraction": removed / grid_size}
    as_of = stamps[-1].date()
    if rule == "too_few_observations":
        checks["min_observations"] = len(stamps) + 1
    elif rule == "too_many_gaps":
        if removed == 0:
            return
        checks["max_missing_fraction"] = (removed - 1) / grid_size
    elif rule == "constant":
        values = np.full(len(values), values[0])
    elif rule == "non_finite":
        values = values.copy()
        values[len(values) // 2] = np.inf
    else:
        checks["max_staleness"] = 0
        as_of = (stamps[-1] + pd.tseries.frequencies.to_offset(freq)).date()
        if pd.Timestamp(as_of) <= stamps[-1]:  # sub-daily: the next period is on the same date
            return
    expected = {"non_finite": "out_of_range"}.get(rule, rule)
    status = status_of(stamps, values, SeriesChecks(**checks), freq, as_of)
    assert status["status"] == SeriesStatus.REJECTED.value and status["reason"] == expected, (rule, status["reason"])
