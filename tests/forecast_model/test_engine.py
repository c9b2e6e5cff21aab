"""The engine against the `timesfm` API (the reference), and its batch invariance."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from forecast_model import EngineConfig, ResolvedCheckpoint, TimesFmEngine, load_engine
from forecast_model.decoder import last_patch_forecast

LENGTHS = [10, 31, 32, 33, 64, 100, 257, 511, 512, 513, 1000, 2049, 3000]


def make_series(seed: int = 0) -> list[np.ndarray]:
    """Random walks of mixed lengths, some with leading, inner and trailing gaps."""
    rng = np.random.default_rng(seed)
    series = [rng.normal(size=n).cumsum() + rng.uniform(-50, 50) for n in LENGTHS]
    series[3][:5] = np.nan
    series[5][40:55] = np.nan
    series[6][-3:] = np.nan
    series[7][[3, 90, 91, 200]] = np.inf
    return series


def assert_close_per_series(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-5) -> None:
    """Relative error per series: max |a - b| over the series, divided by max |b| of that series."""
    for index, (a, b) in enumerate(zip(actual, expected, strict=True)):
        error = np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)
        assert error <= rel, f"series {index} (length {LENGTHS[index] if len(actual) == len(LENGTHS) else '?'}) " \
                             f"differs from the reference: relative error {error:.2e} > {rel:.0e}"


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: ResolvedCheckpoint) -> TimesFmEngine:
    return load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu", batch_size=4))


def timesfm_api(checkpoint: ResolvedCheckpoint, horizon: int):
    with contextlib.redirect_stdout(io.StringIO()):
        import timesfm
    hp = checkpoint.hparams
    return timesfm.TimesFm(
        hparams=timesfm.TimesFmHparams(backend="cpu", per_core_batch_size=32, horizon_len=horizon,
                                       num_layers=hp.num_layers, model_dims=hp.model_dims, num_heads=hp.num_heads,
                                       context_len=hp.context_len, use_positional_embedding=False),
        checkpoint=timesfm.TimesFmCheckpoint(version="torch", path=str(checkpoint.weights)),
    )


def with_layout(engine: TimesFmEngine, packed: bool, batch_size: int = 4) -> TimesFmEngine:
    return TimesFmEngine(engine.module, engine.hparams, engine.device, batch_size, packed=packed)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("horizon", [24, 300])
def test_engine_equals_timesfm_api_in_fp32(engine: TimesFmEngine, tiny_checkpoint: ResolvedCheckpoint,
                                           horizon: int, packed: bool) -> None:
    series = make_series()
    freq = [i % 3 for i in range(len(series))]
    api_point, api_full = timesfm_api(tiny_checkpoint, horizon).forecast([s.copy() for s in series], freq=freq)
    result = with_layout(engine, packed).forecast(series, horizon, freq)
    assert result.point.shape == (len(series), horizon)
    assert result.quantiles.shape == (len(series), horizon, 9)
    assert np.isfinite(result.quantiles).all(), "engine produced non-finite forecasts"
    assert_close_per_series(result.point, api_point)
    assert_close_per_series(result.quantiles, api_full[:, :, 1:])
    assert_close_per_series(result.mean, api_full[:, :, 0])


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_a_series_alone_equals_the_same_series_in_a_batch(engine: TimesFmEngine, packed: bool) -> None:
    series = make_series(seed=1)
    engine = with_layout(engine, packed, batch_size=32)
    batched = engine.forecast(series, 150, [1] * len(series))
    for index, values in enumerate(series):
        alone = engine.forecast([values], 150, [1])
        error = np.abs(alone.quantiles[0] - batched.quantiles[index]).max() / np.abs(batched.quantiles[index]).max()
        assert error <= 1e-5, f"series {index} alone differs from the batch: relative error {error:.2e}"


def test_packed_layout_in_any_order_equals_the_padded_one(engine: TimesFmEngine) -> None:
    """Unsorted lengths, neighbours of equal length (one attention run) and one-patch series, as one block."""
    rng = np.random.default_rng(7)
    lengths = [700, 40, 33, 64, 64, 64, 5, 700, 1, 2048, 300, 301]
    width = 2048
    values = torch.zeros(len(lengths), width)
    padding = torch.ones(len(lengths), width)
    for row, length in enumerate(lengths):
        values[row, width - length:] = torch.from_numpy(rng.normal(size=length).cumsum() + 10).float()
        padding[row, width - length:] = 0.0
    freq = torch.from_numpy(rng.integers(0, 3, size=(len(lengths), 1)))
    with torch.inference_mode():
        packed = last_patch_forecast(engine.module, values, padding, freq, packed=True)
        padded = last_patch_forecast(engine.module, values, padding, freq, packed=False)
    assert packed.shape == padded.shape == (len(lengths), engine.hparams.output_patch_len, 10)
    assert_close_per_series(packed.numpy(), padded.numpy())


def test_packed_is_the_default_on_cpu_only(engine: TimesFmEngine) -> None:
    assert TimesFmEngine(engine.module, engine.hparams, torch.device("cpu")).packed
    # The padded layout is what was measured on GPUs (docs/PERFORMANCE.md); nothing touches CUDA here.
    assert not TimesFmEngine(engine.module, engine.hparams, torch.device("cuda")).packed


def test_results_come_back_in_input_order(engine: TimesFmEngine) -> None:
    series = make_series(seed=2)
    forward = engine.forecast(series, 16)
    backward = engine.forecast(series[::-1], 16)
    np.testing.assert_allclose(backward.point[::-1], forward.point, rtol=1e-5, atol=1e-3,
                               err_msg="reversing the input did not reverse the output")


def test_context_len_keeps_only_the_latest_points(engine: TimesFmEngine) -> None:
    values = make_series(seed=3)[-1]  # 3000 points
    clipped = engine.forecast([values], 32, context_len=96)
    tail_only = engine.forecast([values[-96:]], 32)
    np.testing.assert_allclose(clipped.point, tail_only.point, rtol=1e-6,
                               err_msg="context_len=96 should forecast from the last 96 points only")


def test_point_forecast_is_the_median_quantile(engine: TimesFmEngine) -> None:
    result = engine.forecast(make_series()[:3], 8)
    np.testing.assert_array_equal(result.point, result.quantiles[:, :, 4])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"horizon": 0}, "horizon must be positive"), ({"horizon": 4, "freq": [5]}, "freq must hold")],
)
def test_bad_arguments_are_rejected(engine: TimesFmEngine, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine.forecast([np.arange(50.0)], **kwargs)


def test_empty_series_is_rejected_with_its_index(engine: TimesFmEngine) -> None:
    with pytest.raises(ValueError, match="Series 1 must be a non-empty"):
        engine.forecast([np.arange(50.0), np.array([])], 8)


def test_out_of_memory_backs_off_and_keeps_results(engine: TimesFmEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import forecast_model.engine as engine_module

    series = make_series(seed=4)
    expected = engine.forecast(series, 40)
    real = engine_module.last_patch_forecast
    calls: list[int] = []

    def small_memory(module, values, *args, **kwargs):
        calls.append(values.shape[0])
        if values.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return real(module, values, *args, **kwargs)

    monkeypatch.setattr(engine_module, "last_patch_forecast", small_memory)
    original = engine.batch_size
    try:
        result = engine.forecast(series, 40)
        assert engine.batch_size == 2, "the engine should remember the batch size that fits"
    finally:
        engine.batch_size = original
    assert max(calls) == 4 and all(c <= 2 for c in calls[1:] if c != 4), calls
    assert_close_per_series(result.quantiles, expected.quantiles)


def test_bf16_is_close_and_finite_tf32_is_fp32_on_cpu(tiny_checkpoint: ResolvedCheckpoint) -> None:
    series = make_series(seed=5)
    module = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu")).module
    results = {p: TimesFmEngine(module, tiny_checkpoint.hparams, torch.device("cpu"), 8, precision=p).forecast(
        series, 24).quantiles for p in ("fp32", "tf32", "bf16")}
    np.testing.assert_array_equal(results["tf32"], results["fp32"])
    assert np.isfinite(results["bf16"]).all(), "bf16 produced non-finite values"
    assert_close_per_series(results["bf16"], results["fp32"], rel=5e-2)


def test_batch_size_on_cpu_is_256(tiny_checkpoint: ResolvedCheckpoint) -> None:
    from forecast_model.engine import choose_batch_size

    assert choose_batch_size(tiny_checkpoint.hparams, torch.device("cpu")) == 256


def test_packed_batches_stop_at_the_patch_budget(engine: TimesFmEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import forecast_model.engine as engine_module

    series = make_series(seed=6)  # 1 to 64 patches each, 13 series
    expected = with_layout(engine, packed=False, batch_size=32).forecast(series, 20).quantiles
    real = engine_module.last_patch_forecast
    batches: list[tuple[int, int]] = []  # (series, patches) of each batch

    def spy(module, values, padding, *args, **kwargs):
        patches = int((padding.view(padding.shape[0], -1, engine.hparams.input_patch_len).min(-1).values < 0.5).sum())
        batches.append((values.shape[0], patches))
        return real(module, values, padding, *args, **kwargs)

    monkeypatch.setattr(engine_module, "PACKED_PATCH_BUDGET", 70)
    monkeypatch.setattr(engine_module, "last_patch_forecast", spy)
    result = with_layout(engine, packed=True, batch_size=32).forecast(series, 20)
    assert sum(n for n, _ in batches) == len(series)
    assert all(patches <= 70 or n == 1 for n, patches in batches), batches
    assert len(batches) >= 2 and max(n for n, _ in batches) > 1, batches  # 115 patches in all
    assert_close_per_series(result.quantiles, expected)
