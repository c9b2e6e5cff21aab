"""Forecasts with covariates: TimesFM plus an in-context linear regression per series (issue #19).

What the ``timesfm`` API's ``TimesFm.forecast_with_covariates`` computes (module ``xreg_lib``, JAX and
scikit-learn), here in numpy on top of :class:`~forecast_model.TimesFmEngine`, so the engine's batching,
packing and devices apply and nothing imports JAX or scikit-learn.

Interface::

    result = forecast_with_covariates(engine, series, horizon, Covariates(
        dynamic_numerical={"price": [price_0, price_1]},      # per series: context + horizon values
        dynamic_categorical={"promo": [promo_0, promo_1]},    # ints or strings, context + horizon values
        static_numerical={"size": [3.0, 5.0]},                # one value per series
        static_categorical={"region": ["north", "south"]},    # one int or string per series
    ), xreg_mode="xreg + timesfm", normalize=True, ridge=0.0)
    result.result          # ForecastResult: point, mean, quantiles, as TimesFmEngine.forecast
    result.regression      # (n, horizon): the covariates' term in the forecast, in the series' units
    result.effect_names    # ["(intercept)", "price", "size", "promo=0", "promo=1", "region=north", ...]
    result.coefficients    # (n, len(effect_names)), in the series' units; NaN where a name does not apply
    result.unseen_levels   # (n,): horizon levels absent from the series' regression window

A dynamic covariate of series ``i`` holds ``len(series[i]) + horizon`` values: one per context point, then
one per forecast step. A series' context is what the engine uses: leading missing values dropped, then the
last ``context_len`` points; covariates are cut the same way, aligned with the series' end.

The regression of one series (as the API does for a single series; see "One regression per series"):

* **target**: ``"xreg + timesfm"`` regresses the context values; TimesFM then forecasts the residual (the
  context less the regression's fit on it), and the regression on the horizon is added back.
  ``"timesfm + xreg"`` forecasts with TimesFM first, then regresses the context values less TimesFM's own
  forecasts of them (its in-context forecasts: so the first patch of the context, which has none, is left
  out) and adds the regression on the horizon to TimesFM's forecast. (The API's docstring describes the
  two modes the other way round; its code, which this follows, does this.)
* **normalisation** (``normalize``, the API's ``normalize_xreg_target_per_input``): the target is
  standardised per series (mean, and standard deviation unless below 1e-6), and everything mapped back.
* **columns**: an intercept; each numerical covariate (dynamic ones by name, then static ones in the
  order given) standardised over the regression window; each categorical covariate one-hot encoded over
  the levels of the regression window, sorted, the first level dropped when ``ridge`` is 0 (it is the
  reference, coefficient 0); a level only in the horizon (an *unseen* level) encodes as all zeros, so it
  gets the reference level's effect with ``ridge`` 0 and no level effect with ``ridge`` > 0, as in the API.
* **solve**: ``beta = pinv(X'X + ridge * I) X'y`` with the API's cut-off for small eigenvalues (that of
  ``jnp.linalg.pinv`` on its zero-padded float32 matrix: ``10 * K' * eps(float32)`` of the largest, ``K'``
  the column count rounded up to a power of two), so that a rank-deficient design (a covariate constant
  over the window) gets the same minimum-norm solution. The ridge penalises the intercept too, as there.
  Solved in float64, batched: all series with the same window length and column count at once.

**Quantiles and mean** (our choice: the API returns the point forecast only): every output of TimesFM, the
point (median), the mean and the nine quantiles, is shifted by the same regression term, and in
``"xreg + timesfm"`` with normalisation scaled back by the same standard deviation. The API's point
forecast is this module's ``result.point``.

**Missing values** in a series (NaN inside the context) are left out of the regression (their rows get no
weight) and of the normalisation; the engine fills them for TimesFM as :meth:`TimesFmEngine.forecast`
does. Covariates must be finite and complete.

**Effects** (``effect_names``, ``coefficients``): in the series' units, so that, for every horizon step,
``regression = (intercept) + sum(coefficient * numerical value) + sum(coefficient of the step's levels)``.
A numerical covariate's coefficient is per unit of the covariate. A categorical covariate gives one name per
level, ``"<covariate>=<level>"`` (``str(level)``, e.g. ``"promo=1"``, ``"region=north"``): its effect
relative to no level (``ridge`` > 0) or to the reference level, which is listed with coefficient 0
(``ridge`` 0). A level absent from a series' regression window is NaN for that series, as is any name of
another series' covariate levels. ``effect_names`` is the union over the call, intercept first, then
numerical covariates, then categorical levels, sorted per covariate (ints before strings).

**One regression per series**: the API fits one regression over the whole batch (stacked rows, shared
coefficients, numerical columns standardised over the batch, levels encoded over the batch), so a series'
forecast depends on which others are in the call. Here every series gets its own regression, which is
exactly what the API gives when called with that series alone; a forecast does not depend on the batch.
A consequence: a static covariate is constant within a series, so on its own it cannot explain anything. A
static numerical one standardises to a zero column (coefficient 0); a static categorical one has a single
level, dropped as the reference when ``ridge`` is 0, and otherwise a column of ones beside the intercept,
which shares the intercept's effect (and halves its penalty). They are accepted for API parity and for
callers that later pool series.

**Windows**: the regression sees the context the model sees (``context_len``). The API regresses over the
whole given input in ``"xreg + timesfm"`` even beyond the model's context, and misaligns its in-context
forecasts in ``"timesfm + xreg"`` when the input is longer than ``forecast_context_len``; both are the same
as here for inputs within the context.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from forecast_model.engine import ForecastResult, TimesFmEngine
from forecast_model.errors import ConfigurationError, shorten, shorten_names

__all__ = ["INTERCEPT", "CovariateForecast", "Covariates", "XRegMode", "forecast_with_covariates"]

XRegMode = Literal["xreg + timesfm", "timesfm + xreg"]
INTERCEPT = "(intercept)"
_TOL = 1e-6  # the API's: a standard deviation at or below it counts as 1
_EPS32 = float(np.finfo(np.float32).eps)
_SLICE = 512  # series whose design matrices exist at a time: bounds memory (not results)


@dataclasses.dataclass(frozen=True)
class Covariates:
    """Covariates per series, each in the order of the series they go with.

    Attributes:
        dynamic_numerical: name -> one 1-D array per series of ``context + horizon`` finite numbers.
        dynamic_categorical: name -> one 1-D array per series of ``context + horizon`` ints or strings.
        static_numerical: name -> one finite number per series.
        static_categorical: name -> one int or string per series.
    """

    dynamic_numerical: Mapping[str, Sequence[ArrayLike]] = dataclasses.field(default_factory=dict)
    dynamic_categorical: Mapping[str, Sequence[ArrayLike]] = dataclasses.field(default_factory=dict)
    static_numerical: Mapping[str, ArrayLike] = dataclasses.field(default_factory=dict)
    static_categorical: Mapping[str, Sequence[object]] = dataclasses.field(default_factory=dict)

    def kinds(self) -> dict[str, Mapping[str, Any]]:
        """Each kind of covariate by the words messages use for it."""
        return {"dynamic numerical": self.dynamic_numerical, "dynamic categorical": self.dynamic_categorical,
                "static numerical": self.static_numerical, "static categorical": self.static_categorical}


@dataclasses.dataclass(frozen=True)
class CovariateForecast:
    """Forecasts with covariates for ``n`` series, in the order they were given.

    Attributes:
        result: the forecasts, with the shapes of :meth:`TimesFmEngine.forecast`'s.
        regression: ``(n, horizon)`` the covariates' term in the forecast, in the series' units.
        effect_names: the names of ``coefficients``' columns (see the module docstring).
        coefficients: ``(n, len(effect_names))`` in the series' units; NaN where a name does not apply.
        unseen_levels: ``(n,)`` distinct (covariate, level) pairs in the horizon that the series' regression
            window lacks; they get no effect of their own.
    """

    result: ForecastResult
    regression: NDArray[np.float64]
    effect_names: list[str]
    coefficients: NDArray[np.float64]
    unseen_levels: NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class _Column:
    """One regression column: its effect name, where it sorts, and for a numerical one how it was standardised."""

    name: str
    order: tuple[int, bool, int, str] = (0, False, 0, "")
    mean: float = 0.0
    scale: float = 1.0
    numerical: bool = False


@dataclasses.dataclass(frozen=True)
class _Design:
    """One series' regression: its window's design (``rows x K``), the horizon's (``horizon x K``) and target."""

    train: NDArray[np.float64]
    test: NDArray[np.float64]
    target: NDArray[np.float64]
    columns: list[_Column]
    references: list[_Column]  # reference levels (dropped with ridge 0): coefficient 0
    unseen: int


