"""Calendar covariates generated from timestamps alone (issue #19): no data needed.

A job names them as spec strings, e.g. ``covariates.calendar: [day_of_week, month, holiday:US]``;
:func:`parse_calendar` checks the list and :func:`calendar_covariates` computes the columns for any number of
timestamps (the context and horizon steps of every series, stacked). Every column is a *categorical*
covariate for :func:`forecast_model.forecast_with_covariates` (``dynamic_categorical``): integer levels,
which the engine one-hot encodes per series over its regression window (effects named ``day_of_week=6``,
``month=12``, ``holiday:US=1``), so no ordering or linearity is assumed (December is not twelve Januaries).

The features (ISO conventions; timestamps are read as wall-clock time, a time zone, if any, is dropped):

========================  ===========================================================  ============
spec                      value                                                         levels
========================  ===========================================================  ============
``day_of_week``           Monday 0 ... Sunday 6 (pandas' ``dayofweek``)                  7
``day_of_month``          1 ... 31                                                      31
``day_of_year``           1 ... 366                                                     366
``week_of_year``          ISO 8601 week, 1 ... 53                                       53
``month``                 1 ... 12                                                      12
``quarter``               1 ... 4                                                       4
``hour``                  0 ... 23                                                      24
``holiday:<CC>``          1 on a public holiday of country ``CC``, else 0               2
``holiday:<CC>/<SUB>``    the same with the subdivision's holidays (``holiday:DE/BY``)   2
========================  ===========================================================  ============

Holidays come from the ``holidays`` package (``holidays.country_holidays``, with its defaults: observed
days included, e.g. the US Independence Day of 2026, a Saturday, is observed on Friday 2026-07-03). A
holiday is a **0/1 flag** by default, not the holiday's name, because the engine fits one regression per
series over its context (at most 512 points for TimesFM-2.0): a daily series sees each named holiday once or
twice there, so a level per name would be fitted from one or two points, and a holiday outside the window
would be an unseen level with no effect of its own. The flag pools every holiday into one effect, fitted
from all of them. ``holidays="name"`` gives the name instead (``"none"`` on other days) for long or pooled
contexts; names are in US English where the ``holidays`` package translates the country's (most countries),
else in its default language, never in the process' locale (which ``holidays`` otherwise follows).

Cost: the date features and the holiday lookups are computed once per distinct date, then spread to the rows
(``pandas.factorize``), so a million hourly rows cost a few thousand lookups.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from typing import Literal, cast

import holidays as holidays_package
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from forecast_model.errors import ConfigurationError, shorten, shorten_names
from pipeline.contracts import DS

__all__ = ["DATE_FEATURES", "NO_HOLIDAY", "CalendarFeature", "HolidayEncoding", "calendar_covariates",
           "parse_calendar"]

HolidayEncoding = Literal["flag", "name"]
NO_HOLIDAY = "none"  # the level of a day without a holiday when holidays are named
_HOLIDAY = "holiday"
_COUNTRIES_SHOWN = 30
_ENGLISH = "en_US"  # holiday names in US English where the holidays package has them

# Each feature of a date, computed on distinct dates (``hour`` on the timestamps themselves).
DATE_FEATURES: dict[str, str] = {
    "day_of_week": "Monday 0 ... Sunday 6",
    "day_of_month": "1 ... 31",
    "day_of_year": "1 ... 366",
    "week_of_year": "ISO week 1 ... 53",
    "month": "1 ... 12",
    "quarter": "1 ... 4",
    "hour": "0 ... 23",
}


@dataclasses.dataclass(frozen=True)
class CalendarFeature:
    """One checked calendar covariate.

    Attributes:
        name: the column (and covariate) name: the spec as written, country and subdivision canonicalised
            (``holiday:us`` becomes ``holiday:US``).
        kind: a key of :data:`DATE_FEATURES`, or ``"holiday"``.
        country: the holiday country code (``holidays``' spelling), for a holiday feature.
        subdivision: the holiday subdivision code, if any.
    """

    name: str
    kind: str
    country: str | None = None
    subdivision: str | None = None


def parse_calendar(spec: Sequence[str]) -> list[CalendarFeature]:
    """The calendar features a spec list names, checked, in the order given.

    Args:
        spec: names such as ``["day_of_week", "month", "holiday:US", "holiday:DE/BY"]``.

    Raises:
        ConfigurationError: an unknown name, country or subdivision, or a feature named twice; the message
            names the entry and lists the valid choices.
    """
    if isinstance(spec, str):
        raise ConfigurationError(f"The calendar covariates must be a list of names, got the string {shorten(spec)}; "
                                 f"write [{spec}].")
    features = [_parse_one(entry) for entry in spec]
    names = [f.name for f in features]
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigurationError(f"Calendar covariates {shorten_names(repeated)} are listed more than once; "
                                 "list each once.")
    return features


def calendar_covariates(
    timestamps: pd.DataFrame | pd.Series | pd.DatetimeIndex | NDArray | Sequence[object],
    spec: Sequence[str] | Sequence[CalendarFeature],
    *,
    holidays: HolidayEncoding = "flag",
    ds_col: str = DS,
) -> pd.DataFrame:
    """The calendar covariates of every timestamp: one integer (or, for named holidays, string) column each.

    Args:
        timestamps: a frame with a ``ds_col`` column, or timestamps (Series, DatetimeIndex, array, list);
            typically every series' context and horizon timestamps, stacked.
        spec: the features (:func:`parse_calendar`'s input or output).
        holidays: ``"flag"`` (0/1, the default) or ``"name"`` (the holiday's name, ``"none"`` on other days);
            see the module docstring for why the flag is the default.
        ds_col: the timestamp column of a frame.

    Returns:
        A frame with one column per feature, named as the feature, one row per timestamp (the index of a
        given frame or Series, else 0..n-1). Date features are ``int16``, holiday flags ``int8``.

    Raises:
        ConfigurationError: a bad spec or ``holidays`` value, a frame without ``ds_col``, or a missing or
            unreadable timestamp (the message gives its position).
    """
    if holidays not in ("flag", "name"):
        raise ConfigurationError(f"holidays must be 'flag' or 'name', got {shorten(holidays)}.")
    features = [f for f in spec if isinstance(f, CalendarFeature)]
    if len(features) != len(spec):
        features = parse_calendar(cast(Sequence[str], spec))
    stamps, index = _timestamps(timestamps, ds_col)
    codes, dates = pd.factorize(stamps.normalize(), sort=False)
    day = pd.DatetimeIndex(dates)
    columns: dict[str, NDArray] = {}
    for feature in features:
        if feature.kind == "hour":
            columns[feature.name] = stamps.hour.to_numpy(dtype=np.int16)
        elif feature.kind == _HOLIDAY:
            columns[feature.name] = _holidays(feature, day, holidays)[codes]
        else:
            columns[feature.name] = _date_feature(feature.kind, day)[codes]
    return pd.DataFrame(columns, index=index)


def _parse_one(entry: object) -> CalendarFeature:
    if not isinstance(entry, str):
        raise ConfigurationError(f"Calendar covariate {shorten(entry)} is not a name; use one of {_valid_names()}.")
    text = entry.strip()
    if text in DATE_FEATURES:
        return CalendarFeature(text, text)
    kind, colon, place = text.partition(":")
    if kind.strip() != _HOLIDAY:
        close = difflib.get_close_matches(text, [*DATE_FEATURES, _HOLIDAY], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigurationError(f"Unknown calendar covariate {shorten(entry)}{hint}; use one of {_valid_names()}.")
    if not colon or not place.strip():
        raise ConfigurationError(f"Calendar covariate {shorten(entry)} names no country; write holiday:<country> "
                                 "with an ISO 3166 code, e.g. holiday:US, or holiday:<country>/<subdivision>, "
                                 "e.g. holiday:DE/BY.")
    country_text, _, subdivision_text = place.strip().partition("/")
    country = _country(entry, country_text.strip())
    subdivision = _subdivision(entry, country, subdivision_text.strip()) if subdivision_text.strip() else None
    return CalendarFeature(f"{_HOLIDAY}:{country}" + (f"/{subdivision}" if subdivision else ""), _HOLIDAY, country,
                           subdivision)


def _valid_names() -> str:
    return ", ".join([*DATE_FEATURES, "holiday:<country>", "holiday:<country>/<subdivision>"])


def _country(entry: str, code: str) -> str:
    supported = holidays_package.list_supported_countries(include_aliases=True)
    if code.upper() in supported:
        return code.upper()
    codes = sorted(holidays_package.list_supported_countries(include_aliases=False))
    raise ConfigurationError(f"Calendar covariate {shorten(entry)}: the holidays package "
                             f"{holidays_package.__version__} has no country {shorten(code)}; use an ISO 3166-1 "
                             f"code it supports: {shorten_names(codes, _COUNTRIES_SHOWN)} "
                             "(holidays.list_supported_countries() lists them all).")


def _subdivision(entry: str, country: str, code: str) -> str:
    subdivisions = holidays_package.list_supported_countries(include_aliases=True)[country]
    matches = [s for s in subdivisions if s.upper() == code.upper()]
    if matches:
        return matches[0]
    listed = f"one of {shorten_names(subdivisions, _COUNTRIES_SHOWN)}" if subdivisions else "none: it has none"
    raise ConfigurationError(f"Calendar covariate {shorten(entry)}: country {country} has no subdivision "
                             f"{shorten(code)} in the holidays package; use {listed}, or holiday:{country} alone.")


def _timestamps(values: object, ds_col: str) -> tuple[pd.DatetimeIndex, pd.Index]:
    """The timestamps as a tz-naive DatetimeIndex, and the index the result gets."""
    if isinstance(values, pd.DataFrame):
        if ds_col not in values.columns:
            raise ConfigurationError(f"The frame has no timestamp column {shorten(ds_col)}; its columns are "
                                     f"{shorten_names(values.columns)}. Pass ds_col=<the timestamp column>.")
        values = values[ds_col]
    index = values.index if isinstance(values, pd.Series) else None
    try:
        stamps = pd.DatetimeIndex(values)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"The calendar covariates need timestamps; {exc}. Convert the column with "
                                 "pandas.to_datetime first.") from exc
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)
    if stamps.hasnans:
        position = int(np.argmax(stamps.isna()))
        raise ConfigurationError(f"Timestamp {position} is missing (NaT): calendar covariates need every context "
                                 "and horizon timestamp; drop or fill the row.")
    return stamps, index if index is not None else pd.RangeIndex(len(stamps))


def _date_feature(kind: str, day: pd.DatetimeIndex) -> NDArray[np.int16]:
    """One date feature of each distinct date."""
    if kind == "week_of_year":
        return day.isocalendar()["week"].to_numpy(dtype=np.int16)
    attribute = {"day_of_week": "day_of_week", "day_of_month": "day", "day_of_year": "day_of_year", "month": "month",
                 "quarter": "quarter"}[kind]
    return np.asarray(getattr(day, attribute), dtype=np.int16)


def _holidays(feature: CalendarFeature, day: pd.DatetimeIndex, encoding: HolidayEncoding) -> NDArray:
    """The holiday flag (int8) or name (str) of each distinct date: one calendar per feature, over its years."""
    country, subdivision = feature.country or "", feature.subdivision
    language = _ENGLISH if _ENGLISH in holidays_package.country_holidays(
        country, subdiv=subdivision).supported_languages else None  # else the country's own: never the locale's
    calendar = holidays_package.country_holidays(country, subdiv=subdivision, language=language,
                                                 years=sorted(set(day.year.tolist())))
    found = pd.Series({pd.Timestamp(date): name for date, name in calendar.items()}, dtype=object)
    names = found.reindex(day)
    if encoding == "flag":
        return names.notna().to_numpy(dtype=np.int8)
    return names.fillna(NO_HOLIDAY).to_numpy(dtype=str)
