"""The tail model: the distribution nine quantiles imply, the anomaly probability, and the bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.anomaly import LEVELS, anomaly_probability, bounds, cdf


def laplace_quantiles(m: float, b: float) -> np.ndarray:
    return np.array([[m + b * math.log(2 * p) if p < 0.5 else m - b * math.log(2 - 2 * p) for p in LEVELS]])


def laplace_cdf(y: float, m: float, b: float) -> float:
    return 0.5 * math.exp((y - m) / b) if y < m else 1 - 0.5 * math.exp(-(y - m) / b)


@pytest.mark.parametrize("y", [-30.0, 0.0, 5.0, 6.7, 13.3, 20.0, 60.0])
def test_the_tails_of_laplace_quantiles_are_that_laplace(y: float) -> None:
    q = laplace_quantiles(10, 2)
    assert y < q[0, 0] or y > q[0, -1], "a point in a tail"
    assert cdf(q, np.array([y]))[0] == pytest.approx(laplace_cdf(y, 10, 2), rel=1e-12, abs=1e-300)


def test_inside_the_band_the_cdf_is_linear_between_the_quantiles() -> None:
    q = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 9.0, 11.0, 13.0]])
    y = np.array([1.0, 1.5, 5.0, 6.0, 12.0, 13.0])
    assert cdf(np.repeat(q, len(y), axis=0), y) == pytest.approx([0.1, 0.15, 0.5, 0.55, 0.85, 0.9])


def test_probability_and_bounds_at_landmarks() -> None:
    q = laplace_quantiles(0, 1)
    rows = np.repeat(q, 4, axis=0)
    assert anomaly_probability(rows, np.array([0.0, q[0, 0], q[0, -1], 40.0])) == \
        pytest.approx([0.0, 0.8, 0.8, 1.0])
    assert [b[0] for b in bounds(q, 0.8)] == pytest.approx([q[0, 0], q[0, -1]])
    lower, upper = bounds(q, 0.95)
    assert (lower[0], upper[0]) == pytest.approx((math.log(0.05), -math.log(0.05))), "Laplace(0, 1) at 2.5%, 97.5%"
    assert anomaly_probability(q, lower) == pytest.approx([0.95])


def test_crossing_quantiles_are_sorted_first() -> None:
    crossed = np.array([[1.0, 2.0, 3.1, 3.0, 5.0, 6.0, 7.0, 8.0, 9.0]])
    y = np.array([3.05])
    assert cdf(crossed, y) == pytest.approx(cdf(np.sort(crossed, axis=1), y))


def test_equal_quantiles_make_a_step_and_a_flat_forecast_flags_any_change() -> None:
    step = np.array([[1.0, 2.0, 3.0, 3.0, 3.0, 6.0, 7.0, 8.0, 9.0]])
    assert cdf(step, np.array([3.0]))[0] == pytest.approx(0.4), "the middle of levels 0.3 to 0.5"
    flat = np.full((3, 9), 5.0)
    assert anomaly_probability(flat, np.array([5.0, 4.999, 5.001])).tolist() == [0.0, 1.0, 1.0]
    assert [b[0] for b in bounds(flat[:1])] == [5.0, 5.0]


def test_a_missing_observation_has_no_probability() -> None:
    q = laplace_quantiles(0, 1)
    assert np.isnan(anomaly_probability(np.repeat(q, 2, axis=0), np.array([np.nan, 0.0]))).tolist() == [True, False]


def test_bad_input_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"expected one row of 9 quantiles .* got shape \(2, 3\)"):
        cdf(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        bounds(laplace_quantiles(0, 1), 1.0)


quantile_rows = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=9, max_size=9).map(sorted)


@settings(max_examples=300, deadline=None)
@given(q=quantile_rows, ys=st.lists(st.floats(-2e6, 2e6, allow_nan=False), min_size=2, max_size=2),
       threshold=st.floats(0.01, 0.999))
def test_the_distribution_is_a_distribution_and_flags_agree_with_bounds(q: list[float], ys: list[float],
                                                                        threshold: float) -> None:
    rows = np.array([q, q])
    y = np.sort(np.array(ys))
    f = cdf(rows, y)
    assert ((f >= 0) & (f <= 1)).all() and f[0] <= f[1] + 1e-12, "a CDF: in [0, 1], never decreasing"
    p = anomaly_probability(rows, y)
    lower, upper = bounds(rows, threshold)
    outside = (y < lower - 1e-6 * (1 + abs(lower))) | (y > upper + 1e-6 * (1 + abs(upper)))
    inside = (y > lower + 1e-6 * (1 + abs(lower))) & (y < upper - 1e-6 * (1 + abs(upper)))
    assert (p[outside] >= threshold - 1e-9).all(), "beyond the bounds is an anomaly"
    assert (p[inside] < threshold + 1e-9).all(), "inside them is not"
