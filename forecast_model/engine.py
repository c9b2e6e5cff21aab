"""Batched TimesFM inference that pads each batch only to its own longest series.

The ``timesfm`` API front-pads every series to ``context_len`` (2048 for 2.0-500m), so a batch of short
series mostly computes padding. Here series are sorted by length and cut into batches, and each batch is
padded to its longest member rounded up to a whole patch. Padding is masked inside the decoder and the
patch grid stays aligned to the end of each series, so the result equals the API's (tested in fp32).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from forecast_model.config import DEFAULT_QUANTILES, ModelHparams
from forecast_model.preprocess import prepare_contexts, round_up

__all__ = ["ForecastResult", "TimesFmEngine"]

_MEDIAN = DEFAULT_QUANTILES.index(0.5)


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

    precision = "fp32"

    def __init__(self, module: torch.nn.Module, hparams: ModelHparams, device: torch.device,
                 batch_size: int = 32, weights_sha256: str | None = None) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.module = module
        self.hparams = hparams
        self.device = device
        self.batch_size = batch_size
        self.weights_sha256 = weights_sha256

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
        if horizon <= 0:
            raise ValueError(f"horizon must be positive, got {horizon}.")
        context_len = min(context_len or self.hparams.context_len, self.hparams.context_len)
        contexts = prepare_contexts(series, context_len)
        codes = np.zeros(len(contexts), dtype=np.int64) if freq is None else np.asarray(freq, dtype=np.int64)
        if codes.shape != (len(contexts),) or not np.isin(codes, (0, 1, 2)).all():
            raise ValueError("freq must hold one code in {0, 1, 2} per series.")
        full = np.empty((len(contexts), horizon, 1 + len(DEFAULT_QUANTILES)), dtype=np.float32)
        order = np.argsort([c.size for c in contexts], kind="stable")
        for start in range(0, len(order), self.batch_size):
            members = order[start:start + self.batch_size]
            full[members] = self._decode_batch([contexts[i] for i in members], codes[members], horizon)
        return ForecastResult(point=full[:, :, 1 + _MEDIAN], mean=full[:, :, 0], quantiles=full[:, :, 1:])

    @torch.inference_mode()
    def _decode_batch(self, contexts: list[NDArray[np.float64]], codes: NDArray[np.int64],
                      horizon: int) -> NDArray[np.float32]:
        values, padding = self._pad(contexts)
        freq = torch.from_numpy(codes).reshape(-1, 1).to(self.device)
        step_len = self.hparams.output_patch_len
        outputs = []
        for _ in range(-(-horizon // step_len)):
            # The window grows with each decoded patch, up to the model's context, as in the API.
            window = min(values.shape[1], self.hparams.context_len)
            out = self.module(values[:, -window:], padding[:, -window:], freq)[:, -1, :step_len, :]
            outputs.append(out)
            values = torch.cat([values, out[:, :, 0]], dim=1)
            padding = torch.cat([padding, torch.zeros_like(out[:, :, 0])], dim=1)
        return torch.cat(outputs, dim=1)[:, :horizon].float().cpu().numpy()

    def _pad(self, contexts: list[NDArray[np.float64]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-aligns the contexts in a zero-filled block whose width is a whole number of patches."""
        width = round_up(max(c.size for c in contexts), self.hparams.input_patch_len)
        values = np.zeros((len(contexts), width), dtype=np.float32)
        padding = np.ones((len(contexts), width), dtype=np.float32)
        for row, context in enumerate(contexts):
            values[row, width - context.size:] = context
            padding[row, width - context.size:] = 0.0
        return torch.from_numpy(values).to(self.device), torch.from_numpy(padding).to(self.device)
