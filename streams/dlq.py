"""Dead letters: what was rejected and why (inspect), and putting it back after a fix (replay).

The worker sends a rejected message to ``<topic>.dlq`` with its original key, value and headers, plus
``opsmon-reason``, ``opsmon-kind`` and its *origin*: ``opsmon-source-topic/-partition/-offset``.

**Inspect** is pure functions over :class:`DeadRecord` (grouping by reason and by producer, previews of
payloads) and one reader that takes a DLQ topic from its beginning to its current end, without a consumer
group, so it commits nothing and disturbs nobody.

**Replay** re-injects dead letters into their source topic, each origin at most once, also across crashes:

* A dead letter is identified by its origin (``topic:partition:offset``). The same origin can sit in the
  DLQ twice (a worker that crashed after sending a dead letter but before committing redoes it); it is
  replayed once.
* The ledger is a compacted topic ``<dlq>.replayed`` keyed by origin. For each chunk of messages the
  replayer (1) writes ``pending`` entries, with the source partition's end offset before sending, and
  waits for them; (2) sends the copies, with header ``opsmon-replay-of: <origin>``, through an idempotent
  producer (no duplicates from retries), and waits; (3) writes ``done`` entries with the copies' offsets.
* After a crash in (2) or (3) the next run finds ``pending`` entries and settles them: it searches the
  source partition from the recorded offset for a copy carrying that origin; found means done, not found
  means send again. A crash before (1) completes sent nothing. So the source topic receives every
  selected origin exactly once; the worker itself never double-counts an offset it processed.
* A copy that fails again returns to the DLQ (the worker keeps the message's headers, so it carries
  ``opsmon-replay-of``). A plain replay skips such failed replays; ``again=True`` (after another fix)
  replays each of them once, keyed by the copy's own position.
* One replayer at a time per DLQ topic; two concurrent runs could both send a message.

>>> reason_pattern("value: total 99.00 does not match lines - discount (2.50)")
'value: total # does not match lines - discount (#)'
>>> preview(b'{"site":"s1\\x00"}\\xff')
'{"site":"s1\\\\x00"}\\\\xff'
"""

from __future__ import annotations

import contextlib
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka.partitioner.default import murmur2

from streams.config import KafkaSettings
from streams.topics import reader, scan, source_topics

REASON, KIND = "opsmon-reason", "opsmon-kind"
SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET = "opsmon-source-topic", "opsmon-source-partition", "opsmon-source-offset"
REPLAY_OF, REPLAY_ROOT = "opsmon-replay-of", "opsmon-replay-root"
PRODUCER = "producer"
# Headers the worker sets on a dead letter; a replayed copy must not carry them into the source topic.
WORKER_HEADERS = frozenset({REASON, KIND, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET})
LEDGER_SUFFIX = ".replayed"
FAILED_AGAIN = "failed again (replay with --again)"
CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """One message of a dead-letter topic, as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text (invalid UTF-8 escaped), or None."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return None if found is None else found.decode("utf-8", errors="backslashreplace")

    @property
    def kind(self) -> str:
        """Why it was rejected, in one word (``opsmon-kind``)."""
        return self.header(KIND) or "unknown"

    @property
    def reason(self) -> str:
        """The one-line reason (``opsmon-reason``)."""
        return self.header(REASON) or ""

    @property
    def position(self) -> str:
        """This record's own position, ``dlq-topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def origin(self) -> str:
        """Where the rejected message was: ``topic:partition:offset`` (this record's position if unknown)."""
        topic, part, off = self.header(SOURCE_TOPIC), self.header(SOURCE_PARTITION), self.header(SOURCE_OFFSET)
        if topic and part is not None and off is not None and part.isdigit() and off.isdigit():
            return f"{topic}:{part}:{off}"
        return self.position

    @property
    def origin_partition(self) -> int | None:
        """The partition the rejected message was on, if known."""
        part = self.header(SOURCE_PARTITION)
        return int(part) if part is not None and part.isdigit() else None

    @property
    def replay_of(self) -> str | None:
        """The origin this message is a replayed copy of (it failed again), or None."""
        return self.header(REPLAY_OF)

    @property
    def producer(self) -> str:
        """Who sent it, as far as the record tells: a ``producer`` header, else the message key."""
        named = self.header(PRODUCER)
        if named:
            return named
        return "(no key)" if self.key is None else preview(self.key, 60)


