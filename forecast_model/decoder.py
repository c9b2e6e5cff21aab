"""A leaner forward pass over the `timesfm` decoder's own weights.

Same arithmetic as ``PatchedTimeSeriesDecoder.forward``, with four changes that do not change the
result in fp32 (tested against the `timesfm` API):

- attention through ``torch.nn.functional.scaled_dot_product_attention`` with a boolean mask, instead of
  adding ``-0.7 * float32.max`` to the scores (a constant that overflows in bf16);
- the output head runs on the last patch only: decoding keeps nothing else;
- optionally (:class:`_Packed`, the CPU default) the transformer runs on the real patches only, with no
  row of padding;
- patching, normalisation and the padding sentinel stay in fp32 even when the transformer runs in
  bf16, because the sentinel (1123581321.0) is not representable there.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F

__all__ = ["Precision", "last_patch_forecast", "precision_context"]

Precision = Literal["fp32", "tf32", "bf16"]


@contextlib.contextmanager
def precision_context(precision: Precision, device: torch.device) -> Iterator[None]:
    """fp32 exactly; tf32 matmuls on CUDA; bf16 autocast for the transformer's matrix products."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    elif precision == "tf32" and device.type == "cuda":
        previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous
    else:
        yield


class _Padded:
    """Every series padded to the batch's longest; the padded patches are masked, as in the API."""

    def __init__(self, patched_padding: torch.Tensor) -> None:
        self.mask = _attention_mask(patched_padding < 0.5)
        self.mlp_paddings: torch.Tensor | None = patched_padding

    def pack(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    def attend(self, attention: Any, qkv: torch.Tensor) -> torch.Tensor:
        return _attend(attention, qkv, self.mask)

    def mlp(self, mlp: Any, hidden: torch.Tensor) -> torch.Tensor:
        return mlp(hidden, paddings=self.mlp_paddings)

    def last(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, -1, :]

    def every(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


class _Packed:
    """Only the real patches, all series' rows stacked into one ``[tokens, dims]`` matrix.

    Every op but attention works row by row, so it runs on the real patches alone: no arithmetic on
    padding, and one large matrix product per weight instead of a batch of short ones (what a CPU's
    matrix kernels need to run near their peak). A series' real patches are the last ones of its row
    (series are right-aligned), so its rows are contiguous; attention runs once per run of neighbouring
    series with the same number of patches, on a view of their rows, causal and without a mask. The
    engine sorts series by length, so a batch holds at most ``context_len / patch_len`` such runs.
    The runs are planned on the host: on CUDA that reads the patch counts back, one sync per batch.
    """

    def __init__(self, patched_padding: torch.Tensor) -> None:
        self.real = patched_padding < 0.5
        # A series' last patch is always a row, even if its values equal the padding sentinel (TimesFM then
        # marks it padded): without a row, the series would be forecast from its neighbour's last row.
        self.real[:, -1] = True
        counts = self.real.sum(dim=1).tolist()
        self.runs: list[tuple[int, int, int]] = []  # (first row, series, patches per series)
        row = 0
        for patches, group in itertools.groupby(counts):
            size = len(list(group))
            self.runs.append((row, size, patches))
            row += size * patches
        self.lasts = torch.tensor(list(itertools.accumulate(counts)), device=patched_padding.device) - 1
        # Rows kept although marked padded get their MLP output zeroed, as the padded layout (and the API) do.
        kept = patched_padding[self.real]
        self.mlp_paddings = kept[None] if bool((kept > 0.5).any()) else None

    def pack(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[self.real]

    def attend(self, attention: Any, qkv: torch.Tensor) -> torch.Tensor:
        return torch.cat([_attend(attention, qkv[row:row + size * patches].view(size, patches, -1), None).flatten(0, 1)
                          for row, size, patches in self.runs])

    def mlp(self, mlp: Any, hidden: torch.Tensor) -> torch.Tensor:
        if self.mlp_paddings is None:
            return mlp(hidden)
        return mlp(hidden[None], paddings=self.mlp_paddings)[0]

    def last(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.index_select(0, self.lasts)

    def every(self, hidden: torch.Tensor) -> torch.Tensor:
        """Back to ``[B, N, dims]``, zeros where a patch had no row."""
        full = hidden.new_zeros((*self.real.shape, hidden.shape[-1]))
        full[self.real] = hidden
        return full


def _attention_mask(real: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, N, N] from ``real`` [B, N]: causal, real keys only; every row may see itself so no
    row is all-masked (an all-masked row gives NaN in SDPA; padded rows' outputs are never read by real rows)."""
    n = real.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=real.device).tril()
    real_keys = real[:, None, None, :]
    eye = torch.eye(n, dtype=torch.bool, device=real.device)
    return (causal & real_keys) | eye


# `attention`, `layer` and `module` are the `timesfm` decoder's untyped modules.
def _attend(attention: Any, qkv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention over ``[B, N, q + k + v]``, under ``mask`` or causal; returns ``[B, N, dims]``."""
    batch, length, _ = qkv.shape
    q, k, v = qkv.split([attention.q_size, attention.kv_size, attention.kv_size], dim=-1)
    q = attention._per_dim_scaling(q.view(batch, length, attention.num_heads, attention.head_dim))
    k = k.view(batch, length, attention.num_kv_heads, attention.head_dim)
    v = v.view(batch, length, attention.num_kv_heads, attention.head_dim)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         is_causal=mask is None, scale=1.0,
                                         enable_gqa=attention.num_kv_heads != attention.num_heads)
    return out.transpose(1, 2).reshape(batch, length, -1)


def _layer(layer: Any, hidden: torch.Tensor, layout: _Padded | _Packed) -> torch.Tensor:
    attention = layer.self_attn
    qkv = attention.qkv_proj(layer.input_layernorm(hidden))
    hidden = hidden + attention.o_proj(layout.attend(attention, qkv))
    return layout.mlp(layer.mlp, hidden)


def last_patch_forecast(module: Any, input_ts: torch.Tensor, input_padding: torch.Tensor,
                        freq: torch.Tensor, precision: Precision = "fp32", packed: bool = False,
                        all_patches: bool = False) -> torch.Tensor:
    """The decoder's output for the last patch: ``[B, output_patch_len, 1 + quantiles]`` in fp32.

    ``packed`` runs the transformer on the real patches only (:class:`_Packed`); the result is the same.
    ``all_patches`` returns the output of every patch instead, ``[B, N, output_patch_len, 1 + quantiles]``:
    patch ``i``'s output forecasts the points after it, as the API's ``return_forecast_on_context`` uses
    (the outputs of fully padded patches mean nothing).
    """
    with torch.autocast(device_type=input_ts.device.type, enabled=False):
        model_input, patched_padding, stats, _ = module._preprocess_input(input_ts.float(), input_padding.float())
        model_input = model_input + module.freq_emb(freq)
        layout = _Packed(patched_padding) if packed else _Padded(patched_padding)
    with precision_context(precision, input_ts.device):
        hidden = layout.pack(model_input)
        for layer in module.stacked_transformer.layers:
            hidden = _layer(layer, hidden, layout)
        head = module.horizon_ff_layer(layout.every(hidden) if all_patches else layout.last(hidden))
    mu, sigma = stats
    if all_patches:
        out = head.float().view(*head.shape[:2], module.config.horizon_len, -1)
        return out * sigma[:, None, None, None] + mu[:, None, None, None]
    out = head.float().view(head.shape[0], module.config.horizon_len, -1)
    return out * sigma[:, None, None] + mu[:, None, None]
