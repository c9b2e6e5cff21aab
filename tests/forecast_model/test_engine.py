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
def test_forecasts_on_the_context_equal_the_apis(engine: TimesFmEngine, tiny_checkpoint: ResolvedCheckpoint,
                                                 packed: bool) -> None:
    """What the API's return_forecast_on_context gives before the horizon, for the points that have one."""
    lengths = [10, 33, 64, 100, 300]  # the longest within the context: the width is that less one patch
    rng = np.random.default_rng(8)
    series = [rng.normal(size=n).cumsum() + 5 for n in lengths]
    api = timesfm_api(tiny_checkpoint, 40)
    api_point, api_full = api.forecast([s.copy() for s in series], return_forecast_on_context=True)
    ahead, on_context = with_layout(engine, packed).forecast_on_context(series, 40)
    plain = with_layout(engine, packed).forecast(series, 40)
    # The same arithmetic but the output head on every patch: a matrix product of another shape, so the last
    # float32 bits may differ.
    assert_close_per_series(ahead.quantiles, plain.quantiles, rel=1e-6)
    width = max(lengths) - engine.hparams.input_patch_len  # the API's: context_len - input_patch_len
    api_width = engine.hparams.context_len - engine.hparams.input_patch_len
    assert on_context.quantiles.shape == (len(series), width, 9) and api_point.shape[1] == api_width + 40
    for index, length in enumerate(lengths):
        known = max(length - engine.hparams.input_patch_len, 0)
        assert np.isnan(on_context.point[index, :width - known]).all(), f"series {index}: no forecast there"
        if known:
            assert_close_per_series(on_context.point[index:index + 1, width - known:],
                                    api_point[index:index + 1, api_width - known:api_width])
            assert_close_per_series(on_context.mean[index:index + 1, width - known:],
                                    api_full[index:index + 1, api_width - known:api_width, 0])


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