@dataclasses.dataclass(frozen=True)
class _Fit:
    """One series' fitted regression, on the normalised scale, with its design's matrices dropped."""

    ahead: NDArray[np.float64]  # (horizon,) on the horizon
    on_context: NDArray[np.float64]  # (rows,) on the window
    beta: NDArray[np.float64]
    columns: list[_Column]
    references: list[_Column]
    unseen: int


def forecast_with_covariates(
    engine: TimesFmEngine,
    series: Sequence[ArrayLike],
    horizon: int,
    covariates: Covariates,
    *,
    freq: Sequence[int] | None = None,
    context_len: int | None = None,
    xreg_mode: XRegMode = "xreg + timesfm",
    normalize: bool = True,
    ridge: float = 0.0,
) -> CovariateForecast:
    """Forecasts ``horizon`` steps of each series with TimesFM and an in-context regression on covariates.

    Args:
        engine: a loaded engine (:func:`forecast_model.load_engine`).
        series: 1-D arrays of observations, oldest first; NaN marks a missing value.
        horizon: steps to forecast.
        covariates: at least one covariate (see :class:`Covariates`).
        freq: TimesFM frequency code per series (0 high, 1 medium, 2 low); default all 0.
        context_len: keep at most this many trailing points (default: the model's context).
        xreg_mode: ``"xreg + timesfm"`` or ``"timesfm + xreg"`` (module docstring).
        normalize: standardise each series' regression target (the API's ``normalize_xreg_target_per_input``).
        ridge: non-negative ridge penalty.

    Raises:
        ConfigurationError: a wrong mode, ridge, covariate shape or value; the message names the covariate
            and the series, and the fix.
    """
    _check_arguments(xreg_mode, ridge, horizon, covariates, len(series))
    used = min(context_len or engine.hparams.context_len, engine.hparams.context_len)
    values = [_context(index, s, used) for index, s in enumerate(series)]
    lengths = [np.asarray(s).size for s in series]
    inputs = [_series_covariates(covariates, index, length, horizon) for index, length in enumerate(lengths)]
    base: ForecastResult | None = None
    if xreg_mode == "timesfm + xreg":  # regress what TimesFM's forecasts of the context miss
        base, on_context = engine.forecast_on_context(series, horizon, freq, used)
        values = _in_context_residuals(values, on_context.point, engine.hparams.input_patch_len)
    stats = [_stats(v) if normalize else (0.0, 1.0) for v in values]
    targets = [(v - mu) / sd for v, (mu, sd) in zip(values, stats, strict=True)]
    fits = _fit(targets, lengths, inputs, horizon, ridge)
    mu, sd = (np.array(column) for column in zip(*stats, strict=True))
    regression = np.stack([f.ahead for f in fits]) * sd[:, None] + mu[:, None]
    scale = np.ones_like(sd)
    if base is None:  # "xreg + timesfm": TimesFM forecasts the normalised residual, scaled back after
        residuals = [t - f.on_context for t, f in zip(targets, fits, strict=True)]
        base, scale = engine.forecast(residuals, horizon, freq, used), sd
    names, coefficients = _effects(fits, mu, sd)
    return CovariateForecast(result=_combined(base, scale, regression), regression=regression, effect_names=names,
                             coefficients=coefficients, unseen_levels=np.array([f.unseen for f in fits],
                                                                               dtype=np.int64))