# --------------------------------------------------------------------------------------------- inspect

_VARIABLE = re.compile(r"(?<![\w$`])[\w.-]*\d[\w.:+-]*")


def reason_pattern(reason: str) -> str:
    """The reason with its variable parts (numbers, ids with digits, times) as ``#``, for grouping."""
    return _VARIABLE.sub("#", reason)


def preview(data: bytes | None, limit: int = 80) -> str:
    """Printable text of a payload: invalid UTF-8 and control characters escaped, cut at ``limit``."""
    if data is None:
        return "(null)"
    text = data[: limit * 4].decode("utf-8", errors="backslashreplace")
    out: list[str] = []
    for ch in text:
        # Escape what a terminal would interpret or hide: controls, format and separator characters.
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif unicodedata.category(ch)[0] in "CZ":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    shown = "".join(out)
    if len(shown) > limit or len(data) > limit * 4:
        return f"{shown[:limit]}… ({len(data)} bytes)"
    return shown


@dataclass
class Group:
    """Dead letters that share a key (a reason pattern or a producer), with a sample."""

    source: str
    key: tuple[str, ...]
    count: int = 0
    kinds: Counter = field(default_factory=Counter)
    failed_replays: int = 0
    sample_reason: str = ""
    sample_payload: str = ""
    last_offset: int = -1


def _group(records: Iterable[DeadRecord], key_of: Any, topic_source: dict[str, str]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for rec in records:
        source = topic_source.get(rec.topic, rec.topic)
        key = key_of(rec)
        g = groups.get((source, key))
        if g is None:
            g = groups[(source, key)] = Group(source, key)
        g.count += 1
        g.kinds[rec.kind] += 1
        g.failed_replays += rec.replay_of is not None
        if rec.offset > g.last_offset:  # the newest one is the most telling sample
            g.last_offset, g.sample_reason, g.sample_payload = rec.offset, rec.reason, preview(rec.value)
    return sorted(groups.values(), key=lambda g: (-g.count, g.source, g.key))


def group_by_reason(records: Iterable[DeadRecord], topic_source: dict[str, str] | None = None) -> list[Group]:
    """Dead letters per source, kind and reason pattern, largest group first."""
    return _group(records, lambda r: (r.kind, reason_pattern(r.reason)), topic_source or {})


def group_by_producer(records: Iterable[DeadRecord], topic_source: dict[str, str] | None = None) -> list[Group]:
    """Dead letters per source and producer (``producer`` header, else the key), largest group first."""
    return _group(records, lambda r: (r.producer,), topic_source or {})


# --------------------------------------------------------------------------------------------- topics


def dlq_topics(settings: KafkaSettings, source: str = "all") -> dict[str, tuple[str, str]]:
    """``{source: (source topic, dlq topic)}`` for ``source`` ("iot", "pos", "web" or "all")."""
    topics = source_topics(settings)
    if source != "all" and source not in topics:
        raise ValueError(f"unknown source {source!r}: expected one of {', '.join(topics)} or all")
    return {s: (t, settings.dlq_topics[t]) for s, t in topics.items() if source in ("all", s)}


def ledger_topic(dlq_topic: str) -> str:
    """The replay ledger of a DLQ topic."""
    return dlq_topic + LEDGER_SUFFIX


def _existing(settings: KafkaSettings, topics: Iterable[str]) -> set[str]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="opsmon-dlq-admin")
    try:
        return set(topics) & set(admin.list_topics())
    finally:
        admin.close()


def _dead(rec: Any) -> DeadRecord:
    return DeadRecord(rec.topic, rec.partition, rec.offset, rec.key, rec.value,
                      tuple((k, v or b"") for k, v in rec.headers or ()), rec.timestamp)


