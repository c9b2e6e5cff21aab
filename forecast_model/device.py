"""Resolve the requested compute device once."""

from __future__ import annotations

from typing import Literal

import torch

from forecast_model.errors import DeviceError

__all__ = ["DeviceName", "resolve_device"]

DeviceName = Literal["auto", "cpu", "gpu"]


def resolve_device(name: str) -> torch.device:
    """Maps ``auto|cpu|gpu`` to a torch device; ``gpu`` without CUDA is an error, never a silent CPU run."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "gpu":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"Device 'gpu' was requested but CUDA is not available to torch {torch.__version__} "
                f"(CUDA build: {torch.version.cuda or 'none'}). Fix: use device 'auto' or 'cpu', or install "
                "a CUDA build of torch on a GPU host (see README, 'GPU hosts')."
            )
        return torch.device("cuda:0")
    raise DeviceError(f"Unknown device {name!r}; use one of 'auto', 'cpu', 'gpu'.")
