"""Forecasts with covariates against the `timesfm` API's ``forecast_with_covariates`` (JAX, scikit-learn).

The API fits one regression over the whole batch it is given; ``forecast_with_covariates`` fits one per
series, which is what the API gives for a series called alone. So every series is compared with an API
call on that series alone. The API needs JAX and scikit-learn (the dev extra); the library uses neither.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import subprocess
import sys

import numpy as np
import pytest

from forecast_model import (
    INTERCEPT,
    ConfigurationError,
    Covariates,
    EngineConfig,
    ResolvedCheckpoint,
    TimesFmEngine,
    forecast_with_covariates,
    load_engine,
)
from tests.conftest import REPO, require

HORIZON = 24
LENGTHS = [45, 130, 512, 700]  # 700: beyond the tiny model's context of 512, cut to it
RELATIVE = 1e-4
KINDS = ["dynamic_numerical", "dynamic_categorical", "static_numerical", "static_categorical", "all"]


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: ResolvedCheckpoint) -> TimesFmEngine:
    return load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu", batch_size=4))


@functools.cache
def timesfm_api(weights: str, num_layers: int, model_dims: int, context_len: int, horizon: int):
    with contextlib.redirect_stdout(io.StringIO()):
        import timesfm
    return timesfm.TimesFm(
        hparams=timesfm.TimesFmHparams(backend="cpu", per_core_batch_size=32, horizon_len=horizon,
                                       num_layers=num_layers, model_dims=model_dims, num_heads=16,
                                       context_len=context_len, use_positional_embedding=False),
        checkpoint=timesfm.TimesFmCheckpoint(version="torch", path=weights),
    )


def api_for(checkpoint: ResolvedCheckpoint, horizon: int = HORIZON):
    require(all(importlib.util.find_spec(m) for m in ("jax", "sklearn")),
            "the timesfm API's forecast_with_covariates needs JAX and scikit-learn: ./setup.sh init installs them")
    hp = checkpoint.hparams
    return timesfm_api(str(checkpoint.weights), hp.num_layers, hp.model_dims, hp.context_len, horizon)


def make_case(seed: int = 0, lengths: list[int] = LENGTHS, horizon: int = HORIZON) -> tuple[list, Covariates]:
    """Series driven by their covariates (so the regression has something to find), with every kind."""
    rng = np.random.default_rng(seed)
    price, temp, promo, weekday = [], [], [], []
    series = []
    for length in lengths:
        steps = length + horizon
        price.append(rng.uniform(1, 5, steps))
        temp.append(10 + 5 * np.sin(np.arange(steps) / 7) + rng.normal(size=steps))
        promo.append(rng.integers(0, 3, steps))
        weekday.append(np.array(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])[np.arange(steps) % 7])
        walk = rng.normal(size=length).cumsum() + rng.uniform(-20, 20)
        series.append(walk - 2.0 * price[-1][:length] + 3.0 * (promo[-1][:length] == 2) + 0.5 * temp[-1][:length])
    covariates = Covariates(
        dynamic_numerical={"price": price, "temp": temp},
        dynamic_categorical={"promo": promo, "weekday": weekday},
        static_numerical={"size": rng.uniform(1, 9, len(lengths))},
        static_categorical={"region": [["north", "south", "east"][i % 3] for i in range(len(lengths))]},
    )
    return series, covariates


def only(covariates: Covariates, kind: str) -> Covariates:
    if kind == "all":
        return covariates
    return Covariates(**{kind: getattr(covariates, kind)})


def api_single(api, values: np.ndarray, covariates: Covariates, index: int, context_len: int, **kwargs):
    """The API on series ``index`` alone, its context and covariates cut to the model's context."""
    length = values.size
    cut = max(length - context_len, 0)
    outputs, xregs = api.forecast_with_covariates(
        inputs=[values[cut:]],
        dynamic_numerical_covariates={n: [v[index][cut:]] for n, v in covariates.dynamic_numerical.items()} or None,
        dynamic_categorical_covariates={n: [v[index][cut:]] for n, v in covariates.dynamic_categorical.items()}
        or None,
        static_numerical_covariates={n: [v[index]] for n, v in covariates.static_numerical.items()} or None,
        static_categorical_covariates={n: [v[index]] for n, v in covariates.static_categorical.items()} or None,
        **kwargs,
    )
    return np.asarray(outputs[0]), np.asarray(xregs[0])


def relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


