"""The worker's memory policy: a heap trim gives back pages freed between live blocks."""

from __future__ import annotations

import gc

import psutil
import pytest

from streams.heap import collect_less, trim_heap


def test_trim_returns_pages_freed_between_live_blocks() -> None:
    if not trim_heap():
        pytest.skip("no malloc_trim here (not glibc)")
    proc = psutil.Process()
    # Frozen states' shape: blocks of a few KB from the C heap, every other one freed, so no free block is at
    # the heap's top where glibc would give it back by itself.
    blocks = [bytes(16384 - 33) for _ in range(6_000)]
    del blocks[::2]
    gc.collect()
    before = proc.memory_info().rss
    trim_heap()
    returned = before - proc.memory_info().rss
    # ~47 MiB freed as 3,000 holes of 16 KiB, each holding whole pages: ~32 MiB measured, none without the trim
    assert returned > 16 * 2**20, f"trim returned {returned / 2**20:.1f} MiB"
    assert len(blocks) == 3_000  # the live half stays


def test_collect_less_freezes_what_exists_and_collects_young_objects_in_larger_batches() -> None:
    threshold = gc.get_threshold()
    try:
        collect_less()
        assert gc.get_threshold()[0] == 10_000
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
