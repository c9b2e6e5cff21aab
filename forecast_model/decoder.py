"""A leaner forward pass over the `timesfm` decoder's own weights.

Same arithmetic as ``PatchedTimeSeriesDecoder.forward``, with three changes that do not change the
result in fp32 (tested against the `timesfm` API):

- attention through ``torch.nn.functional.scaled_dot_product_attention`` with a boolean mask, instead of
  adding ``-0.7 * float32.max`` to the scores (a constant that overflows in bf16);
- the output head runs on the last patch only: decoding keeps nothing else;
- patching, normalisation and the padding sentinel stay in fp32 even when the transformer runs in
  bf16, because the sentinel (1123581321.0) is not representable there.
"""

from __future__ import annotations

import contextlib
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


def _attention_mask(patched_padding: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, N, N]: causal, real keys only; every row may see itself so no row is all-masked
    (an all-masked row gives NaN in SDPA; padded rows' outputs are never read by real rows)."""
    n = patched_padding.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=patched_padding.device).tril()
    real_keys = (patched_padding < 0.5)[:, None, None, :]
    eye = torch.eye(n, dtype=torch.bool, device=patched_padding.device)
    return (causal & real_keys) | eye


# `layer` and `module` are the `timesfm` decoder's untyped modules.
def _layer(layer: Any, hidden: torch.Tensor, mask: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
    attention = layer.self_attn
    batch, length, _ = hidden.shape
    normed = layer.input_layernorm(hidden)
    q, k, v = attention.qkv_proj(normed).split([attention.q_size, attention.kv_size, attention.kv_size], dim=-1)
    q = attention._per_dim_scaling(q.view(batch, length, attention.num_heads, attention.head_dim))
    k = k.view(batch, length, attention.num_kv_heads, attention.head_dim)
    v = v.view(batch, length, attention.num_kv_heads, attention.head_dim)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         scale=1.0, enable_gqa=attention.num_kv_heads != attention.num_heads)
    hidden = hidden + attention.o_proj(out.transpose(1, 2).reshape(batch, length, -1))
    return layer.mlp(hidden, paddings=paddings)


def last_patch_forecast(module: Any, input_ts: torch.Tensor, input_padding: torch.Tensor,
                        freq: torch.Tensor, precision: Precision = "fp32") -> torch.Tensor:
    """The decoder's output for the last patch: ``[B, output_patch_len, 1 + quantiles]`` in fp32."""
    with torch.autocast(device_type=input_ts.device.type, enabled=False):
        model_input, patched_padding, stats, _ = module._preprocess_input(input_ts.float(), input_padding.float())
        model_input = model_input + module.freq_emb(freq)
        mask = _attention_mask(patched_padding)
    with precision_context(precision, input_ts.device):
        hidden = model_input
        for layer in module.stacked_transformer.layers:
            hidden = _layer(layer, hidden, mask, patched_padding)
        head = module.horizon_ff_layer(hidden[:, -1:, :])
    mu, sigma = stats
    out = head.float().view(head.shape[0], module.config.horizon_len, -1)
    return out * sigma[:, None, None] + mu[:, None, None]
