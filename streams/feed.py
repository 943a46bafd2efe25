"""Source topics consumed as fetched batches, with checkpoints of state and offsets.

Faust's consumer stays the consumer group's member: it gets the source partitions assigned (its assignor
co-partitions them with the state tables, which it restores from their changelogs before the rebalance
ends), and only it commits offsets, under its group generation. It never fetches the source partitions:
they are paused in its client as soon as they are assigned. :class:`SourceFeed` fetches exactly those
partitions with an aiokafka consumer of its own (manual assignment, no group membership), starting at the
group's committed offsets, thousands of records per ``getmany``, and hands them to ``handle`` per topic,
with no per-message Faust event, ack or await.

Offsets move only at a checkpoint, every ``interval`` seconds and when partitions are revoked or the worker
stops. Between two batches the positions reached are noted and ``begin_checkpoint`` serialises the states
changed since the last checkpoint; it returns what settles the checkpoint: those states changelogged once every
point written so far is acknowledged, and the producer flushed (changelogs, dead letters, alert events). Only
then are the noted positions committed. Fetching and handling go on while a checkpoint settles (what it commits
was noted before), and the next checkpoint waits for it. A crash replays from the last checkpoint; replay is
idempotent (every state remembers the last offset folded into it, points carry event times), so the first scores
after a restart equal those of a worker that never stopped. The feed reads each partition from where the group
left off, in order, so an offset can only be skipped if the log itself lacks it: ``holes`` counts such jumps
(none are expected: source topics are neither compacted nor transactional).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.pipeline import Record, message_headers

log = logging.getLogger("opsmon.feed")

Handle = Callable[[str, list[Record]], Awaitable[None]]  # (topic name, records of one fetch, each partition in order)


def _timestamp(msg: Any) -> int:
    return msg.timestamp


@dataclass
class FeedStats:
    """Counters of one topic, for ``/opsmon/stats``."""

    fetched: int = 0
    holes: int = 0  # offset jumps within a partition (expected: none)
    checkpoints: int = 0


@dataclass
class _Partition:
    next: int | None = None  # offset of the next record to handle (None: not known until the first fetch)
    committed: int | None = None
    fetched: int | None = None  # offset after the last record fetched
    pending: list[Any] = field(default_factory=list)  # fetched, held back to interleave with other partitions
    held_since: float = 0.0


FETCHER_TURNS = 4  # event-loop turns aiokafka's fetcher takes from a drained partition to its next request sent
HOLD_S = 0.5  # at most this long a partition's records wait for a lagging partition's to interleave with


@dataclass
class SourceFeed:
    """Fetch the source partitions Faust assigned to this worker, hand them over in batches, checkpoint.

    ``group`` is the consumer group (the Faust app id), used only to read committed offsets; commits go
    through ``commit`` (Faust's consumer, the group member). ``client`` is aiokafka's connection settings.
    """

    topics: set[str]
    group: str
    client: dict[str, Any]
    handle: Handle
    begin_checkpoint: Callable[[], Awaitable[Awaitable[None]]]
    commit: Callable[[dict[TopicPartition, int]], Awaitable[bool]]
    interval: float = 5.0
    batch_max: int = 10_000
    stats: dict[str, FeedStats] = field(default_factory=dict)
    _parts: dict[TopicPartition, _Partition] = field(default_factory=dict)
    _want: set[TopicPartition] | None = None  # assignment to take up once the rebalance has ended
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task | None = None
    _last_checkpoint: float = field(default_factory=time.monotonic)
    _settling: asyncio.Future | None = None  # the last checkpoint, until its offsets are committed

    # ------------------------------------------------------------------ lifecycle
    def start(self, rebalancing: Callable[[], bool]) -> None:
        """Start fetching (in a task of the running loop); ``rebalancing()`` True holds it back."""
        self.stats = {t: FeedStats() for t in self.topics}
        self._task = asyncio.get_running_loop().create_task(self._run(rebalancing), name="opsmon-feed")

    async def stop(self) -> None:
        """Finish the batch in hand, checkpoint, close the client."""
        if self._task is not None:
            async with self._busy:  # the loop is between batches: cancel it there
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None
                await self._checkpoint()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def failed(self) -> BaseException | None:
        """The error that ended the fetch loop, if it ended on one."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None

    # ------------------------------------------------------------------ rebalances (Faust's signals)
    def assigned(self, tps: Iterable[Any]) -> None:
        """The group gave this worker ``tps`` (all topics): fetch the source ones once recovery is over."""
        self._want = {TopicPartition(tp.topic, tp.partition) for tp in tps if tp.topic in self.topics}

    async def revoked(self, tps: Iterable[Any]) -> set[TopicPartition]:
        """Partitions are taken away: finish the batch in hand, checkpoint, stop fetching them.

        Called before the revocation completes, while the group generation still allows the commit, so the
        next owner resumes exactly where this worker's stored work ends. Returns the source partitions gone.
        """
        gone = {TopicPartition(tp.topic, tp.partition) for tp in tps if tp.topic in self.topics}
        async with self._busy:
            if gone & self._parts.keys():
                await self._checkpoint()
            for tp in gone:
                self._parts.pop(tp, None)
            if self._consumer is not None and gone:
                self._reassign(set(self._parts))
        return gone

    def held(self) -> dict[str, list[int]]:
        """Per topic, the partitions this worker fetches now."""
        out: dict[str, list[int]] = {t: [] for t in self.topics}
        for tp in sorted(self._parts):
            out[tp.topic].append(tp.partition)
        return out

    def lag(self) -> dict[str, int]:
        """Per topic, records in this worker's partitions beyond the committed offsets (what a crash replays)."""
        out: dict[str, int] = {}
        if self._consumer is None:
            return out
        for tp, part in self._parts.items():
            high = self._consumer.highwater(tp)
            if high is not None and part.committed is not None:
                out[tp.topic] = out.get(tp.topic, 0) + max(0, high - part.committed)
        return out

    # ------------------------------------------------------------------ the loop
    async def _run(self, rebalancing: Callable[[], bool]) -> None:
        self._consumer = AIOKafkaConsumer(
            **self.client, group_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
            client_id=f"{self.group}-feed")
        await self._consumer.start()
        while True:
            if rebalancing() or (self._want is None and not self._parts):
                await asyncio.sleep(0.05)
                continue
            if self._want is not None:
                async with self._busy:
                    await self._take_up(self._want)
            batches = await self._consumer.getmany(timeout_ms=200, max_records=self.batch_max) if self._parts \
                else {}
            async with self._busy:
                # aiokafka's fetcher asks for more of a partition once a getmany has drained it, but only when the
                # event loop runs its task: a few turns now, so those records arrive while this batch is handled
                # instead of while the next getmany waits. (Holding the feed: no revocation comes in between.)
                for _ in range(FETCHER_TURNS):
                    await asyncio.sleep(0)
                now = time.monotonic()
                for tp, msgs in batches.items():
                    part = self._parts.get(tp)
                    if part is None or not msgs:
                        continue  # revoked while the fetch was under way
                    expect = part.fetched if part.fetched is not None else part.next
                    if expect is not None and msgs[0].offset != expect:
                        self.stats[tp.topic].holes += 1
                        log.error("offsets %d..%d of %s[%d] were not in the fetch", expect, msgs[0].offset - 1,
                                  tp.topic, tp.partition)
                    if not part.pending:
                        part.held_since = now
                    part.pending.extend(msgs)
                    part.fetched = msgs[-1].offset + 1
                for topic in self.topics:
                    await self._hand_over(topic, now)
                if time.monotonic() - self._last_checkpoint >= self.interval:
                    await self._checkpoint(wait=False)

    async def _hand_over(self, topic: str, now: float) -> None:
        """Hand the records in hand of ``topic`` over as one batch, partitions interleaved by record timestamp.

        While a partition has records in Kafka beyond those fetched, records later than its last one in hand
        wait for its next ones, and if it has none in hand everything waits, at most ``HOLD_S`` (each
        partition's order is kept): entities on different partitions are folded in about the order produced,
        whatever the fetches' boundaries. Caught-up partitions hold nothing back.
        """
        assert self._consumer is not None
        parts = [(tp, p) for tp, p in self._parts.items() if tp.topic == topic]
        ready = [p for _, p in parts if p.pending]
        if not ready:
            return
        # Partitions with records in Kafka beyond those fetched; the others are caught up and wait for nothing.
        behind = [p for tp, p in parts if p.fetched is not None and (self._consumer.highwater(tp) or 0) > p.fetched]
        limit = None
        if now - min(p.held_since for p in ready) < HOLD_S and behind:
            if any(not p.pending for p in behind):
                return
            limit = min(p.pending[-1].timestamp for p in behind)
        lists = []
        for p in ready:
            take = len(p.pending) if limit is None else \
                next((i for i, m in enumerate(p.pending) if m.timestamp > limit), len(p.pending))
            if take:
                lists.append(p.pending[:take])
                del p.pending[:take]
                p.held_since = now
        merged = lists[0] if len(lists) == 1 else heapq.merge(*lists, key=_timestamp)
        await self.handle(topic, [Record(m.partition, m.offset, m.key, m.value, message_headers(m.headers))
                                  for m in merged])
        for msgs in lists:
            self._parts[TopicPartition(topic, msgs[0].partition)].next = msgs[-1].offset + 1
            self.stats[topic].fetched += len(msgs)

    async def _take_up(self, want: set[TopicPartition]) -> None:
        """Fetch ``want`` from now on, each new partition from the group's committed offset."""
        assert self._consumer is not None
        self._want = None
        for tp in set(self._parts) - want:
            self._parts.pop(tp)
        new = want - set(self._parts)
        self._reassign(want)
        for tp in new:
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
                committed = await self._consumer.position(tp)
            else:
                self._consumer.seek(tp, committed)
            self._parts[tp] = _Partition(next=committed, committed=committed)
        if new:
            log.info("fetching %s", ", ".join(f"{tp.topic}[{tp.partition}]@{self._parts[tp].next}"
                                              for tp in sorted(new)))

    def _reassign(self, tps: set[TopicPartition]) -> None:
        """Fetch ``tps``; the ones kept go on from where they were (a new assignment resets positions)."""
        assert self._consumer is not None
        self._consumer.assign(list(tps))
        for tp in tps:
            part = self._parts.get(tp)
            if part is not None and part.next is not None:
                self._consumer.seek(tp, part.next)  # what was held back is fetched again
                part.pending.clear()
                part.fetched = part.next

    async def _checkpoint(self, wait: bool = True) -> None:
        """Note the positions, changelog the changed state; once the writes and the producer have settled,
        commit the positions noted. ``wait=False`` leaves the settling to a task (the next checkpoint waits)."""
        if self._settling is not None:
            settling, self._settling = self._settling, None
            await settling
        self._last_checkpoint = time.monotonic()
        offsets = {tp: p.next for tp, p in self._parts.items() if p.next is not None and p.next != p.committed}
        settle = asyncio.ensure_future(self._commit_after(await self.begin_checkpoint(), offsets))
        if wait:
            await settle
        else:
            self._settling = settle

    async def _commit_after(self, settled: Awaitable[None], offsets: dict[TopicPartition, int]) -> None:
        await settled
        if offsets and await self.commit(offsets):
            for tp, offset in offsets.items():
                part = self._parts.get(tp)
                if part is not None:  # not revoked meanwhile
                    part.committed = offset
            for topic in {tp.topic for tp in offsets}:
                self.stats[topic].checkpoints += 1