def _check_arguments(xreg_mode: str, ridge: float, horizon: int, covariates: Covariates, count: int) -> None:
    """Raises ConfigurationError for a wrong mode, ridge or horizon, no covariate, or a name used twice."""
    if xreg_mode not in get_args(XRegMode):
        raise ConfigurationError(f"xreg_mode must be one of {list(get_args(XRegMode))}, got {shorten(xreg_mode)}.")
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ConfigurationError(f"ridge must be a finite number >= 0, got {ridge!r}.")
    if horizon <= 0:
        raise ConfigurationError(f"horizon must be positive, got {horizon}.")
    names = [name for group in covariates.kinds().values() for name in group]
    if not names:
        raise ConfigurationError("No covariate given: pass at least one in Covariates, or forecast with "
                                 "TimesFmEngine.forecast instead.")
    if repeated := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigurationError(f"Covariate names {shorten_names(repeated)} are used by more than one kind; "
                                 "give each covariate one name.")
    for kind, group in covariates.kinds().items():
        for name, per_series in group.items():
            if len(per_series) != count:
                raise ConfigurationError(f"The {kind} covariate {shorten(name)} has {len(per_series)} entries for "
                                         f"{count} series: give one per series, in their order.")


def _context(index: int, values: ArrayLike, used: int) -> NDArray[np.float64]:
    """The context the engine uses: leading missing values dropped, the last ``used`` points."""
    array = np.asarray(values, dtype=np.float64)
    observed = np.isfinite(array)
    if array.ndim != 1 or not observed.any():
        raise ConfigurationError(f"Series {index} must be a 1-D array with at least one observed value.")
    return np.where(observed, array, np.nan)[int(np.argmax(observed)):][-used:]