def read_dead_letters(settings: KafkaSettings, source: str = "all", limit: int | None = None) -> list[DeadRecord]:
    """The dead letters of ``source`` from the beginning (at most ``limit`` per topic), committing nothing."""
    topics = dlq_topics(settings, source)
    present = _existing(settings, [dlq for _, dlq in topics.values()])
    consumer = reader(settings, "opsmon-dlq")
    try:
        return [_dead(r) for _, dlq in topics.values() if dlq in present for r in scan(consumer, dlq, limit=limit)]
    finally:
        consumer.close()


def count_dead_letters(settings: KafkaSettings, source: str = "all") -> dict[str, int]:
    """How many messages each existing dead-letter topic of ``source`` holds now (end minus start offsets)."""
    from kafka import TopicPartition

    topics = dlq_topics(settings, source)
    present = _existing(settings, [dlq for _, dlq in topics.values()])
    consumer = reader(settings, "opsmon-dlq-count")
    try:
        counts: dict[str, int] = {}
        for _, dlq in topics.values():
            if dlq not in present:
                continue
            tps = [TopicPartition(dlq, p) for p in sorted(consumer.partitions_for_topic(dlq) or ())]
            first, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
            counts[dlq] = sum(end[tp] - first[tp] for tp in tps)
        return counts
    finally:
        consumer.close()


def distinct_by_origin(records: Iterable[DeadRecord]) -> list[DeadRecord]:
    """One dead letter per rejected message: a worker that crashed before its commit re-sends the same ones.

    >>> a = DeadRecord("iot.dlq", 0, 5, None, b"x", (("opsmon-source-topic", b"iot"),
    ...     ("opsmon-source-partition", b"1"), ("opsmon-source-offset", b"42")))
    >>> again = DeadRecord("iot.dlq", 0, 9, None, b"x", a.headers)
    >>> [r.offset for r in distinct_by_origin([a, again])]
    [5]
    """
    seen: set[str] = set()
    out: list[DeadRecord] = []
    for rec in records:
        if rec.origin not in seen:
            seen.add(rec.origin)
            out.append(rec)
    return out


def topic_sources(settings: KafkaSettings) -> dict[str, str]:
    """DLQ topic name to source name ("iot", ...), for labelling groups."""
    return {dlq: s for s, (_, dlq) in dlq_topics(settings).items()}


