"""Offset continuity of a source topic: messages the consumer skipped are fetched and processed in order.

Faust (0.15, on aiokafka) can skip a message when a restarted or rebalanced worker resumes a partition:
fetching starts before the seek to the committed offset settles and the flow-control reset drops what was
buffered, and since later messages are acked the committed offset moves past the hole for good (Faust's
check for a hole between the committed offset and the first acked one lets a one-message hole through;
upstream: faust-streaming issues 216 and 606). A worker
that keeps the last offset it processed per partition sees the hole as soon as the next message arrives,
and reads what is missing straight from Kafka (no consumer group, nothing committed) before going on. The
first message of a partition it has just been given is checked against where the partition resumes: the
group's committed offset (or the log's start when nothing is committed), so a hole at the head is found too.

>>> import asyncio
>>> from streams.pipeline import Record
>>> topic = {3: Record(0, 3, b"k", b"three")}  # what Kafka holds at the missing offset
>>> async def fetch(partition, start, end):
...     return [topic[o] for o in range(start, end) if o in topic]
>>> gaps = OffsetGaps("iot", fetch)
>>> batch = [Record(0, 2, b"k", b"two"), Record(0, 4, b"k", b"four")]
>>> [r.offset for r in asyncio.run(gaps.fill(batch))]
[2, 3, 4]
>>> topic = {2: Record(0, 2, b"k", b"two")}
>>> async def committed(partitions):  # the group had processed up to offset 1 of partition 0
...     return {0: 2}
>>> resumed = OffsetGaps("iot", fetch, committed)
>>> [r.offset for r in asyncio.run(resumed.fill([Record(0, 3, b"k", b"three")]))]
[2, 3]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from opsmon.settings import Settings
from streams.pipeline import Record, message_headers
from streams.topics import reader, scan

log = logging.getLogger(__name__)

Fetch = Callable[[int, int, int], Awaitable[list[Record]]]  # (partition, start, end) -> records in [start, end)
Resume = Callable[[list[int]], Awaitable[dict[int, int]]]  # partitions -> the offset each one resumes at


class OffsetGaps:
    """Per partition, the next offset expected from one topic; ``fill`` inserts what was skipped."""

    def __init__(self, name: str, fetch: Fetch, resume: Resume | None = None) -> None:
        self.name = name
        self.fetch = fetch
        self.resume = resume
        self.next: dict[int, int] = {}
        self.filled = 0  # messages fetched to fill holes
        self.holes = 0
        self.at_resume = 0  # of which holes at the head of a partition, just after it was resumed

    async def fill(self, records: list[Record]) -> list[Record]:
        """``records`` with every skipped message of their partitions fetched and put before its successor.

        A message at or below an offset already seen passes through (a replay after a re-seek: the pipeline
        skips what its state already holds). A partition's first message is compared with where ``resume``
        says the partition resumes; without ``resume``, only holes after that first message are found.
        """
        new = sorted({r.partition for r in records if r.partition not in self.next})
        if new and self.resume is not None:
            self.next.update(await self.resume(new))
        fresh = set(new)
        out: list[Record] = []
        for rec in records:
            want = self.next.get(rec.partition)
            if want is not None and rec.offset > want:
                missing = await self.fetch(rec.partition, want, rec.offset)
                self.holes += 1
                self.filled += len(missing)
                head = rec.partition in fresh
                self.at_resume += head
                log.warning("consumer skipped %s partition=%d offsets %d..%d%s; fetched %d of them from Kafka",
                            self.name, rec.partition, want, rec.offset - 1, " as it resumed" if head else "",
                            len(missing))
                out.extend(missing)
            fresh.discard(rec.partition)
            out.append(rec)
            if want is None or rec.offset >= want:
                self.next[rec.partition] = rec.offset + 1
        return out

    def forget(self, partitions: Iterable[int]) -> None:
        """These partitions were revoked: whoever owns them next resumes from the committed offset."""
        for p in partitions:
            self.next.pop(p, None)


def kafka_gaps(settings: Settings, topic: str, timeout: float = 30.0) -> OffsetGaps:
    """``OffsetGaps`` of a topic the worker consumes, reading Kafka with kafka-python in a thread (rare work).

    Both reads retry until they succeed: a broker outage holds the agent, since going on without knowing
    what was skipped could lose it.
    """
    async def retrying(what: str, call: Callable[[], Any]) -> Any:
        while True:
            try:
                return await asyncio.to_thread(call)
            except Exception as exc:  # noqa: BLE001  (kafka-python raises several types; all mean "retry")
                log.error("%s of %s failed (%s); retrying", what, topic, exc)
                await asyncio.sleep(1.0)

    async def fetch(partition: int, start: int, end: int) -> list[Record]:
        return await retrying(f"fetching partition={partition} offsets {start}..{end - 1}",
                              lambda: read_range(settings, topic, partition, start, end, timeout))

    async def resume(partitions: list[int]) -> dict[int, int]:
        return await retrying(f"reading the committed offsets of partitions {partitions}",
                              lambda: resume_offsets(settings, topic, partitions))

    return OffsetGaps(topic, fetch, resume)


def resume_offsets(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    """Where the worker's consumer group resumes each partition: its committed offset, else the log's start.

    The worker reads from the earliest offset when its group has committed nothing (``create_app``).
    """
    from kafka import TopicPartition

    consumer = reader(settings, "opsmon-gap-resume", group=settings.app_id)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        where = {tp.partition: consumer.committed(tp) for tp in tps}
        unset = [tp for tp in tps if where[tp.partition] is None]
        if unset:
            where.update({tp.partition: off for tp, off in consumer.beginning_offsets(unset).items()})
        return where
    finally:
        consumer.close()


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