def _stats(target: NDArray[np.float64]) -> tuple[float, float]:
    """The API's per-series normalisation: mean and standard deviation (1 at or below 1e-6) of the observed."""
    observed = target[np.isfinite(target)]
    if observed.size == 0:
        return 0.0, 1.0
    sd = float(np.std(observed))
    return float(np.mean(observed)), sd if sd > _TOL else 1.0


def _in_context_residuals(values: list[NDArray[np.float64]], on_context: NDArray[np.float32],
                          patch: int) -> list[NDArray[np.float64]]:
    """Each context less TimesFM's forecast of it: its points after the first patch (the others have none)."""
    width = on_context.shape[1]
    return [v[patch:] - on_context[i, width - max(v.size - patch, 0):] for i, v in enumerate(values)]


Named = list[tuple[str, NDArray]]


def _series_covariates(covariates: Covariates, index: int, length: int, horizon: int) -> tuple[Named, Named]:
    """Series ``index``'s numerical and categorical covariates, checked, each over ``length + horizon`` steps, in
    column order: dynamic ones by name, then static ones in the order given."""
    steps = length + horizon
    numerical = [(n, _dynamic_numerical(n, index, v[index], length, horizon)) for n, v in sorted(
        covariates.dynamic_numerical.items())]
    numerical += [(n, np.full(steps, _static_number(n, index, v))) for n, v in covariates.static_numerical.items()]
    categorical = [(n, _dynamic_categorical(n, index, v[index], length, horizon)) for n, v in sorted(
        covariates.dynamic_categorical.items())]
    categorical += [(n, _static_level(n, index, v, steps)) for n, v in covariates.static_categorical.items()]
    return numerical, categorical


def _design(target: NDArray[np.float64], length: int, horizon: int, numerical: Named, categorical: Named,
            ridge: float) -> _Design:
    """One series' regression over its window: the last ``target.size`` of its ``length`` context points."""
    rows = target.size
    columns, train, test = [_Column(INTERCEPT)], [np.ones(rows)], [np.ones(horizon)]
    for name, full in numerical:
        window = full[length - rows:length]
        mean = float(np.mean(window)) if rows else 0.0
        std = float(np.std(window)) if rows else 0.0
        scale = std if std > _TOL else 1.0
        columns.append(_Column(name, mean=mean, scale=scale, numerical=True))
        train.append((window - mean) / scale)
        test.append((full[length:] - mean) / scale)
    references, unseen = [], 0
    for rank, (name, full) in enumerate(categorical):
        window, ahead = full[length - rows:length], full[length:]
        levels = np.unique(window)
        unseen += int(np.setdiff1d(np.unique(ahead), levels).size)
        if ridge == 0 and levels.size:
            references.append(_level_column(name, rank, levels[0]))
            levels = levels[1:]
        for level in levels:
            columns.append(_level_column(name, rank, level))
            train.append((window == level).astype(np.float64))
            test.append((ahead == level).astype(np.float64))
    return _Design(np.stack(train, axis=1), np.stack(test, axis=1), target, columns, references, unseen)


