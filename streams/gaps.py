"""Offset continuity of a source topic: messages the consumer skipped are fetched and processed in order.

Faust (0.15, on aiokafka) can skip a message when a restarted or rebalanced worker resumes a partition:
fetching starts before the seek to the committed offset settles and the flow-control reset drops what was
buffered, and since later messages are acked the committed offset moves past the hole for good. A worker
that keeps the last offset it processed per partition sees the hole as soon as the next message arrives,
and reads what is missing straight from Kafka (no consumer group, nothing committed) before going on.

>>> import asyncio
>>> from streams.pipeline import Record
>>> topic = {3: Record(0, 3, b"k", b"three")}  # what Kafka holds at the missing offset
>>> async def fetch(partition, start, end):
...     return [topic[o] for o in range(start, end) if o in topic]
>>> gaps = OffsetGaps("iot", fetch)
>>> batch = [Record(0, 2, b"k", b"two"), Record(0, 4, b"k", b"four")]
>>> [r.offset for r in asyncio.run(gaps.fill(batch))]
[2, 3, 4]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from opsmon.settings import Settings
from streams.pipeline import Record, message_headers
from streams.topics import reader, scan

log = logging.getLogger(__name__)

Fetch = Callable[[int, int, int], Awaitable[list[Record]]]  # (partition, start, end) -> records in [start, end)


class OffsetGaps:
    """Per partition, the next offset expected from one topic; ``fill`` inserts what was skipped."""

    def __init__(self, name: str, fetch: Fetch) -> None:
        self.name = name
        self.fetch = fetch
        self.next: dict[int, int] = {}
        self.filled = 0  # messages fetched to fill holes
        self.holes = 0

    async def fill(self, records: list[Record]) -> list[Record]:
        """``records`` with every skipped message of their partitions fetched and put before its successor.

        A message at or below an offset already seen passes through (a replay after a re-seek: the pipeline
        skips what its state already holds). Only holes after the first message seen per partition are
        found: where a resumed partition starts is Kafka's committed offset, which Faust keeps to itself.
        """
        out: list[Record] = []
        for rec in records:
            want = self.next.get(rec.partition)
            if want is not None and rec.offset > want:
                missing = await self.fetch(rec.partition, want, rec.offset)
                self.holes += 1
                self.filled += len(missing)
                log.warning("consumer skipped %s partition=%d offsets %d..%d; fetched %d of them from Kafka",
                            self.name, rec.partition, want, rec.offset - 1, len(missing))
                out.extend(missing)
            out.append(rec)
            if want is None or rec.offset >= want:
                self.next[rec.partition] = rec.offset + 1
        return out

    def forget(self, partitions: Iterable[int]) -> None:
        """These partitions were revoked: whoever owns them next resumes from the committed offset."""
        for p in partitions:
            self.next.pop(p, None)


def kafka_fetch(settings: Settings, topic: str, timeout: float = 30.0) -> Fetch:
    """A ``Fetch`` reading ``topic`` with a group-less kafka-python consumer in a thread (holes are rare)."""
    async def fetch(partition: int, start: int, end: int) -> list[Record]:
        while True:  # a broker outage holds the agent here: going on without the messages would lose them
            try:
                return await asyncio.to_thread(read_range, settings, topic, partition, start, end, timeout)
            except Exception as exc:  # noqa: BLE001  (kafka-python raises several types; all mean "retry")
                log.error("fetching %s partition=%d offsets %d..%d failed (%s); retrying", topic, partition,
                          start, end - 1, exc)
                await asyncio.sleep(1.0)
    return fetch


def read_range(settings: Settings, topic: str, partition: int, start: int, end: int,
               timeout: float = 30.0) -> list[Record]:
    """The records of ``topic`` partition ``partition`` at offsets ``start`` to ``end - 1`` that still exist.

    Offsets with nothing behind them (deleted by retention, transaction markers) are passed over.
    """
    consumer = reader(settings, "opsmon-gap-fill")
    try:
        return [Record(r.partition, r.offset, r.key, r.value, message_headers(r.headers))
                for r in scan(consumer, topic, start={partition: start}, end={partition: end}, timeout=timeout)]
    finally:
        consumer.close()

