"""Resolve the requested compute device once."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import torch

from forecast_model.errors import DeviceError

__all__ = ["DeviceName", "cpu_threads", "reproducible_cpu_math", "resolve_device", "torch_threads"]

logger = logging.getLogger(__name__)

DeviceName = Literal["auto", "cpu", "gpu"]

# MKL's conditional numerical reproducibility (CNR) settings, from mkl_cbwr.h.
_CBWR_AUTO, _CBWR_STRICT, _CBWR_MODE_CHANGE_FAILURE = 2, 0x10000, -8


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


@functools.cache
def reproducible_cpu_math() -> bool:
    """Makes torch's CPU matrix products give the same bits whatever the thread count; returns whether they do.

    torch's x86 builds multiply matrices with MKL, whose default mode splits small products (a batch of a few
    series) differently across threads, so 1 and 2 threads differed in the last float32 bits of 36% of a
    7-series forecast here. MKL's strict conditional-reproducibility mode on the machine's own instruction
    set (``AUTO,STRICT``) removes that at no measured cost, and gives what one thread gave before. MKL fixes
    its mode at its first product in the process, so this runs when an engine loads, and an ``MKL_CBWR``
    set in the environment wins (MKL reads that itself).
    """
    if configured := os.environ.get("MKL_CBWR"):
        return "STRICT" in configured.upper()
    setter = _mkl_cbwr_set()
    if setter is None:  # not an MKL build of torch (ARM, macOS): nothing to pin here
        return False
    status = setter(_CBWR_AUTO | _CBWR_STRICT)
    if status == _CBWR_MODE_CHANGE_FAILURE:
        logger.warning("MKL was used before the engine loaded, so its thread-count reproducibility could not be "
                       "switched on: forecasts may differ in their last bits between thread counts. Fix: set "
                       "MKL_CBWR=AUTO,STRICT in the worker's environment.")
    return status == 0


def _mkl_cbwr_set() -> Callable[[int], int] | None:
    """MKL's ``mkl_cbwr_set`` as linked into torch's CPU library (exported as ``mkl_serv_cbwr_set``)."""
    library = next((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*"), None)
    if library is None:
        return None
    try:
        setter = ctypes.CDLL(str(library)).mkl_serv_cbwr_set
    except (OSError, AttributeError):
        return None
    setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
    return setter  # type: ignore[no-any-return]
