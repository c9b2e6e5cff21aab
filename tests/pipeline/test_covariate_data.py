"""pipeline/covariate_data.py: future rows, each series' covariate checks, and their alignment with the steps
the engine uses."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from forecast_model import (
    CovariateForecast,
    EngineConfig,
    ForecastResult,
    ResolvedCheckpoint,
    TimesFmEngine,
    forecast_with_covariates,
    load_engine,
)
from pipeline.canonical import ColumnMapping, to_canonical
from pipeline.contracts import DS, ID, SeriesStatus, Y
from pipeline.covariate_data import (
    STEP,
    AlignedCovariates,
    check_covariates,
    effects_frame,
    future_covariates,
    split_future,
)
from pipeline.errors import InputDataError
from pipeline.params import CovariateParams
from pipeline.series_checks import SeriesChecks, check_series

PRICE = CovariateParams(dynamic_numerical=("price",), dynamic_categorical=("promo",))
HISTORY, FUTURE = 10, 3


def panel(ids: tuple[str, ...] = ("a", "b"), history: int = HISTORY, future: int = FUTURE) -> pd.DataFrame:
    """Daily series: ``history`` observed days, then ``future`` days with covariates and an empty target."""
    days = pd.date_range("2024-01-01", periods=history + future, freq="D")
    parts = []
    for k, name in enumerate(ids):
        y = np.r_[np.arange(history, dtype=float) * (k + 1) + 5, np.full(future, np.nan)]
        parts.append(pd.DataFrame({ID: name, DS: days, Y: y, "price": 10.0 * k + np.arange(len(days)),
                                   "promo": np.arange(len(days)) % 2}))
    return to_canonical(pd.concat(parts, ignore_index=True), covariates=PRICE.columns())


def checked(frame: pd.DataFrame, params: CovariateParams = PRICE, *, horizon: int = FUTURE, context_len: int = 512,
            future: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    target, covariates = split_future(frame, params, future)
    status = check_series(target, {}, SeriesChecks(reject_constant=False), "D", date(2024, 2, 1))
    return check_covariates(target, status, covariates, params, horizon=horizon, context_len=context_len)


def test_rows_after_the_last_observation_are_future_rows_of_the_covariates_only() -> None:
    frame = panel()
    frame.loc[(frame[ID] == "a") & (frame[DS] == "2024-01-04"), Y] = np.nan  # a gap: history, not future
    target, covariates = split_future(frame, PRICE)
    assert list(target.columns) == [ID, DS, Y] and target.groupby(ID).size().to_dict() == {"a": HISTORY, "b": HISTORY}
    assert target[Y].isna().sum() == 1, "an interior missing value stays in the target"
    assert list(covariates.columns) == [ID, DS, "price", "promo"] and len(covariates) == len(frame)


def test_without_dynamic_covariates_nothing_is_split_off() -> None:
    frame = panel()
    target, covariates = split_future(frame, CovariateParams(static_numerical=("price",), calendar=("month",)))
    assert len(target) == len(frame) and target[Y].isna().sum() == 2 * FUTURE, "trailing gaps stay gaps"
    assert list(covariates.columns) == [ID, DS, "price"]


def test_a_future_source_adds_steps_after_the_last_observation_and_refuses_a_step_given_twice() -> None:
    frame = panel(future=0)
    raw = pd.DataFrame({"unique_id": ["a", "a", "b"], "ds": ["2024-01-10", "2024-01-11", "2024-01-11"],
                        "price": [99.0, 1.5, 2.5], "promo": [1, 0, 1]})
    future = future_covariates(raw, ColumnMapping(), PRICE)
    target, covariates = split_future(frame, PRICE, future)
    assert len(target) == len(frame)
    added = covariates[covariates[DS] > pd.Timestamp("2024-01-10")]
    assert added[[ID, "price"]].values.tolist() == [["a", 1.5], ["b", 2.5]]
    assert covariates.loc[(covariates[ID] == "a") & (covariates[DS] == "2024-01-10"), "price"].tolist() == [9.0], \
        "a future-source row at or before the last observation must not replace the input's value"
    with pytest.raises(InputDataError, match=r"gives 2 timestamps that the input gives too \(e\.g\. \['a at 2024-01-1"):
        split_future(panel(future=2), PRICE, future)


def test_target_values_in_the_future_source_are_an_input_error() -> None:
    raw = pd.DataFrame({"unique_id": ["a"], "ds": ["2024-02-01"], "y": [3.0], "price": [1.0], "promo": [0]})
    with pytest.raises(InputDataError, match="has 1 target values in column 'y'.*Fix: move those rows to the input"):
        future_covariates(raw, ColumnMapping(), PRICE)
    missing = raw.drop(columns=["promo"])
    with pytest.raises(InputDataError, match=r"Covariate columns \['promo'\] are not in the source"):
        future_covariates(missing, ColumnMapping(), PRICE)


def test_each_series_without_usable_covariates_is_rejected_with_its_reason_and_the_others_stay() -> None:
    frame = panel(("ok", "short_future", "gap_in_context", "gap_before_context", "empty_future_value"))
    frame = frame[~((frame[ID] == "short_future") & (frame[DS] == frame[DS].max()))]
    frame.loc[(frame[ID] == "gap_in_context") & (frame[DS] == "2024-01-08"), "price"] = np.nan
    frame.loc[(frame[ID] == "gap_before_context") & (frame[DS] == "2024-01-02"), "price"] = np.nan
    frame.loc[(frame[ID] == "empty_future_value") & (frame[DS] == "2024-01-12"), "promo"] = pd.NA
    status, aligned = checked(frame.reset_index(drop=True), context_len=6)
    reasons = status.set_index(ID)["reason"].to_dict()
    assert reasons == {"ok": None, "short_future": "missing_future_covariates", "gap_in_context": "missing_covariates",
                       "gap_before_context": None, "empty_future_value": "missing_future_covariates"}
    assert (status.set_index(ID)["status"] == SeriesStatus.REJECTED.value).sum() == 3
    assert aligned[ID].unique().tolist() == ["gap_before_context", "ok"]
    ok = aligned[aligned[ID] == "ok"]
    assert ok[STEP].tolist() == [0] * 6 + [1, 2, 3], "the last context_len steps, then the horizon's"
    assert ok[DS].tolist() == list(pd.date_range("2024-01-05", periods=9, freq="D"))
    assert ok["price"].tolist() == [float(d) for d in range(4, 13)]


def test_a_horizon_longer_than_the_future_rows_rejects_every_series() -> None:
    status, aligned = checked(panel(), horizon=FUTURE + 1)
    assert set(status["reason"]) == {"missing_future_covariates"} and aligned.empty


def test_static_covariates_must_have_one_value_within_a_series() -> None:
    frame = panel(("one", "two", "none")).assign(size=lambda f: f[ID].map({"one": 3.0, "two": 4.0, "none": np.nan}))
    frame.loc[(frame[ID] == "two") & (frame[DS] == "2024-01-03"), "size"] = 5.0
    params = CovariateParams(dynamic_numerical=("price",), static_numerical=("size",))
    status, aligned = checked(frame, params)
    assert status.set_index(ID)["reason"].to_dict() == {"one": None, "two": "static_covariate_varies",
                                                        "none": "missing_covariates"}
    assert set(aligned["size"]) == {3.0}


def test_two_rows_of_one_future_timestamp_reject_the_series() -> None:
    frame = panel(("a", "b"))
    doubled = pd.concat([frame, frame[(frame[ID] == "b") & frame[Y].isna()].head(1)], ignore_index=True)
    status, _ = checked(doubled.sort_values([ID, DS], kind="stable", ignore_index=True))
    assert status.set_index(ID)["reason"].to_dict() == {"a": None, "b": "duplicate_timestamp"}


def test_calendar_features_are_generated_for_context_and_horizon_steps() -> None:
    params = CovariateParams(calendar=("day_of_week", "holiday:US"))
    frame = panel(("a",), history=10, future=0)
    target, covariates = split_future(frame, params)
    status = check_series(target, {}, SeriesChecks(), "D", date(2024, 2, 1))
    _, aligned = check_covariates(target, status, covariates, params, horizon=5, context_len=512)
    assert aligned[DS].tolist() == list(pd.date_range("2024-01-01", periods=15, freq="D"))
    assert aligned["day_of_week"].tolist() == [d % 7 for d in range(15)]  # 2024-01-01 was a Monday
    assert aligned["holiday:US"].tolist() == [1] + [0] * 13 + [1]  # New Year's Day, Martin Luther King Jr. Day


def test_the_aligned_steps_are_padded_to_the_series_length_with_values_the_engine_never_reads() -> None:
    _, aligned = checked(panel(), context_len=4)
    covariates = AlignedCovariates(aligned, PRICE).for_series(["b", "a"], [HISTORY, HISTORY], FUTURE)
    price, promo = covariates.dynamic_numerical["price"], covariates.dynamic_categorical["promo"]
    assert [len(p) for p in price] == [HISTORY + FUTURE] * 2
    assert price[0].tolist() == [0.0] * 6 + [10.0 + d for d in range(6, 13)]
    assert promo[1].tolist() == ["0"] * 7 + ["1", "0", "1", "0", "1", "0"]
    with pytest.raises(LookupError, match="has 7 aligned covariate steps for 3 points"):
        AlignedCovariates(aligned, PRICE).for_series(["a"], [3], FUTURE)


def test_padding_does_not_change_a_forecast(tiny_checkpoint: ResolvedCheckpoint) -> None:
    """The filler before the context is cut by the engine: any filler gives the same forecast."""
    engine = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu"))
    _, aligned = checked(panel(), context_len=4)
    covariates = AlignedCovariates(aligned, PRICE).for_series(["a", "b"], [HISTORY, HISTORY], FUTURE)
    series = [np.arange(HISTORY, dtype=float) + 5, np.arange(HISTORY, dtype=float) * 2 + 5]
    padded = forecast(engine, series, covariates)
    noisy = dict(covariates.dynamic_numerical)
    noisy["price"] = [np.r_[np.full(HISTORY - 4, 1e6), p[HISTORY - 4:]] for p in noisy["price"]]
    other = forecast(engine, series, type(covariates)(dynamic_numerical=noisy,
                                                       dynamic_categorical=covariates.dynamic_categorical))
    np.testing.assert_array_equal(padded.result.point, other.result.point)
    assert np.isfinite(padded.result.point).all()


def forecast(engine: TimesFmEngine, series: list[np.ndarray], covariates: object) -> CovariateForecast:
    return forecast_with_covariates(engine, series, FUTURE, covariates, context_len=4)  # type: ignore[arg-type]


def test_effects_leave_out_the_names_that_do_not_apply_to_a_series() -> None:
    empty = np.zeros((2, 1), np.float32)
    fitted = CovariateForecast(result=ForecastResult(empty, empty, np.zeros((2, 1, 9), np.float32)),
                               regression=np.zeros((2, 1)), effect_names=["(intercept)", "promo=0", "promo=1"],
                               coefficients=np.array([[1.5, 0.0, np.nan], [2.0, np.nan, -0.5]]),
                               unseen_levels=np.zeros(2, np.int64))
    effects = effects_frame(["a", "b"], fitted)
    assert effects.values.tolist() == [["a", "(intercept)", 1.5], ["a", "promo=0", 0.0], ["b", "(intercept)", 2.0],
                                       ["b", "promo=1", -0.5]]
