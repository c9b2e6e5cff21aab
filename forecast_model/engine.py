"""Batched TimesFM inference that pads each batch only to its own longest series.

The ``timesfm`` API front-pads every series to ``context_len`` (2048 for 2.0-500m), so a batch of short
series mostly computes padding. Here series are sorted by length and cut into batches, and each batch is
padded to its longest member rounded up to a whole patch. Padding is masked inside the decoder and the
patch grid stays aligned to the end of each series, so the result equals the API's (tested in fp32).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from forecast_model.config import DEFAULT_QUANTILES, ModelHparams
from forecast_model.decoder import Precision, last_patch_forecast
from forecast_model.preprocess import prepare_contexts, round_up

__all__ = ["PACKED_PATCH_BUDGET", "ForecastResult", "TimesFmEngine", "choose_batch_size"]

logger = logging.getLogger(__name__)

_MEDIAN = DEFAULT_QUANTILES.index(0.5)
# Packed batches stop at about this many patches: big enough for a CPU's matrix kernels to run at their
# plateau (from ~256 rows), small enough to keep a batch's activations to an estimated ~300 MB at 1280 dims.
PACKED_PATCH_BUDGET = 4096


@dataclasses.dataclass(frozen=True)
class ForecastResult:
    """Forecasts for ``n`` series over ``h`` steps, in the order the series were given.

    Attributes:
        point: ``(n, h)`` point forecast: the median, as the ``timesfm`` API returns by default.
        mean: ``(n, h)`` the model's mean head.
        quantiles: ``(n, h, 9)`` quantiles 0.1 .. 0.9 as the model emits them (they may cross).
    """

    point: NDArray[np.float32]
    mean: NDArray[np.float32]
    quantiles: NDArray[np.float32]


class TimesFmEngine:
    """Runs a loaded TimesFM decoder on many series; create it with :func:`forecast_model.load_engine`."""

    def __init__(self, module: torch.nn.Module, hparams: ModelHparams, device: torch.device,
                 batch_size: int = 32, weights_sha256: str | None = None, precision: Precision = "fp32",
                 packed: bool | None = None) -> None:
        """``packed`` (default: on CPU) runs the transformer on real patches only, stacked into one matrix
        per batch; otherwise each batch is padded to its longest series. Both give the same forecasts."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.module = module
        self.hparams = hparams
        self.device = device
        self.batch_size = batch_size
        self.weights_sha256 = weights_sha256
        self.precision: Precision = precision
        self.packed = device.type == "cpu" if packed is None else packed

    def forecast(
        self,
        series: Sequence[ArrayLike],
        horizon: int,
        freq: Sequence[int] | None = None,
        context_len: int | None = None,
    ) -> ForecastResult:
        """Forecasts ``horizon`` steps after the end of each series.

        Args:
            series: 1-D arrays of observations, oldest first; NaN marks a missing value.
            horizon: steps to forecast; beyond ``output_patch_len`` (128) the model decodes
                autoregressively, feeding back its mean forecast as the ``timesfm`` API does.
            freq: TimesFM frequency code per series (0 high, 1 medium, 2 low); default all 0.
            context_len: keep at most this many trailing points (default: the model's context).
        """
        full, _ = self._run(series, horizon, freq, context_len, on_context=False)
        return _result(full)

    def forecast_on_context(
        self,
        series: Sequence[ArrayLike],
        horizon: int,
        freq: Sequence[int] | None = None,
        context_len: int | None = None,
    ) -> tuple[ForecastResult, ForecastResult]:
        """:meth:`forecast`, plus the model's forecasts of the context itself (its first decoding step).

        The second result is what the ``timesfm`` API's ``return_forecast_on_context`` gives before the
        horizon: each patch's output forecasts the ``input_patch_len`` points after it. Its steps are the last
        points of the contexts, right-aligned with the end of each series' context: as many as the longest
        context used in the call, less one patch (the API: ``context_len - input_patch_len``, whatever the
        series). It is NaN where a series has no such forecast (its first patch and anything before it). The
        forecasts after the context equal :meth:`forecast`'s, up to float32 rounding (the output head then
        runs on every patch, a matrix product of another shape).
        """
        full, lengths = self._run(series, horizon, freq, context_len, on_context=True)
        width = full.shape[1] - horizon
        forecast = np.maximum(lengths - self.hparams.input_patch_len, 0)  # context points with a forecast
        unforecast = np.arange(width)[None, :] < (width - forecast)[:, None]
        on_context = full[:, :width]
        on_context[unforecast] = np.nan
        return _result(full[:, width:]), _result(on_context)

    def _run(self, series: Sequence[ArrayLike], horizon: int, freq: Sequence[int] | None, context_len: int | None,
             on_context: bool) -> tuple[NDArray[np.float32], NDArray[np.intp]]:
        """``(n, [context width +] horizon, 1 + quantiles)`` forecasts, and the context length used per series."""
        if horizon <= 0:
            raise ValueError(f"horizon must be positive, got {horizon}.")
        context_len = min(context_len or self.hparams.context_len, self.hparams.context_len)
        contexts = prepare_contexts(series, context_len)
        codes = np.zeros(len(contexts), dtype=np.int64) if freq is None else np.asarray(freq, dtype=np.int64)
        if codes.shape != (len(contexts),) or not np.isin(codes, (0, 1, 2)).all():
            raise ValueError("freq must hold one code in {0, 1, 2} per series.")
        longest = max((c.size for c in contexts), default=0)
        width = max(longest - self.hparams.input_patch_len, 0) if on_context else 0
        full = np.empty((len(contexts), width + horizon, 1 + len(DEFAULT_QUANTILES)), dtype=np.float32)
        pending = []  # device results are copied back once, at the end, so batches queue without a sync
        for members in self._batches(contexts):
            pending.append((members, self._decode_with_backoff([contexts[i] for i in members], codes[members],
                                                               horizon, context_width=width)))
        for members, out in pending:
            full[members] = out.float().cpu().numpy()
        return full, np.array([c.size for c in contexts], dtype=np.intp)

    def _batches(self, contexts: list[NDArray[np.float64]]) -> Iterator[NDArray[np.intp]]:
        """Indices of each batch: series sorted by length, at most ``batch_size`` of them, and in the packed
        layout also at most about ``PACKED_PATCH_BUDGET`` patches (the first ones; decoding adds more)."""
        lengths = np.array([c.size for c in contexts])
        order = np.argsort(lengths, kind="stable")
        patches = -(-lengths[order] // self.hparams.input_patch_len)
        start = 0
        while start < len(order):
            end = min(start + self.batch_size, len(order))
            if self.packed:  # stop before the patch budget is passed; a batch holds at least one series
                within = np.searchsorted(np.cumsum(patches[start:end]), PACKED_PATCH_BUDGET, side="right")
                end = start + max(1, int(within))
            yield order[start:end]
            start = end

    def _decode_with_backoff(self, contexts: list[NDArray[np.float64]], codes: NDArray[np.int64],
                             horizon: int, context_width: int = 0) -> torch.Tensor:
        """Decodes a batch; on out-of-memory, halves it (and the engine's batch size) and tries again."""
        try:
            return self._decode_batch(contexts, codes, horizon, context_width=context_width)
        except torch.OutOfMemoryError:
            if len(contexts) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(contexts) // 2
            self.batch_size = min(self.batch_size, half)
            logger.warning("Out of memory with %d series per batch; retrying with %d", len(contexts), half)
            return torch.cat([self._decode_with_backoff(contexts[:half], codes[:half], horizon, context_width),
                              self._decode_with_backoff(contexts[half:], codes[half:], horizon, context_width)])

    @torch.inference_mode()
    def _decode_batch(self, contexts: list[NDArray[np.float64]], codes: NDArray[np.int64],
                      horizon: int, context_width: int = 0) -> torch.Tensor:
        """``[B, context_width + horizon, 1 + quantiles]``: the first ``context_width`` steps are the forecasts
        on the context (:meth:`forecast_on_context`), right-aligned; with ``context_width`` 0, none."""
        values, padding = self._pad(contexts)
        freq = torch.from_numpy(codes).reshape(-1, 1).to(self.device)
        step_len = self.hparams.output_patch_len
        outputs = []
        for step in range(-(-horizon // step_len)):
            # The window grows with each decoded patch, up to the model's context, as in the API.
            window = min(values.shape[1], self.hparams.context_len)
            if step == 0 and context_width:
                every = last_patch_forecast(self.module, values[:, -window:], padding[:, -window:], freq,
                                            self.precision, self.packed, all_patches=True)
                outputs.append(self._context_forecasts(every, context_width))
                out = every[:, -1, :step_len, :]
            else:
                out = last_patch_forecast(self.module, values[:, -window:], padding[:, -window:], freq,
                                          self.precision, self.packed)[:, :step_len, :]
            outputs.append(out)
            values = torch.cat([values, out[:, :, 0]], dim=1)
            padding = torch.cat([padding, torch.zeros_like(out[:, :, 0])], dim=1)
        return torch.cat(outputs, dim=1)[:, :context_width + horizon]

    def _context_forecasts(self, every: torch.Tensor, width: int) -> torch.Tensor:
        """The first ``input_patch_len`` steps of each patch's output but the last, as one series per row,
        cut or NaN-padded on the left to ``width`` steps."""
        patch = self.hparams.input_patch_len
        batch, patches, _, channels = every.shape
        flat = every[:, :-1, :patch, :].reshape(batch, (patches - 1) * patch, channels)[:, -width:]
        if flat.shape[1] < width:
            flat = torch.cat([flat.new_full((flat.shape[0], width - flat.shape[1], flat.shape[2]), float("nan")),
                              flat], dim=1)
        return flat

    def _pad(self, contexts: list[NDArray[np.float64]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-aligns the contexts in a zero-filled block whose width is a whole number of patches."""
        width = round_up(max(c.size for c in contexts), self.hparams.input_patch_len)
        values = np.zeros((len(contexts), width), dtype=np.float32)
        padding = np.ones((len(contexts), width), dtype=np.float32)
        for row, context in enumerate(contexts):
            values[row, width - context.size:] = context
            padding[row, width - context.size:] = 0.0
        return self._to_device(values), self._to_device(padding)

    def _to_device(self, array: NDArray[np.float32]) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":  # pinned host memory lets the copy run asynchronously
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor


def _result(full: NDArray[np.float32]) -> ForecastResult:
    """Splits ``(n, steps, 1 + quantiles)`` into the mean, the quantiles and the median as the point."""
    return ForecastResult(point=full[:, :, 1 + _MEDIAN], mean=full[:, :, 0], quantiles=full[:, :, 1:])


def choose_batch_size(hparams: ModelHparams, device: torch.device, *, memory_fraction: float = 0.4,
                      cap: int = 2048) -> int:
    """Series per batch: 256 on CPU (where the packed layout also caps a batch's patches); on CUDA, what fits
    in ``memory_fraction`` of the free memory.

    The CUDA estimate counts ~24 activation buffers of ``tokens x model_dims`` fp32 values per series at
    full context; out-of-memory still backs off at run time.
    """
    if device.type != "cuda":
        return 256
    free, _ = torch.cuda.mem_get_info(device)
    tokens = hparams.context_len // hparams.input_patch_len + hparams.output_patch_len // hparams.input_patch_len
    per_series = tokens * hparams.model_dims * 4 * 24
    return max(1, min(cap, int(free * memory_fraction // per_series)))