def _dynamic_numerical(name: str, index: int, values: ArrayLike, length: int, horizon: int) -> NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"The dynamic numerical covariate {shorten(name)} of series {index} must hold "
                                 "numbers; pass a categorical covariate as dynamic_categorical.") from exc
    _check_length("dynamic numerical", name, index, array, length, horizon)
    if not np.isfinite(array).all():
        position = int(np.argmin(np.isfinite(array)))
        raise ConfigurationError(f"The dynamic numerical covariate {shorten(name)} of series {index} has a missing "
                                 f"or infinite value at position {position}: covariates must be known for every "
                                 "context point and forecast step; fill them before forecasting.")
    return array


def _dynamic_categorical(name: str, index: int, values: ArrayLike, length: int, horizon: int) -> NDArray:
    array = _levels(name, index, np.asarray(values), "dynamic categorical")
    _check_length("dynamic categorical", name, index, array, length, horizon)
    return array


def _static_number(name: str, index: int, values: ArrayLike) -> float:
    value = np.asarray(values, dtype=np.float64)[index]
    if not np.isfinite(value):
        raise ConfigurationError(f"The static numerical covariate {shorten(name)} of series {index} is "
                                 f"{float(value)}: give every series a finite value.")
    return float(value)


def _static_level(name: str, index: int, values: Sequence[object], size: int) -> NDArray:
    array = _levels(name, index, np.asarray([values[index]]), "static categorical")
    return np.repeat(array, size)


def _levels(name: str, index: int, array: NDArray, kind: str) -> NDArray:
    """``array`` as ints or strings; anything else (floats, None, mixed types) is refused."""
    if array.dtype.kind == "b":
        return array.astype(np.int64)
    if array.dtype.kind in "iuU":
        return array
    if array.dtype.kind == "O" and array.size and all(isinstance(v, str) for v in array.ravel()):
        return array.astype(str)
    raise ConfigurationError(f"The {kind} covariate {shorten(name)} of series {index} must hold ints or strings, "
                             f"got {array.dtype} values; encode its levels as ints or strings (a numerical "
                             "covariate goes in dynamic_numerical or static_numerical).")


def _check_length(kind: str, name: str, index: int, array: NDArray, length: int, horizon: int) -> None:
    if array.ndim != 1 or array.size != length + horizon:
        raise ConfigurationError(f"The {kind} covariate {shorten(name)} of series {index} has shape {array.shape}; "
                                 f"it needs {length + horizon} values: one per value of the series ({length}) "
                                 f"and one per forecast step ({horizon}).")


def _level_column(name: str, rank: int, level: object) -> _Column:
    """The column of one level, named ``<covariate>=<level>``; levels sort by covariate, then ints, then strings."""
    value = level.item() if isinstance(level, np.generic) else level
    is_text = isinstance(value, str)
    return _Column(f"{name}={value}", (rank, is_text, 0 if is_text else int(cast(int, value)), str(value)))


def _fit(targets: list[NDArray[np.float64]], lengths: list[int], inputs: list[tuple[Named, Named]], horizon: int,
         ridge: float) -> list[_Fit]:
    """Every series' regression, ``_SLICE`` series at a time; within a slice, all series whose windows have the
    same length and column count are solved as one stack."""
    fits: list[_Fit] = []
    for start in range(0, len(targets), _SLICE):
        designs = [_design(targets[i], lengths[i], horizon, *inputs[i], ridge)
                   for i in range(start, min(start + _SLICE, len(targets)))]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, design in enumerate(designs):
            groups.setdefault(design.train.shape, []).append(index)
        betas: list[NDArray[np.float64]] = [np.empty(0)] * len(designs)
        for members in groups.values():
            solved = _ridge_solve(np.stack([designs[i].train for i in members]),
                                  np.stack([designs[i].target for i in members]), ridge)
            for index, beta in zip(members, solved, strict=True):
                betas[index] = beta
        fits += [_Fit(d.test @ b, d.train @ b, b, d.columns, d.references, d.unseen)
                 for d, b in zip(designs, betas, strict=True)]
    return fits


