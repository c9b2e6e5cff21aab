"""Missing-value handling must match the `timesfm` API's, value for value."""

from __future__ import annotations

import numpy as np
import pytest
from timesfm import timesfm_base

from forecast_model.preprocess import fill_missing, prepare_contexts, round_up


def timesfm_fill(values: np.ndarray) -> np.ndarray:
    """What `TimesFmBase.forecast` does to one input before inference."""
    if np.isfinite(values).all():
        return values
    values = np.where(np.isfinite(values), values, np.nan)
    return timesfm_base.linear_interpolation(timesfm_base.strip_leading_nans(values))


@pytest.mark.parametrize("seed", range(20))
def test_fill_missing_matches_timesfm(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=rng.integers(2, 200))
    values[rng.random(values.size) < rng.uniform(0, 0.6)] = np.nan
    if seed % 4 == 0:
        values[rng.integers(values.size)] = np.inf
    np.testing.assert_array_equal(fill_missing(values.copy()), timesfm_fill(values.copy()))


def test_all_missing_becomes_zeros_like_the_api() -> None:
    values = np.array([np.nan, np.nan, np.inf])
    np.testing.assert_array_equal(fill_missing(values.copy()), np.zeros(3))


def test_prepare_contexts_clips_after_filling() -> None:
    (context,) = prepare_contexts([[np.nan, 1.0, np.nan, 3.0, 4.0]], context_len=3)
    np.testing.assert_array_equal(context, [2.0, 3.0, 4.0])


def test_round_up() -> None:
    assert [round_up(v, 32) for v in (1, 32, 33, 64)] == [32, 32, 64, 64]


def test_all_missing_keeps_the_series_length() -> None:
    filled = fill_missing(np.full(4, np.nan))
    assert filled.shape == (4,) and filled.dtype == np.float64 and not filled.any()


def test_contexts_are_float64_whatever_the_input_type() -> None:
    contexts = prepare_contexts([[1, 2, 3], np.array([1, 2], dtype=np.int32), [True, False]], context_len=8)
    assert [c.dtype for c in contexts] == [np.float64] * 3
    np.testing.assert_array_equal(contexts[1], [1.0, 2.0])