def test_a_batch_may_reach_the_patch_budget_exactly(engine: TimesFmEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import forecast_model.engine as engine_module

    monkeypatch.setattr(engine_module, "PACKED_PATCH_BUDGET", 70)
    patch = engine.hparams.input_patch_len
    contexts = [np.zeros(10 * patch) for _ in range(9)]  # 10 patches each: 7 fill the budget exactly
    packed = with_layout(engine, packed=True, batch_size=32)
    assert [len(batch) for batch in packed._batches(contexts)] == [7, 2]
    assert [len(batch) for batch in with_layout(engine, packed=False, batch_size=4)._batches(contexts)] == [4, 4, 1]
    huge = [np.zeros(100 * patch), np.zeros(patch)]  # one series over the budget still gets a batch of its own
    assert [len(batch) for batch in packed._batches(huge)] == [1, 1]
    ragged = [np.zeros(patch + 1) for _ in range(40)]  # a point past a whole patch takes a patch of its own
    assert [len(batch) for batch in packed._batches(ragged)] == [32, 8]
    monkeypatch.setattr(engine_module, "PACKED_PATCH_BUDGET", 20)
    assert [len(batch) for batch in packed._batches(ragged)] == [10, 10, 10, 10]


def test_a_last_patch_equal_to_the_padding_sentinel_is_still_forecast(engine: TimesFmEngine) -> None:
    """TimesFM marks points equal to its padding value (1123581321.0) as padding; the packed layout must
    not drop the series' last patch for that, or it would forecast from another series' rows."""
    rng = np.random.default_rng(3)
    series = [rng.normal(size=96).cumsum() for _ in range(3)]
    series[1][-engine.hparams.input_patch_len:] = 1123581321.0
    series[2][:] = 1123581321.0  # no patch of it left unmarked
    padded = with_layout(engine, packed=False).forecast(series, 16)
    packed = with_layout(engine, packed=True).forecast(series, 16)
    assert np.isfinite(packed.quantiles).all()
    assert_close_per_series(packed.quantiles, padded.quantiles)


def test_bf16_runs_the_transformer_in_bfloat16_not_another_half_type(tiny_checkpoint: ResolvedCheckpoint) -> None:
    module = load_engine(EngineConfig(checkpoint=str(tiny_checkpoint.weights.parent), device="cpu")).module
    seen: list[torch.dtype] = []
    hook = module.stacked_transformer.layers[0].self_attn.qkv_proj.register_forward_hook(
        lambda _module, _inputs, output: seen.append(output.dtype))
    try:
        for precision in ("bf16", "fp32"):
            TimesFmEngine(module, tiny_checkpoint.hparams, torch.device("cpu"), 8, precision=precision).forecast(
                make_series(seed=7)[:3], 8)
    finally:
        hook.remove()
    assert set(seen[:len(seen) // 2]) == {torch.bfloat16} and set(seen[len(seen) // 2:]) == {torch.float32}


def test_grouped_query_attention_equals_the_timesfm_api(tmp_path_factory: pytest.TempPathFactory) -> None:
    """32 query heads over TimesFM's 16 key/value heads: the grouped-attention path, against the API."""
    from forecast_model import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path_factory.mktemp("gqa"), num_heads=32, seed=1)
    series = make_series(seed=8)[:6]
    _, api_full = timesfm_api(checkpoint, 16).forecast([s.copy() for s in series], freq=[0] * len(series))
    engine = load_engine(EngineConfig(checkpoint=str(checkpoint.weights.parent), device="cpu", batch_size=4))
    for packed in (True, False):
        result = with_layout(engine, packed).forecast(series, 16)
        assert_close_per_series(result.quantiles, api_full[:, :, 1:])


def test_engine_defaults_and_arguments_are_kept(engine: TimesFmEngine) -> None:
    default = TimesFmEngine(engine.module, engine.hparams, engine.device)
    assert (default.batch_size, default.precision, default.packed) == (32, "fp32", True)
    given = TimesFmEngine(engine.module, engine.hparams, engine.device, 1, precision="bf16", packed=False)
    assert (given.batch_size, given.precision, given.packed) == (1, "bf16", False)
    assert TimesFmEngine(engine.module, engine.hparams, torch.device("cuda"), packed=None).packed is False
    with pytest.raises(ValueError, match=r"^batch_size must be positive, got 0\.$"):
        TimesFmEngine(engine.module, engine.hparams, engine.device, 0)


def test_one_step_horizon_and_float_frequency_codes(engine: TimesFmEngine) -> None:
    series = make_series()[:3]
    result = engine.forecast(series, 1, freq=[0.0, 1.0, 2.0])  # pandas often hands codes over as floats
    expected = engine.forecast(series, 1, freq=[0, 1, 2])
    assert result.point.shape == (3, 1) and result.point.dtype == np.float32 and result.quantiles.dtype == np.float32
    np.testing.assert_array_equal(result.quantiles, expected.quantiles)
    with pytest.raises(ValueError, match=r"^freq must hold one code in \{0, 1, 2\} per series\.$"):
        engine.forecast(series, 4, freq=[0, 1])


def test_padding_right_aligns_in_float32(engine: TimesFmEngine) -> None:
    patch = engine.hparams.input_patch_len
    values, padding = engine._pad([np.arange(1.0, 4.0), np.arange(1.0, patch + 2)])
    assert values.dtype == padding.dtype == torch.float32 and values.shape == (2, 2 * patch)
    assert values[0, -3:].tolist() == [1.0, 2.0, 3.0] and not values[0, :-3].any()
    assert padding[0, :-3].all() and not padding[0, -3:].any() and not padding[1, -(patch + 1):].any()


def test_a_single_series_out_of_memory_is_raised(engine: TimesFmEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("simulated")

    monkeypatch.setattr(engine, "_decode_batch", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        engine._decode_with_backoff([np.arange(50.0)], np.zeros(1, dtype=np.int64), 8)


def test_out_of_memory_on_cuda_frees_the_cache_and_says_so(engine: TimesFmEngine, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    gpu = TimesFmEngine(engine.module, engine.hparams, torch.device("cuda"), 4, packed=True)
    freed: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(True))

    def decode(contexts, codes, horizon, context_width=0):
        if len(contexts) > 1:
            raise torch.OutOfMemoryError("simulated")
        return torch.zeros(1, horizon, 10)

    monkeypatch.setattr(gpu, "_decode_batch", decode)
    with caplog.at_level("WARNING", logger="forecast_model.engine"):
        out = gpu._decode_with_backoff([np.arange(50.0)] * 2, np.zeros(2, dtype=np.int64), 8)
    assert out.shape == (2, 8, 10) and freed == [True] and gpu.batch_size == 1
    assert [r.getMessage() for r in caplog.records] == ["Out of memory with 2 series per batch; retrying with 1"]
    cpu = TimesFmEngine(engine.module, engine.hparams, engine.device, 4)
    monkeypatch.setattr(cpu, "_decode_batch", decode)
    cpu._decode_with_backoff([np.arange(50.0)] * 2, np.zeros(2, dtype=np.int64), 8)
    assert freed == [True], "a CPU engine has no CUDA cache to free"


def test_host_arrays_go_to_a_gpu_pinned_and_without_blocking(engine: TimesFmEngine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple] = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: moves.append(("pinned",)) or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *args, **kwargs: moves.append((args, kwargs)) or self)
    gpu = TimesFmEngine(engine.module, engine.hparams, torch.device("cuda", 1), 4)
    gpu._to_device(np.zeros(3, dtype=np.float32))
    assert moves == [("pinned",), ((torch.device("cuda", 1),), {"non_blocking": True})]
    moves.clear()
    engine._to_device(np.zeros(3, dtype=np.float32))
    assert moves == [], "on CPU the array is used where it is"


@pytest.mark.parametrize(("free_bytes", "fraction", "cap", "expected"), [
    (30_720_000, 0.4, 2048, 100), (30_720_000, 0.2, 2048, 50), (30_720_000, 0.4, 64, 64), (122_880, 0.4, 2048, 1),
    (0, 0.4, 2048, 1), (1 << 40, 0.4, 2048, 2048),
])
def test_batch_size_on_cuda_fits_the_free_memory(tiny_checkpoint: ResolvedCheckpoint, monkeypatch: pytest.MonkeyPatch,
                                                 free_bytes: int, fraction: float, cap: int, expected: int) -> None:
    """The tiny model (context 512, patches 32 in and 128 out, 64 dims) holds 512/32 + 128/32 = 20 tokens of
    24 fp32 buffers of 64 values per series: 122,880 bytes; 0.4 of 30,720,000 free bytes fit 100 series."""
    from forecast_model.engine import choose_batch_size

    hp = tiny_checkpoint.hparams
    assert (hp.context_len, hp.input_patch_len, hp.output_patch_len, hp.model_dims) == (512, 32, 128, 64)
    asked: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: asked.append(device) or (free_bytes, 1 << 40))
    device = torch.device("cuda", 0)
    kwargs = {} if (fraction, cap) == (0.4, 2048) else {"memory_fraction": fraction, "cap": cap}
    assert choose_batch_size(hp, device, **kwargs) == expected and asked == [device]
