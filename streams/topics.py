"""Topic names and their creation with kafka-python's admin client."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from opsmon.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    """A topic opsmon needs, with its partition count."""

    name: str
    partitions: int
    retention_ms: int | None = None


def source_topics(settings: Settings) -> dict[str, str]:
    """Source name ("iot", "pos", "web") to its topic."""
    return {"iot": settings.topic_iot, "pos": settings.topic_pos, "web": settings.topic_web}


def all_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic opsmon reads or writes (Faust creates its own changelog topics)."""
    p = settings.kafka_partitions
    week = 7 * 24 * 3600 * 1000
    specs = [TopicSpec(t, p) for t in source_topics(settings).values()]
    specs += [TopicSpec(t, p, retention_ms=4 * week) for t in settings.dlq_topics.values()]
    specs += [TopicSpec(settings.topic_stock, p), TopicSpec(settings.topic_alerts, p),
              TopicSpec(settings.topic_feedback, p)]
    return specs


def create_topics(settings: Settings) -> list[str]:
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
