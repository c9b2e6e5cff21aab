"""How surprising an observation is, given the forecast's quantiles at its step: the distribution the
quantiles imply, the anomaly probability, and the bounds at a threshold.

The distribution (the "tail model"), per forecast step, from the nine quantiles q10..q90:
- the quantiles are sorted first: a quantile head may cross its own levels by a hair, and sorting is the
  rearrangement that keeps every level's value from the same set (Chernozhukov et al., 2010);
- between q10 and q90 the CDF is linear between neighbouring quantiles (F(q10) = 0.1, ..., F(q90) = 0.9);
  where several quantiles are equal the CDF jumps there, and an observation exactly at that value takes
  the middle of the jump;
- beyond q10 and q90 the tails are exponential (Laplace): F(y) = 0.1 exp((y - q10) / b_low) below q10 and
  1 - 0.1 exp(-(y - q90) / b_high) above q90, with b_low = (q20 - q10) / ln 2 and b_high = (q90 - q80) / ln 2,
  the scales at which a Laplace distribution has exactly those outer quantiles. A Laplace tail is heavier
  than a normal one: a point far outside the band is surprising, not impossible. A side whose outer
  quantiles are equal has no spread to fit: the distribution ends there, and anything beyond is certain
  to be an anomaly.

The anomaly probability is the mass of the central interval that just reaches the observation,
``|2 F(y) - 1|``: 0 at the median, 0.8 at q10 or q90, 1 far outside. An observation is an anomaly when it
is at least ``threshold`` (BigQuery's default 0.95), i.e. when it lies at or outside the central
``threshold`` interval, whose ends ``bounds`` returns. A missing observation has no probability (NaN) and
is never an anomaly.
"""

from __future__ import annotations

import numpy as np

from pipeline.contracts import QUANTILE_LEVELS

__all__ = ["DEFAULT_THRESHOLD", "LEVELS", "anomaly_probability", "bounds", "cdf"]

DEFAULT_THRESHOLD = 0.95
LEVELS = np.asarray(QUANTILE_LEVELS, dtype=np.float64) / 100  # 0.1 .. 0.9
_EDGE = LEVELS[0]  # the mass of each tail beyond the outer quantiles (0.1)


def _prepared(quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The quantiles sorted per row, and each row's lower and upper tail scale."""
    q = np.sort(np.asarray(quantiles, dtype=np.float64), axis=1)
    if q.ndim != 2 or q.shape[1] != len(LEVELS):
        raise ValueError(f"expected one row of {len(LEVELS)} quantiles ({QUANTILE_LEVELS}) per point, got "
                         f"shape {q.shape}")
    return q, (q[:, 1] - q[:, 0]) / np.log(2), (q[:, -1] - q[:, -2]) / np.log(2)


def cdf(quantiles: np.ndarray, y: np.ndarray) -> np.ndarray:
    """F(y) of each point (row of ``quantiles``) under the tail model; NaN where ``y`` is NaN."""
    q, b_low, b_high = _prepared(quantiles)
    y = np.asarray(y, dtype=np.float64)
    below = (q < y[:, None]).sum(axis=1)  # quantiles strictly below y
    at_or_below = (q <= y[:, None]).sum(axis=1)
    rows = np.arange(len(y))
    result = np.full(len(y), np.nan)
    on_quantile = at_or_below > below  # y equals one or more quantiles: the middle of their levels
    result[on_quantile] = (LEVELS[below[on_quantile]] + LEVELS[at_or_below[on_quantile] - 1]) / 2
    inside = ~on_quantile & (below > 0) & (below < len(LEVELS))  # strictly between two quantiles
    k = below[inside]
    lo, hi = q[rows[inside], k - 1], q[rows[inside], k]
    result[inside] = LEVELS[k - 1] + (y[inside] - lo) / (hi - lo) * (LEVELS[k] - LEVELS[k - 1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        low = ~on_quantile & (below == 0) & ~np.isnan(y)
        result[low] = np.where(b_low[low] > 0, _EDGE * np.exp((y[low] - q[low, 0]) / b_low[low]), 0.0)
        high = ~on_quantile & (below == len(LEVELS))
        result[high] = np.where(b_high[high] > 0, 1 - _EDGE * np.exp(-(y[high] - q[high, -1]) / b_high[high]),
                                1.0)
    return result


def anomaly_probability(quantiles: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``|2 F(y) - 1|`` per point: the central mass the observation lies at the edge of; NaN where y is."""
    return np.abs(2 * cdf(quantiles, y) - 1)


def bounds(quantiles: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """The ends of each point's central ``threshold`` interval: a point is an anomaly at ``threshold``
    exactly when its observation is at or outside them."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold!r}; 0.95 flags what "
                         "falls outside the central 95% of the forecast")
    q, b_low, b_high = _prepared(quantiles)
    return _inverse(q, b_low, b_high, (1 - threshold) / 2), _inverse(q, b_low, b_high, (1 + threshold) / 2)


def _inverse(q: np.ndarray, b_low: np.ndarray, b_high: np.ndarray, p: float) -> np.ndarray:
    if p < _EDGE:
        return q[:, 0] + b_low * np.log(p / _EDGE)
    if p > 1 - _EDGE:
        return q[:, -1] - b_high * np.log((1 - p) / _EDGE)
    k = min(int(np.searchsorted(LEVELS, p, side="right")), len(LEVELS) - 1)  # LEVELS[k-1] <= p < LEVELS[k]
    weight = (p - LEVELS[k - 1]) / (LEVELS[k] - LEVELS[k - 1])
    return q[:, k - 1] + weight * (q[:, k] - q[:, k - 1])
