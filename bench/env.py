"""The bench's own local stack, per-run topics and worker settings.

The bench runs on a port range of its own (31092, 31086, ...), away from the demo (19092, ...) and the
test sessions (29092, ...), and below Linux's ephemeral ports (32768-60999), which any outgoing
connection may hold for a moment (a worker failed to bind 36066 that way), with its data under
``<data dir>/stack``. Every run gets its own topics and consumer groups (``bench-<tag>...``), so a
worker always starts from the beginning of its topics.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from deploy.stack import Stack
from opsmon.settings import Settings
from streams.topics import create_topics, source_topics

BENCH_PORTS = {
    "stack_kafka_port": 31092,
    "stack_kafka_controller_port": 31093,
    "stack_influxdb_port": 31086,  # and 31087 for its RPC listener
    "stack_alertmanager_port": 31193,
    "stack_mosquitto_port": 31883,
}
WORKER_PORT_BASE = 31066  # up to 31066 + 20
SERVICES = ("kafka", "influxdb")


def bench_settings(data_dir: Path, partitions: int = 4) -> Settings:
    """Settings pointing every client at the bench stack (no Alertmanager: alerts stay in Kafka)."""
    return Settings(
        data_dir=data_dir,
        kafka_bootstrap=f"127.0.0.1:{BENCH_PORTS['stack_kafka_port']}",
        influx_url=f"http://127.0.0.1:{BENCH_PORTS['stack_influxdb_port']}",
        # The bench stack makes this InfluxDB user: the worker writes with it as its v2 token.
        influx_token=f"opsmon-writer:{secrets.token_urlsafe(12)}",
        alertmanager_url="",  # empty, not None: None would fall back to the default URL in the worker
        kafka_partitions=partitions,
        **BENCH_PORTS,
    )


def with_topics(settings: Settings, name: str) -> Settings:
    """The settings with topics of their own, ``<name>.iot`` etc., created with the configured partitions."""
    s = settings.model_copy(update={
        "topic_iot": f"{name}.iot", "topic_pos": f"{name}.pos", "topic_web": f"{name}.web",
        "topic_alerts": f"{name}.alerts", "topic_feedback": f"{name}.feedback"})
    s.__dict__.pop("dlq_topics", None)  # a cached property of the copied settings
    create_topics(s)
    return s


def worker_settings(settings: Settings, app_id: str, index: int, data_dir: Path) -> Settings:
    """Settings of one worker process: consumer group (app id), web port and state directory."""
    s = settings.model_copy(update={"app_id": app_id, "worker_web_port": WORKER_PORT_BASE + index,
                                    "data_dir": data_dir})
    s.__dict__.pop("dlq_topics", None)
    return s


@dataclass
class BenchStack:
    """The bench's stack: started if it was not up, stopped at the end only if this run started it."""

    settings: Settings
    keep: bool = False
    started: list[str] = field(default_factory=list)

    @property
    def stack(self) -> Stack:
        """The deploy-level stack object."""
        return Stack(self.settings)

    def up(self) -> float:
        """Start (or reuse) Kafka and InfluxDB; returns the seconds it took."""
        t0 = time.monotonic()
        self.started = self.stack.up(list(SERVICES))
        return time.monotonic() - t0

    def down(self, prefix: str) -> None:
        """Delete this run's topics, and stop (and wipe) the services this run started unless kept."""
        if self.started and not self.keep:
            self.stack.down(wipe=True)
            return
        with contextlib.suppress(Exception):  # best effort: a kept stack only loses disk space otherwise
            delete_topics(self.settings, prefix)


def delete_topics(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (this run's sources, DLQs, changelogs)."""
    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="opsmon-bench-admin")
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names)
        return names
    finally:
        admin.close()


def end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """End offset of every partition of the source topics."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), client_id="opsmon-bench-offsets")
    try:
        tps = [TopicPartition(t, p) for t in source_topics(settings).values()
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        return consumer.end_offsets(tps)
    finally:
        consumer.close()


def partition_lag(settings: Settings, group: str, ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Messages of each source partition not yet committed by consumer group ``group``."""
    admin = KafkaAdminClient(**settings.kafka_client_config(), client_id="opsmon-bench-admin")
    try:
        committed = admin.list_consumer_group_offsets(group)
    finally:
        admin.close()
    return {tp: max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items()}


def committed_lag(settings: Settings, group: str, ends: dict[TopicPartition, int]) -> int:
    """Messages of the source topics not yet committed by consumer group ``group``."""
    return sum(partition_lag(settings, group, ends).values())
