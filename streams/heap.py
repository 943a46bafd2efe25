"""The worker process's memory policy: how often Python collects cycles, and when freed memory goes back.

Both are process-wide, so the worker sets them once (``opsmon worker``) and the bench sets the same ones
where it measures in process, so its figures are the worker's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

TRIM_EVERY_S = 60.0  # the worker's timer: a trim costs milliseconds, the memory it returns grows back slowly


def collect_less() -> None:
    """Keep the cycle collector off what lives as long as the worker.

    A worker holds hundreds of thousands of long-lived objects (~230,000 from its imports alone, then every entity's
    detectors), and each full collection walks them all to find next to nothing: by default one runs every ~70,000
    allocations, about 8% of the CPU per event in process on the bench's workload. What exists at start is left out
    of collections for good (``gc.freeze``), and the youngest generation is collected after 10,000 allocations
    rather than 700; cycles (asyncio's futures and tracebacks) are still collected, only in larger batches.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    path = ctypes.util.find_library("c")
    libc = ctypes.CDLL(path) if path else None
    return getattr(libc, "malloc_trim", None)  # glibc only: elsewhere there is nothing to call


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system; whether this platform can (glibc's ``malloc_trim``).

    An idle entity's state is one compressed blob of a few KB, made again each time the entity wakes and
    sleeps, with the pickles it is made from: too large for Python's small-object allocator, so they come
    from the C heap, where the freed ones leave pages that are free but still resident between the blobs
    that live on. glibc returns only the top of a heap by itself; ``malloc_trim(0)`` returns every free
    page (tested in ``tests/test_heap.py``).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
