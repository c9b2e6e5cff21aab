"""Per-series preparation, identical to what ``TimesFmBase.forecast`` does before inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["fill_missing", "prepare_contexts", "round_up"]


def fill_missing(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Strips leading missing values and linearly interpolates the others, as the ``timesfm`` API does.

    Infinite values count as missing. Trailing gaps take the last observed value; a series with no
    observed value becomes zeros (the API's behaviour; callers should reject such series first).
    """
    if np.isfinite(values).all():
        return values
    values = np.where(np.isfinite(values), values, np.nan)
    observed = ~np.isnan(values)
    if not observed.any():
        return np.zeros_like(values)
    values = values[int(np.argmax(observed)):].copy()
    missing = np.isnan(values)
    if missing.any():
        positions = np.arange(values.size)
        values[missing] = np.interp(positions[missing], positions[~missing], values[~missing])
    return values


def prepare_contexts(series: Sequence[ArrayLike], context_len: int) -> list[NDArray[np.float64]]:
    """Fills missing values, then keeps the last ``context_len`` points of each series."""
    contexts = []
    for index, values in enumerate(series):
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"Series {index} must be a non-empty 1-D array, got shape {array.shape}.")
        contexts.append(fill_missing(array)[-context_len:])
    return contexts


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``value``."""
    return -(-value // multiple) * multiple
