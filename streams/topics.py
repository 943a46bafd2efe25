"""Topic names and their creation with kafka-python's admin client."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.config import KafkaSettings


@dataclass(frozen=True)
class TopicSpec:
    """A topic opsmon needs, with its partition count."""

    name: str
    partitions: int
    retention_ms: int | None = None


def source_topics(settings: KafkaSettings) -> dict[str, str]:
    """Source name ("iot", "pos", "web") to its topic."""
    return {"iot": settings.topic_iot, "pos": settings.topic_pos, "web": settings.topic_web}


def all_topics(settings: KafkaSettings) -> list[TopicSpec]:
    """Every topic opsmon reads or writes (Faust creates its own changelog topics)."""
    p = settings.kafka_partitions
    week = 7 * 24 * 3600 * 1000
    specs = [TopicSpec(t, p) for t in source_topics(settings).values()]
    specs += [TopicSpec(t, p, retention_ms=4 * week) for t in settings.dlq_topics.values()]
    specs += [TopicSpec(settings.topic_stock, p), TopicSpec(settings.topic_alerts, p),
              TopicSpec(settings.topic_feedback, p)]
    return specs


def create_topics(settings: KafkaSettings) -> list[str]:
    """Create missing topics; returns the names that were created."""
    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="opsmon-admin")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.kafka_replication,
                        topic_configs={"retention.ms": str(s.retention_ms)} if s.retention_ms else {})
               for s in all_topics(settings) if s.name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # raced with another creator: fine
                admin.create_topics(new)
        return [t.name for t in new]
    finally:
        admin.close()


def reader(settings: KafkaSettings, client_id: str, group: str | None = None) -> Any:
    """A kafka-python consumer that joins no group: it commits nothing and creates no topic by reading it.

    ``group``: a consumer group's id, only to read that group's committed offsets (``committed``); the reader
    never subscribes, so it does not join the group.
    """
    from kafka import KafkaConsumer

    return KafkaConsumer(**settings.kafka_client_config(), group_id=group, enable_auto_commit=False,
                         auto_offset_reset="earliest", allow_auto_create_topics=False,
                         client_id=client_id, consumer_timeout_ms=1000)


def scan(consumer: Any, topic: str, start: dict[int, int] | None = None, limit: int | None = None,
         timeout: float = 60.0, end: dict[int, int] | None = None) -> Iterator[Any]:
    """Records of ``topic`` from ``start`` (default: the beginning) up to ``end`` or its end as of now.

    ``consumer`` is a ``reader``; ``start`` and ``end`` map partitions to offsets (with ``start``, only its
    partitions are read).
    """
    from kafka import TopicPartition

    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts) if start is None or p in start]
    if not tps:
        return
    stop = consumer.end_offsets(tps)  # per TopicPartition, where ``end`` is per partition number
    if end is not None:
        stop = {tp: min(off, end.get(tp.partition, off)) for tp, off in stop.items()}
    consumer.assign(tps)
    if start is None:
        consumer.seek_to_beginning(*tps)
    else:
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
    todo = {tp for tp in tps if consumer.position(tp) < stop[tp]}
    seen = 0
    deadline = time.monotonic() + timeout
    while todo:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {topic} did not reach its end within {timeout:.0f} s")
        for tp, batch in consumer.poll(timeout_ms=500, max_records=5000).items():
            for rec in batch:
                if rec.offset >= stop[tp]:
                    break
                yield rec
                seen += 1
                if limit is not None and seen >= limit:
                    return
        todo = {tp for tp in todo if consumer.position(tp) < stop[tp]}
