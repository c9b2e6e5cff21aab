"""Calendar covariates from timestamps: the spec parser, exact values, holidays, scale, and the engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast_model import (
    ConfigurationError,
    Covariates,
    EngineConfig,
    ResolvedCheckpoint,
    forecast_with_covariates,
    load_engine,
)
from pipeline.calendar import DATE_FEATURES, NO_HOLIDAY, CalendarFeature, calendar_covariates, parse_calendar

# date -> (day_of_week, day_of_month, day_of_year, week_of_year, month, quarter)
KNOWN = {
    "1970-01-01": (3, 1, 1, 1, 1, 1),
    "2000-01-01": (5, 1, 1, 52, 1, 1),  # a Saturday in ISO week 52 of 1999
    "2024-02-29": (3, 29, 60, 9, 2, 1),
    "2024-12-31": (1, 31, 366, 1, 12, 4),  # a Tuesday in ISO week 1 of 2025
    "2026-07-04": (5, 4, 185, 27, 7, 3),
    "2026-12-07": (0, 7, 341, 50, 12, 4),
    "2026-12-25": (4, 25, 359, 52, 12, 4),
    "2027-01-01": (4, 1, 1, 53, 1, 1),  # 2026 has 53 ISO weeks
}
DATE_COLUMNS = ["day_of_week", "day_of_month", "day_of_year", "week_of_year", "month", "quarter"]


def test_date_features_match_a_known_table() -> None:
    out = calendar_covariates(pd.to_datetime(list(KNOWN)), DATE_COLUMNS)
    assert list(out.columns) == DATE_COLUMNS, out.columns
    assert all(out[c].dtype == np.int16 for c in DATE_COLUMNS), out.dtypes
    for row, (date, expected) in enumerate(KNOWN.items()):
        assert tuple(out.iloc[row]) == expected, f"{date}: got {tuple(out.iloc[row])}, expected {expected}"


def test_hour_comes_from_the_timestamp_and_the_date_features_from_its_date() -> None:
    stamps = pd.Series(pd.to_datetime(["2026-12-25 00:00", "2026-12-25 23:30", "2026-12-26 07:15"]), index=[7, 8, 9])
    out = calendar_covariates(stamps, ["hour", "day_of_week", "holiday:US"])
    assert list(out.index) == [7, 8, 9], "the result keeps a Series' index"
    assert out["hour"].tolist() == [0, 23, 7], out["hour"].tolist()
    assert out["day_of_week"].tolist() == [4, 4, 5], out["day_of_week"].tolist()
    assert out["holiday:US"].tolist() == [1, 1, 0], out["holiday:US"].tolist()


@pytest.mark.parametrize(("spec", "date", "expected"), [
    ("holiday:US", "2026-12-25", 1), ("holiday:DE", "2026-12-25", 1), ("holiday:GB", "2026-12-25", 1),
    ("holiday:US", "2026-07-04", 1),  # Independence Day, a Saturday ...
    ("holiday:US", "2026-07-03", 1),  # ... observed on the Friday
    ("holiday:US", "2026-11-26", 1),  # Thanksgiving
    ("holiday:US", "2026-12-24", 0), ("holiday:DE", "2026-07-04", 0),
    ("holiday:DE", "2026-12-26", 1), ("holiday:GB", "2026-12-26", 1), ("holiday:GB", "2026-12-28", 1),
    ("holiday:DE", "2026-01-06", 0), ("holiday:DE/BY", "2026-01-06", 1),  # Epiphany: Bavaria only
    ("holiday:US", "2026-12-07", 0),
])
def test_holiday_flags_on_known_dates(spec: str, date: str, expected: int) -> None:
    out = calendar_covariates(pd.DataFrame({"ds": pd.to_datetime([date])}), [spec])
    assert out[spec].dtype == np.int8, out.dtypes
    assert out[spec].iloc[0] == expected, f"{spec} on {date}: got {out[spec].iloc[0]}, expected {expected}"


def test_holiday_names_are_english_levels_with_none_on_other_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")  # holidays would follow the locale: German names for DE
    dates = pd.to_datetime(["2026-12-24", "2026-12-25", "2026-12-26"])
    out = calendar_covariates(dates, ["holiday:DE", "holiday:US"], holidays="name")
    assert out["holiday:DE"].tolist() == [NO_HOLIDAY, "Christmas Day", "Second Day of Christmas"], out
    assert out["holiday:US"].tolist() == [NO_HOLIDAY, "Christmas Day", NO_HOLIDAY], out


def test_spec_is_canonicalised_and_accepted_as_parsed_features() -> None:
    features = parse_calendar(["month", " holiday:us ", "holiday:de/by"])
    assert features == [CalendarFeature("month", "month"), CalendarFeature("holiday:US", "holiday", "US"),
                        CalendarFeature("holiday:DE/BY", "holiday", "DE", "BY")], features
    out = calendar_covariates(pd.to_datetime(["2026-12-25"]), features)
    assert list(out.columns) == ["month", "holiday:US", "holiday:DE/BY"], out.columns


@pytest.mark.parametrize(("spec", "match"), [
    (["day_of_weak"], r"Unknown calendar covariate 'day_of_weak' \(did you mean 'day_of_week'\?\); use one of "
                      r"day_of_week, day_of_month, .* holiday:<country>"),
    (["weekday"], r"Unknown calendar covariate 'weekday'.*use one of day_of_week"),
    (["holiday"], r"'holiday' names no country; write holiday:<country> .* holiday:US"),
    (["holiday:"], r"names no country"),
    (["holiday:XX"], r"'holiday:XX': the holidays package .* has no country 'XX'; use an ISO 3166-1 code it "
                     r"supports: \['AD', 'AE', .*and [\d,]+ more\]"),
    (["holiday:DE/ZZ"], r"country DE has no subdivision 'ZZ' .* use one of \['BB', 'BE', .*or holiday:DE alone"),
    (["month", "holiday:US", "holiday:us"], r"\['holiday:US'\] are listed more than once"),
    ([3], r"Calendar covariate 3 is not a name"),
    ("month", r"must be a list of names, got the string 'month'; write \[month\]"),
])
def test_bad_specs_name_the_entry_and_the_fix(spec: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_calendar(spec)  # type: ignore[arg-type]


def test_bad_inputs_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match=r"no timestamp column 'ds'.*Pass ds_col"):
        calendar_covariates(pd.DataFrame({"when": pd.to_datetime(["2026-01-01"])}), ["month"])
    with pytest.raises(ConfigurationError, match=r"Timestamp 1 is missing \(NaT\)"):
        calendar_covariates(pd.Series(pd.to_datetime(["2026-01-01", None])), ["month"])
    with pytest.raises(ConfigurationError, match=r"holidays must be 'flag' or 'name'"):
        calendar_covariates(pd.to_datetime(["2026-01-01"]), ["holiday:US"], holidays="names")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"Unknown calendar covariate 'mnth'"):
        calendar_covariates(pd.to_datetime(["2026-01-01"]), ["mnth"])


def test_a_million_hourly_rows_of_many_series() -> None:
    """Stacked context and horizon timestamps of 1,000 series x 1,000 hours: holidays once per distinct date."""
    ds = np.tile(pd.date_range("2025-06-01", periods=1_000, freq="h").to_numpy(), 1_000)
    frame = pd.DataFrame({"unique_id": np.repeat(np.arange(1_000), 1_000), "ds": ds})
    out = calendar_covariates(frame, [*DATE_FEATURES, "holiday:US", "holiday:GB"])
    assert out.shape == (1_000_000, len(DATE_FEATURES) + 2), out.shape
    first = out.iloc[:1_000].reset_index(drop=True)
    assert (out.iloc[-1_000:].reset_index(drop=True) == first).all().all(), "every series gets the same calendar"
    us_days = sorted({str(d.date()) for d in frame["ds"][out["holiday:US"] == 1]})
    assert us_days == ["2025-06-19", "2025-07-04"], f"Juneteenth and Independence Day in the 1,000 hours: {us_days}"
    assert out["holiday:US"].sum() == 1_000 * 48, "24 hours of each holiday in every series"
    assert out["holiday:GB"].sum() == 0, "no GB bank holiday from 2025-05-27 to 2025-08-24"
    assert out["hour"].iloc[:24].tolist() == list(range(24)), out["hour"].iloc[:24].tolist()


def test_calendar_columns_drive_forecast_with_covariates(tiny_checkpoint: ResolvedCheckpoint) -> None:
    """Calendar levels as dynamic categorical covariates: a forecast, and effects such as ``day_of_week=6``."""
    engine = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu", batch_size=4))
    horizon, rng = 14, np.random.default_rng(0)
    weekly = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 12.0])  # Monday ... Sunday
    starts, lengths = ["2025-09-01", "2025-11-17"], [120, 60]
    series, columns = [], {"day_of_week": [], "holiday:US": []}
    for start, length in zip(starts, lengths, strict=True):
        stamps = pd.date_range(start, periods=length + horizon, freq="D")
        calendar = calendar_covariates(stamps, ["day_of_week", "holiday:US"])
        series.append(50.0 + weekly[stamps.day_of_week[:length]] + rng.normal(0, 0.01, length))
        for name in columns:
            columns[name].append(calendar[name].to_numpy())
    out = forecast_with_covariates(engine, series, horizon, Covariates(dynamic_categorical=columns))
    assert out.result.point.shape == (2, horizon), out.result.point.shape
    assert np.isfinite(out.result.quantiles).all(), "every quantile is finite"
    assert [f"day_of_week={d}" for d in range(7)] == out.effect_names[1:8], out.effect_names
    assert {"holiday:US=0", "holiday:US=1"} <= set(out.effect_names), out.effect_names
    sunday = out.coefficients[:, out.effect_names.index("day_of_week=6")]
    assert np.allclose(sunday, 12.0, atol=0.05), f"Sunday's effect over Monday is 12, got {sunday}"
