"""Freed heap memory goes back to the system where the C library allows it."""

from __future__ import annotations

import sys

import numpy as np

from pipeline.allocator import release_freed_memory


def test_freed_shard_sized_arrays_are_handed_back() -> None:
    def resident_kb() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4

    held = [np.ones(3_900_000) for _ in range(8)]  # ~31 MB each: below glibc's largest mmap threshold
    del held[:7]
    before = resident_kb()
    released = release_freed_memory()
    assert released is sys.platform.startswith("linux"), "glibc (this project's Linux images) has malloc_trim"
    assert resident_kb() <= before, "never more resident memory after a trim"