@pytest.mark.parametrize("ridge", [0.0, 0.5], ids=["ols", "ridge"])
@pytest.mark.parametrize("normalize", [True, False], ids=["normalised", "raw"])
@pytest.mark.parametrize("mode", ["xreg + timesfm", "timesfm + xreg"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_series_equals_the_api_on_that_series_alone(engine: TimesFmEngine, tiny_checkpoint: ResolvedCheckpoint,
                                                         kind: str, mode: str, normalize: bool, ridge: float) -> None:
    series, covariates = make_case()
    covariates = only(covariates, kind)
    ours = forecast_with_covariates(engine, series, HORIZON, covariates, xreg_mode=mode, normalize=normalize,
                                    ridge=ridge)
    assert ours.result.point.shape == (len(series), HORIZON) and ours.result.quantiles.shape == (len(series),
                                                                                                   HORIZON, 9)
    api = api_for(tiny_checkpoint)
    context = engine.hparams.context_len
    worst = 0.0
    for index, values in enumerate(series):
        expected, _ = api_single(api, values, covariates, index, context, xreg_mode=mode,
                                 normalize_xreg_target_per_input=normalize, ridge=ridge)
        error = relative(ours.result.point[index], expected)
        worst = max(worst, error)
        assert error <= RELATIVE, f"series {index} (length {values.size}): relative difference {error:.2e} from " \
                                  f"the API > {RELATIVE:.0e}"
    print(f"largest relative difference from the API: {worst:.2e}")  # shown with -s


@pytest.mark.parametrize("mode", ["xreg + timesfm", "timesfm + xreg"])
def test_the_regression_term_equals_the_apis_and_its_effects_rebuild_it(
        engine: TimesFmEngine, tiny_checkpoint: ResolvedCheckpoint, mode: str) -> None:
    series, covariates = make_case(seed=1)
    ours = forecast_with_covariates(engine, series, HORIZON, covariates, xreg_mode=mode, normalize=True)
    api = api_for(tiny_checkpoint)
    context = engine.hparams.context_len
    for index, values in enumerate(series):
        _, xregs = api_single(api, values, covariates, index, context, xreg_mode=mode)
        if mode == "xreg + timesfm":  # the API returns this mode's term on the normalised scale
            window = values[-context:]
            xregs = xregs * window.std() + window.mean()
        error = relative(ours.regression[index], xregs)
        assert error <= RELATIVE, f"series {index}: regression term differs from the API's by {error:.2e}"
        rebuilt = np.full(HORIZON, ours.coefficients[index, ours.effect_names.index(INTERCEPT)])
        for name, coefficient in zip(ours.effect_names, ours.coefficients[index], strict=True):
            if name in covariates.dynamic_numerical:
                rebuilt += coefficient * covariates.dynamic_numerical[name][index][values.size:]
            elif name in covariates.static_numerical:
                rebuilt += coefficient * covariates.static_numerical[name][index]
            elif "=" in name and not np.isnan(coefficient):
                covariate, level = name.split("=")
                ahead = (covariates.dynamic_categorical[covariate][index][values.size:]
                         if covariate in covariates.dynamic_categorical
                         else np.repeat(covariates.static_categorical[covariate][index], HORIZON))
                rebuilt += coefficient * (ahead.astype(str) == level)
        np.testing.assert_allclose(rebuilt, ours.regression[index], rtol=1e-9, atol=1e-9 * np.abs(rebuilt).max(),
                                   err_msg=f"series {index}: the effects do not add up to the regression term")


@pytest.mark.parametrize("mode", ["xreg + timesfm", "timesfm + xreg"])
def test_a_horizon_past_one_output_patch_equals_the_api(engine: TimesFmEngine, tiny_checkpoint: ResolvedCheckpoint,
                                                        mode: str) -> None:
    """150 steps: the engine decodes a second patch from its own forecast, as the API does."""
    horizon = 150
    series, covariates = make_case(seed=6, lengths=[90, 400], horizon=horizon)
    ours = forecast_with_covariates(engine, series, horizon, covariates, xreg_mode=mode, ridge=0.1)
    api = api_for(tiny_checkpoint, horizon)
    for index, values in enumerate(series):
        expected, _ = api_single(api, values, covariates, index, engine.hparams.context_len, xreg_mode=mode,
                                 ridge=0.1)
        error = relative(ours.result.point[index], expected)
        assert error <= RELATIVE, f"series {index}: relative difference {error:.2e} from the API > {RELATIVE:.0e}"


def test_quantiles_and_mean_move_with_the_point(engine: TimesFmEngine) -> None:
    series, covariates = make_case(seed=2)
    for mode in ("xreg + timesfm", "timesfm + xreg"):
        ours = forecast_with_covariates(engine, series, HORIZON, covariates, xreg_mode=mode)
        np.testing.assert_array_equal(ours.result.point, ours.result.quantiles[:, :, 4],
                                      err_msg="the point forecast must stay the median")
    plain = engine.forecast(series, HORIZON)
    shifted = forecast_with_covariates(engine, series, HORIZON, covariates, xreg_mode="timesfm + xreg")
    shift = shifted.regression.astype(np.float32)
    np.testing.assert_allclose(shifted.result.quantiles, plain.quantiles + shift[:, :, None], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(shifted.result.mean, plain.mean + shift, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["xreg + timesfm", "timesfm + xreg"])
def test_a_series_alone_equals_the_same_series_in_a_batch(engine: TimesFmEngine, mode: str) -> None:
    series, covariates = make_case(seed=3, lengths=[45, 130, 130, 512, 300, 64, 700])
    batched = forecast_with_covariates(engine, series, HORIZON, covariates, xreg_mode=mode)
    for index, values in enumerate(series):
        alone = forecast_with_covariates(engine, [values], HORIZON, pick(covariates, index), xreg_mode=mode)
        error = relative(alone.result.quantiles[0], batched.result.quantiles[index])
        assert error <= 1e-6, f"series {index} alone differs from the batch: relative difference {error:.2e}"
        names = [batched.effect_names.index(n) for n in alone.effect_names]
        if mode == "xreg + timesfm":  # the regression comes before the engine: bitwise the same
            np.testing.assert_array_equal(alone.coefficients[0], batched.coefficients[index, names],
                                          err_msg=f"series {index}: coefficients depend on the batch")
        else:  # it regresses on the engine's in-context forecasts, whose float32 bits depend on the batch
            np.testing.assert_allclose(alone.coefficients[0], batched.coefficients[index, names], rtol=1e-6,
                                       atol=1e-6 * np.abs(values).max(),
                                       err_msg=f"series {index}: coefficients depend on the batch")
        assert np.isnan(np.delete(batched.coefficients[index], names)).all(), "names of other series must be NaN"
        assert alone.unseen_levels[0] == batched.unseen_levels[index]


def test_solving_in_slices_changes_nothing(engine: TimesFmEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import forecast_model.covariates as module

    series, covariates = make_case(seed=7, lengths=[60, 60, 60, 90, 60])
    whole = forecast_with_covariates(engine, series, HORIZON, covariates)
    monkeypatch.setattr(module, "_SLICE", 2)
    sliced = forecast_with_covariates(engine, series, HORIZON, covariates)
    np.testing.assert_array_equal(sliced.coefficients, whole.coefficients, err_msg="slices changed coefficients")
    np.testing.assert_array_equal(sliced.result.quantiles, whole.result.quantiles, err_msg="slices changed forecasts")


def pick(covariates: Covariates, index: int) -> Covariates:
    return Covariates(**{kind: {n: [v[index]] for n, v in getattr(covariates, kind).items()}
                         for kind in ("dynamic_numerical", "dynamic_categorical", "static_numerical",
                                      "static_categorical")})


@pytest.mark.filterwarnings("ignore:Found unknown categories:UserWarning")  # scikit-learn, in the API
def test_levels_unseen_in_the_context_are_counted_and_match_the_api(engine: TimesFmEngine,
                                                                     tiny_checkpoint: ResolvedCheckpoint) -> None:
    rng = np.random.default_rng(4)
    series = [rng.normal(size=80).cumsum(), rng.normal(size=90).cumsum()]
    promo = [np.r_[rng.integers(0, 2, 80), [2, 2, 3, 0] * 6],  # 2 and 3 only in the horizon
             np.r_[rng.integers(0, 3, 90), [1] * 24]]
    colour = [np.r_[np.array(["red", "blue"])[rng.integers(0, 2, 80)], ["green"] * 24], np.array(["red"] * 114)]
    covariates = Covariates(dynamic_categorical={"promo": promo, "colour": colour})
    api = api_for(tiny_checkpoint)
    for ridge in (0.0, 1.0):
        ours = forecast_with_covariates(engine, series, HORIZON, covariates, ridge=ridge)
        assert ours.unseen_levels.tolist() == [3, 0], ours.unseen_levels
        for index, values in enumerate(series):
            expected, _ = api_single(api, values, covariates, index, 512, ridge=ridge)
            assert relative(ours.result.point[index], expected) <= RELATIVE, f"series {index}, ridge {ridge}"
        row = dict(zip(ours.effect_names, ours.coefficients[0], strict=True))
        assert np.isnan(row["promo=2"]), "a level the series' context lacks has no coefficient (seen in another)"
        assert "colour=green" not in row, "a level no context has is no effect name"
        assert (row["promo=0"] == 0.0) == (ridge == 0), "with ridge 0 the first level is the reference, at 0"
    assert ours.effect_names == [INTERCEPT, "colour=blue", "colour=red", "promo=0", "promo=1", "promo=2"]


def test_gaps_in_a_series_are_left_out_of_the_regression(engine: TimesFmEngine) -> None:
    series, covariates = make_case(seed=5, lengths=[200])
    gappy = series[0].copy()
    gappy[[20, 21, 22, 150]] = np.nan
    result = forecast_with_covariates(engine, [gappy], HORIZON, covariates)
    assert np.isfinite(result.result.quantiles).all() and np.isfinite(result.coefficients).all()
    leading = np.r_[[np.nan] * 10, series[0][10:]]
    cut = forecast_with_covariates(engine, [leading], HORIZON, covariates)
    tail = forecast_with_covariates(engine, [series[0][10:]], HORIZON,
                                    Covariates(**{k: {n: [v[0][10:]] for n, v in getattr(covariates, k).items()}
                                                  for k in ("dynamic_numerical", "dynamic_categorical")},
                                               static_numerical=covariates.static_numerical,
                                               static_categorical=covariates.static_categorical))
    np.testing.assert_allclose(cut.result.point, tail.result.point, rtol=1e-6,
                               err_msg="leading missing values must be dropped with their covariates")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"xreg_mode": "xreg only"}, "xreg_mode must be one of"),
        ({"ridge": -1.0}, "ridge must be a finite number >= 0"),
        ({"horizon": 0}, "horizon must be positive"),
        ({"covariates": Covariates()}, "No covariate given"),
        ({"covariates": Covariates(dynamic_numerical={"price": [np.ones(54)]})},
         r"dynamic numerical covariate 'price' of series 0 has shape \(54,\); it needs 58 values: one per value of "
         r"the series \(50\) and one per forecast step \(8\)"),
        ({"covariates": Covariates(dynamic_numerical={"price": [np.r_[np.ones(57), np.nan]]})},
         "'price' of series 0 has a missing or infinite value at position 57"),
        ({"covariates": Covariates(dynamic_categorical={"promo": [np.ones(58)]})},
         "'promo' of series 0 must hold ints or strings, got float64"),
        ({"covariates": Covariates(static_numerical={"size": [1.0, 2.0]})},
         "static numerical covariate 'size' has 2 entries for 1 series"),
        ({"covariates": Covariates(static_numerical={"size": [np.inf]})}, "'size' of series 0 is inf"),
        ({"covariates": Covariates(static_numerical={"a": [1.0]}, static_categorical={"a": ["x"]})},
         r"Covariate names \['a'\] are used by more than one kind"),
    ],
)
def test_bad_arguments_are_refused_naming_the_covariate_and_the_fix(engine: TimesFmEngine, change: dict,
                                                                     message: str) -> None:
    arguments = {"series": [np.arange(50.0)], "horizon": 8,
                 "covariates": Covariates(static_numerical={"size": [1.0]}), **change}
    with pytest.raises(ConfigurationError, match=message):
        forecast_with_covariates(engine, **arguments)


def test_the_library_never_imports_jax_or_sklearn() -> None:
    """JAX is installed here (dev extra, for the reference above): forecasting must still not import it."""
    code = ("import sys, numpy as np\n"
            "from forecast_model import Covariates, EngineConfig, forecast_with_covariates, load_engine, "
            "make_tiny_checkpoint\n"
            "import tempfile\n"
            "path = tempfile.mkdtemp()\n"
            "make_tiny_checkpoint(path)\n"
            "engine = load_engine(EngineConfig(checkpoint=path, device='cpu'))\n"
            "forecast_with_covariates(engine, [np.arange(60.0)], 4, Covariates(dynamic_categorical={'p': "
            "[np.arange(64) % 2]}))\n"
            "print(sorted(m for m in ('jax', 'jaxlib', 'sklearn') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", f"forecasting imported {done.stdout.strip()}"
