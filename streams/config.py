"""What the streams room reads of the configuration, declared here so that ``streams/`` never imports ``opsmon/``.

``opsmon.settings.Settings`` provides all of it; the wiring in ``opsmon/`` passes its settings object (or
any object of this shape, as the bench and tests do) as a plain argument.
"""

from __future__ import annotations

from typing import Protocol


class KafkaSettings(Protocol):
    """Kafka connection and the topics a worker, a publisher or a dead-letter tool uses."""

    kafka_partitions: int
    kafka_replication: int
    topic_iot: str
    topic_pos: str
    topic_web: str
    topic_stock: str
    topic_alerts: str
    topic_feedback: str

    @property
    def dlq_topics(self) -> dict[str, str]:
        """Dead-letter topic for each source topic."""
        ...

    def kafka_client_config(self) -> dict:
        """Connection settings in kafka-python's vocabulary (also accepted by aiokafka)."""
        ...