# --------------------------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the ledger knows about one origin: ``pending`` (being replayed) or ``done``."""

    state: str
    topic: str  # the source topic the copy goes to
    partition: int
    offset: int  # pending: end offset of the partition before sending; done: the copy's offset
    dlq: str = ""  # the dead letter it came from
    at: float = 0.0

    def encode(self) -> bytes:
        """JSON for the ledger topic."""
        return orjson.dumps({"state": self.state, "topic": self.topic, "partition": self.partition,
                             "offset": self.offset, "dlq": self.dlq, "at": self.at})

    @staticmethod
    def decode(raw: bytes) -> LedgerEntry:
        """From ledger JSON (ValueError if malformed)."""
        try:
            d = orjson.loads(raw)
            return LedgerEntry(str(d["state"]), str(d["topic"]), int(d["partition"]), int(d["offset"]),
                               str(d.get("dlq", "")), float(d.get("at", 0.0)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed ledger entry: {exc}") from None

    @property
    def copy(self) -> str:
        """Position of the replayed copy (done entries)."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class ReplayPlan:
    """Which dead letters to send, and why the others are skipped."""

    send: list[DeadRecord] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # why -> count


def replay_identity(rec: DeadRecord) -> str:
    """The ledger key of a dead letter: its origin."""
    return rec.origin


def plan_replay(records: Sequence[DeadRecord], ledger: dict[str, LedgerEntry], kind: str | None = None,
                again: bool = False) -> ReplayPlan:
    """Pick the dead letters to replay: of ``kind`` (any if None), not replayed before, each origin once.

    ``ledger`` holds settled entries (see :func:`replay`): ``done`` origins are skipped, ``pending`` ones are
    treated as not sent. Failed replays (copies that were dead-lettered again) are skipped unless ``again``.

    >>> h = lambda o, k: ((SOURCE_TOPIC, b"t"), (SOURCE_PARTITION, b"0"), (SOURCE_OFFSET, o), (KIND, k))
    >>> recs = [DeadRecord("t.dlq", 0, i, None, b"x", h(o, k)) for i, (o, k) in
    ...         enumerate([(b"5", b"json"), (b"5", b"json"), (b"7", b"late"), (b"9", b"json")])]
    >>> plan = plan_replay(recs, {"t:0:9": LedgerEntry("done", "t", 0, 42)}, kind="json")
    >>> [r.origin for r in plan.send], dict(plan.skipped)
    (['t:0:5'], {'duplicate in DLQ': 1, 'other kind': 1, 'already replayed': 1})
    """
    copies = {e.copy for e in ledger.values() if e.state == "done"}
    plan = ReplayPlan()
    chosen: set[str] = set()
    for rec in records:
        ident = replay_identity(rec)
        if kind is not None and rec.kind != kind:
            plan.skipped["other kind"] += 1
        elif (entry := ledger.get(ident)) is not None and entry.state == "done":
            plan.skipped["already replayed"] += 1
        elif not again and (rec.replay_of is not None or ident in copies):
            plan.skipped[FAILED_AGAIN] += 1
        elif ident in chosen:
            plan.skipped["duplicate in DLQ"] += 1
        else:
            chosen.add(ident)
            plan.send.append(rec)
    return plan


def target_partition(rec: DeadRecord, partitions: set[int]) -> int:
    """Where a copy goes: the original's partition (same entity state), else where its key hashes to."""
    if not partitions:
        raise ValueError("the source topic has no partitions")
    if rec.origin_partition in partitions:
        return rec.origin_partition
    ordered = sorted(partitions)
    # kafka-python's and Java's default partitioner for keyed messages, so the entity keeps its partition.
    return ordered[(murmur2(rec.key) & 0x7FFFFFFF) % len(ordered)] if rec.key is not None else ordered[0]


def copy_headers(rec: DeadRecord) -> list[tuple[str, bytes]]:
    """Headers of the replayed copy: the original ones, and where it comes from."""
    keep = [(k, v) for k, v in rec.headers if k not in WORKER_HEADERS and k not in (REPLAY_OF, REPLAY_ROOT)]
    root = rec.header(REPLAY_ROOT) or rec.replay_of or rec.origin
    return [*keep, (REPLAY_OF, replay_identity(rec).encode()), (REPLAY_ROOT, root.encode())]


@dataclass
class ReplayResult:
    """What one replay run did (or, dry, would do)."""

    source: str
    dry_run: bool
    sent: Counter = field(default_factory=Counter)  # kind -> messages sent (or to send)
    skipped: Counter = field(default_factory=Counter)
    settled: int = 0  # pending entries of an interrupted run whose copy was found in the source topic
    copies: dict[str, str] = field(default_factory=dict)  # origin -> copy position


def read_ledger(settings: KafkaSettings, dlq_topic: str) -> dict[str, LedgerEntry]:
    """The latest entry per origin in the replay ledger of ``dlq_topic`` (empty if it does not exist)."""
    topic = ledger_topic(dlq_topic)
    if not _existing(settings, [topic]):
        return {}
    consumer = reader(settings, "opsmon-dlq")
    try:
        entries: dict[str, LedgerEntry] = {}
        for rec in scan(consumer, topic):
            if rec.key is None:
                continue
            if rec.value is None:  # a tombstone: forgotten
                entries.pop(rec.key.decode(), None)
                continue
            try:
                entries[rec.key.decode()] = LedgerEntry.decode(rec.value)
            except ValueError:
                continue  # not ours; never let one bad entry block replays
        return entries
    finally:
        consumer.close()


def _ensure_ledger(settings: KafkaSettings, dlq_topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topic = ledger_topic(dlq_topic)
    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="opsmon-dlq-admin")
    try:
        if topic not in set(admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):  # created by a concurrent run: fine
                admin.create_topics([NewTopic(topic, 1, settings.kafka_replication,
                                              topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()


class _Producer:
    """An idempotent producer made on first send (kafka-python 2.3's hangs in close() if it never sent)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer: Any = None

    def send(self, topic: str, **kwargs: Any) -> Any:
        """Queue one message; returns its future."""
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(**self.settings.kafka_client_config(), acks="all", enable_idempotence=True,
                                           linger_ms=5, client_id="opsmon-dlq-replay")
        return self._producer.send(topic, **kwargs)

    def flush(self) -> None:
        """Wait until everything queued is acknowledged."""
        if self._producer is not None:
            self._producer.flush(timeout=60)

    def close(self) -> None:
        """Flush and close."""
        if self._producer is not None:
            self._producer.close(timeout=60)


def _settle(settings: KafkaSettings, ledger: dict[str, LedgerEntry], producer: _Producer, ledger_name: str) -> int:
    """Resolve ``pending`` entries of an interrupted run: done if their copy is in the source topic."""
    pending = {o: e for o, e in ledger.items() if e.state == "pending"}
    if not pending:
        return 0
    by_topic: dict[str, dict[int, int]] = {}
    for e in pending.values():
        starts = by_topic.setdefault(e.topic, {})
        starts[e.partition] = min(starts.get(e.partition, e.offset), e.offset)
    consumer = reader(settings, "opsmon-dlq")
    found = 0
    try:
        for topic, starts in by_topic.items():
            for rec in scan(consumer, topic, start=starts):
                of = dict(rec.headers or ()).get(REPLAY_OF)
                origin = of.decode(errors="replace") if of else None
                e = pending.get(origin) if origin else None
                if e is not None and e.topic == rec.topic and e.partition == rec.partition and rec.offset >= e.offset:
                    done = LedgerEntry("done", rec.topic, rec.partition, rec.offset, e.dlq, time.time())
                    ledger[origin] = done
                    producer.send(ledger_name, key=origin.encode(), value=done.encode())
                    del pending[origin]
                    found += 1
    finally:
        consumer.close()
    producer.flush()
    return found


def replay(settings: KafkaSettings, source: str, kind: str | None = None, dry_run: bool = False,
           again: bool = False) -> ReplayResult:
    """Re-inject the dead letters of one source into its topic, each origin once (module docstring)."""
    from kafka import TopicPartition

    (src_topic, dlq), = dlq_topics(settings, source).values()
    result = ReplayResult(source=source, dry_run=dry_run)
    records = read_dead_letters(settings, source)
    if not dry_run:
        _ensure_ledger(settings, dlq)
    ledger = read_ledger(settings, dlq)
    producer = None if dry_run else _Producer(settings)
    try:
        if producer is not None:
            result.settled = _settle(settings, ledger, producer, ledger_topic(dlq))
        plan = plan_replay(records, ledger, kind=kind, again=again)
        result.skipped = plan.skipped
        for rec in plan.send:
            result.sent[rec.kind] += 1
        if producer is None or not plan.send:
            return result
        consumer = reader(settings, "opsmon-dlq")
        try:
            partitions = consumer.partitions_for_topic(src_topic) or set()
            for i in range(0, len(plan.send), CHUNK):
                chunk = plan.send[i:i + CHUNK]
                targets = [target_partition(r, partitions) for r in chunk]
                ends = consumer.end_offsets([TopicPartition(src_topic, p) for p in set(targets)])
                # (1) intent first: a crash from here on is settled by searching from these offsets.
                for rec, part in zip(chunk, targets, strict=True):
                    entry = LedgerEntry("pending", src_topic, part, ends[TopicPartition(src_topic, part)],
                                        rec.position, time.time())
                    producer.send(ledger_topic(dlq), key=replay_identity(rec).encode(), value=entry.encode())
                producer.flush()
                # (2) the copies, into the partition the original was on (same key, same entity state).
                futures = [producer.send(src_topic, key=rec.key, value=rec.value, partition=part,
                                         headers=copy_headers(rec)) for rec, part in zip(chunk, targets, strict=True)]
                producer.flush()
                # (3) done, with where each copy landed.
                for rec, fut in zip(chunk, futures, strict=True):
                    meta = fut.get(timeout=30)
                    done = LedgerEntry("done", src_topic, meta.partition, meta.offset, rec.position, time.time())
                    producer.send(ledger_topic(dlq), key=replay_identity(rec).encode(), value=done.encode())
                    result.copies[replay_identity(rec)] = done.copy
                producer.flush()
        finally:
            consumer.close()
        return result
    finally:
        if producer is not None:
            producer.close()