def _ridge_solve(x: NDArray[np.float64], y: NDArray[np.float64], ridge: float) -> NDArray[np.float64]:
    """``pinv(X'X + ridge I) X'y`` for a stack ``x`` (g, rows, K), ``y`` (g, rows); NaN targets get no weight.

    Small eigenvalues are cut as ``jnp.linalg.pinv`` does on the API's matrix, zero-padded to a power of two
    columns, in float32: below ``10 * K' * eps(float32)`` times the largest (the padding's own eigenvalues,
    ``ridge``, count for the largest).
    """
    observed = np.isfinite(y)
    x_obs = x * observed[..., None]
    xt = np.swapaxes(x_obs, 1, 2)
    gram = xt @ x_obs + ridge * np.eye(x.shape[2])
    moment = (xt @ np.where(observed, y, 0.0)[..., None])[..., 0]
    padded = 2 ** math.ceil(math.log2(x.shape[2]))
    eigenvalues, vectors = np.linalg.eigh(gram)
    largest = np.abs(eigenvalues).max(axis=1, keepdims=True)
    if padded > x.shape[2]:
        largest = np.maximum(largest, ridge)
    keep = np.abs(eigenvalues) > 10.0 * padded * _EPS32 * largest
    inverse = np.where(keep, 1.0 / np.where(keep, eigenvalues, 1.0), 0.0)
    projected = (np.swapaxes(vectors, 1, 2) @ moment[..., None])[..., 0]
    return (vectors @ (inverse * projected)[..., None])[..., 0]


def _effects(fits: list[_Fit], mu: NDArray[np.float64],
             sd: NDArray[np.float64]) -> tuple[list[str], NDArray[np.float64]]:
    """Effect names over the call and each series' coefficients in the series' units (module docstring)."""
    per_series = [_series_effects(f, m, s) for f, m, s in zip(fits, mu, sd, strict=True)]
    numerical = list(dict.fromkeys(c.name for f in fits for c in f.columns if c.numerical))
    levels = {c.name: c.order for f in fits for c in (*f.columns[1:], *f.references) if not c.numerical}
    names = [INTERCEPT, *numerical, *sorted(levels, key=levels.__getitem__)]
    position = {name: i for i, name in enumerate(names)}
    coefficients = np.full((len(fits), len(names)), np.nan)
    for row, effects in enumerate(per_series):
        coefficients[row, [position[n] for n in effects]] = list(effects.values())
    return names, coefficients


def _series_effects(fit: _Fit, mu: float, sd: float) -> dict[str, float]:
    effects = {column.name: 0.0 for column in fit.references}
    intercept = float(fit.beta[0])
    for column, value in zip(fit.columns[1:], fit.beta[1:], strict=True):
        effects[column.name] = sd * float(value) / column.scale
        intercept -= float(value) * column.mean / column.scale
    effects[INTERCEPT] = sd * intercept + mu
    return effects


def _combined(base: ForecastResult, scale: NDArray[np.float64], shift: NDArray[np.float64]) -> ForecastResult:
    """``base * scale + shift`` (per series; ``shift`` per step) on the point, the mean and every quantile."""
    def apply(values: NDArray[np.float32]) -> NDArray[np.float32]:
        if values.ndim == 3:  # the quantiles: (n, horizon, 9)
            return (values * scale[:, None, None] + shift[:, :, None]).astype(np.float32)
        return (values * scale[:, None] + shift).astype(np.float32)

    return ForecastResult(point=apply(base.point), mean=apply(base.mean), quantiles=apply(base.quantiles))
