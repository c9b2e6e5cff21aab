"""Resolve the requested compute device once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Literal

import torch

from forecast_model.errors import DeviceError

__all__ = ["DeviceName", "cpu_threads", "resolve_device", "torch_threads"]

DeviceName = Literal["auto", "cpu", "gpu"]


def resolve_device(name: str, index: int | None = None) -> torch.device:
    """Maps ``auto|cpu|gpu`` to a torch device; ``gpu`` without CUDA is an error, never a silent CPU run.

    ``index`` pins a CUDA run to one GPU (a worker per GPU on a multi-GPU host); ``None`` means GPU 0. It is
    checked whenever the device resolves to CUDA, so a worker pinned to a GPU the host lacks fails at once.
    """
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return _cuda(index) if torch.cuda.is_available() else torch.device("cpu")
    if name == "gpu":
        if not torch.cuda.is_available():
            if index is not None:
                raise DeviceError(_no_such_gpu(index, 0))
            raise DeviceError(
                f"Device 'gpu' was requested but CUDA is not available to torch {torch.__version__} "
                f"(CUDA build: {torch.version.cuda or 'none'}). Fix: use device 'auto' or 'cpu', or install "
                "a CUDA build of torch on a GPU host (see README, 'GPU hosts')."
            )
        return _cuda(index)
    raise DeviceError(f"Unknown device {name!r}; use one of 'auto', 'cpu', 'gpu'.")


def _cuda(index: int | None) -> torch.device:
    if index is None:
        return torch.device("cuda:0")
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise DeviceError(_no_such_gpu(index, count))
    return torch.device("cuda", index)


def _no_such_gpu(index: int, count: int) -> str:
    seen = f"{count} CUDA device(s)" + (f", indexes 0-{count - 1}" if count else
                                        f" (CUDA build: {torch.version.cuda or 'none'})")
    return (f"No such GPU: device index {index} was requested (FORECAST_DEVICE_INDEX or `forecast worker "
            f"--device-index`) but torch {torch.__version__} sees {seen}. Fix: pin each worker to an index "
            "below the count `nvidia-smi -L` lists, or unset FORECAST_DEVICE_INDEX; CUDA_VISIBLE_DEVICES, if "
            "set, renumbers the GPUs this process sees from 0.")


_THREADS_LOCK = threading.Lock()
_threads_users = 0  # cpu_threads blocks running now, in any thread of the process
_threads_before = 0  # torch's count before the first of them


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[int]:
    """Runs the block with ``count`` torch threads for CPU work (None: as they are); yields the count in force.

    torch's thread count belongs to the process: blocks that overlap (two shards at a time, in threads) share
    the first one's count, and the count before it comes back when the last one ends, so no block sees it
    change under it (a forecast's last bits may depend on it).
    """
    global _threads_users, _threads_before
    if count is None:
        yield torch.get_num_threads()
        return
    with _THREADS_LOCK:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(count)
        _threads_users += 1
        in_force = torch.get_num_threads()
    try:
        yield in_force
    finally:
        with _THREADS_LOCK:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


def torch_threads() -> int:
    """torch's thread count for CPU work in this process (OMP_NUM_THREADS, else the cores, unless changed)."""
    return torch.get_num_threads()
