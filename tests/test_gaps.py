"""OffsetGaps: which offsets are holes, per partition, and what a revocation forgets (fetch is a dict)."""

from __future__ import annotations

import asyncio

from streams.gaps import OffsetGaps
from streams.pipeline import Record

LOG = {(p, o): Record(p, o, b"k", f"{p}:{o}".encode()) for p in (0, 1) for o in range(20)}


def gaps(committed: dict[int, int] | None = None) -> tuple[OffsetGaps, list[tuple[int, int, int]]]:
    asked: list[tuple[int, int, int]] = []

    async def fetch(partition: int, start: int, end: int) -> list[Record]:
        asked.append((partition, start, end))
        return [LOG[partition, o] for o in range(start, end)]

    async def resume(partitions: list[int]) -> dict[int, int]:
        asked.append((-1, len(partitions), 0))  # how often the committed offsets are read
        return {p: committed[p] for p in partitions if p in committed}  # type: ignore[index]
    return OffsetGaps("t", fetch, resume if committed is not None else None), asked


def fill(g: OffsetGaps, *offsets: tuple[int, int]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in asyncio.run(g.fill([LOG[p, o] for p, o in offsets]))]


def test_partitions_are_followed_separately_and_contiguous_batches_fetch_nothing() -> None:
    g, asked = gaps()
    assert fill(g, (0, 5), (1, 0), (0, 6), (1, 1)) == [(0, 5), (1, 0), (0, 6), (1, 1)]
    assert fill(g, (1, 2), (0, 7)) == [(1, 2), (0, 7)]
    assert asked == [] and g.holes == 0


def test_a_hole_is_filled_before_the_message_that_reveals_it() -> None:
    g, asked = gaps()
    fill(g, (0, 5), (1, 3))
    assert fill(g, (1, 4), (0, 9), (0, 10)) == [(1, 4), (0, 6), (0, 7), (0, 8), (0, 9), (0, 10)]
    assert asked == [(0, 6, 9)] and (g.holes, g.filled) == (1, 3)


def test_replays_pass_through_and_do_not_move_the_expected_offset_back() -> None:
    g, asked = gaps()
    fill(g, (0, 5), (0, 6), (0, 7))
    assert fill(g, (0, 6), (0, 7), (0, 8)) == [(0, 6), (0, 7), (0, 8)]
    assert asked == [] and g.next == {0: 9}


def test_a_revoked_partition_starts_afresh_where_it_is_resumed() -> None:
    g, asked = gaps()
    fill(g, (0, 5), (1, 5))
    g.forget([0])
    assert fill(g, (0, 12), (1, 6)) == [(0, 12), (1, 6)]  # another worker processed 6..11 meanwhile
    assert asked == []


def test_a_resumed_partition_is_checked_once_against_where_it_resumes() -> None:
    g, asked = gaps(committed={0: 3, 1: 5})
    assert fill(g, (0, 6), (1, 5)) == [(0, 3), (0, 4), (0, 5), (0, 6), (1, 5)]  # 3..5 skipped at the head of 0
    assert fill(g, (0, 7), (1, 6)) == [(0, 7), (1, 6)]
    assert asked == [(-1, 2, 0), (0, 3, 6)] and (g.holes, g.at_resume, g.filled) == (1, 1, 3)


def test_a_partition_resumed_before_its_committed_offset_is_a_replay() -> None:
    g, asked = gaps(committed={0: 8})
    assert fill(g, (0, 6), (0, 7), (0, 8), (0, 10)) == [(0, 6), (0, 7), (0, 8), (0, 9), (0, 10)]
    assert asked == [(-1, 1, 0), (0, 9, 10)] and (g.holes, g.at_resume) == (1, 0)


def test_a_partition_given_back_after_a_revocation_is_checked_again() -> None:
    g, asked = gaps(committed={0: 12})
    fill(g, (0, 12), (0, 13))
    g.forget([0])
    assert fill(g, (0, 14)) == [(0, 12), (0, 13), (0, 14)]  # the committed offset had not moved meanwhile
    assert asked == [(-1, 1, 0), (-1, 1, 0), (0, 12, 14)]
