"""Hand freed heap memory back to the operating system (glibc keeps it otherwise)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable

__all__ = ["release_freed_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)  # glibc's; musl and others have none


def release_freed_memory() -> bool:
    """Collects garbage, then asks glibc to return its free heap pages to the system (``malloc_trim``); False
    where the C library has no such call.

    Why: the per-series checks of a 20,000-series shard allocate and free arrays of ~32 MB, just under glibc's
    mmap threshold, so they live in the heap arenas of the threads that ran them, and freed arena memory stays
    with the process. Two shards at a time over a 1M-series job grew the peak RSS from 3.6 to 7.1 GB that way;
    trimming after each shard's checks kept it at 2.7 GB (scale_benchmark.py memory, docs/PERFORMANCE.md).
    """
    gc.collect()
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))
