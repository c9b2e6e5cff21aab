"""The decoder's precision switch: fp32 is left exact, tf32 only for its block, bf16 by autocast."""

from __future__ import annotations

import contextlib

import pytest
import torch

from forecast_model.decoder import precision_context


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("fails", [False, True])
def test_tf32_on_cuda_is_switched_on_for_the_block_only(fails: bool) -> None:
    before = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
            with precision_context("tf32", torch.device("cuda")):  # flags only: no CUDA device is touched
                assert tf32_flags() == (True, True)
                if fails:
                    raise RuntimeError("inference failed")
        assert tf32_flags() == (False, False), "the flags are restored however the block ends"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_tf32_on_cpu_and_fp32_change_nothing() -> None:
    before = tf32_flags()
    for precision, device in (("tf32", "cpu"), ("fp32", "cpu"), ("fp32", "cuda")):
        with precision_context(precision, torch.device(device)):  # type: ignore[arg-type]
            assert tf32_flags() == before and not torch.is_autocast_enabled("cpu")


def test_bf16_autocasts_matrix_products() -> None:
    a = torch.randn(4, 4)
    with precision_context("bf16", torch.device("cpu")):
        assert (a @ a).dtype == torch.bfloat16
    assert (a @ a).dtype == torch.float32, "autocast ends with the block"

