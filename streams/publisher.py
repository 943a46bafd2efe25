"""Publishing events to opsmon's topics with kafka-python: for gateways, the simulator and tests.

Messages are keyed by entity (``site/device``, store, site), which keeps every entity on one partition
so its state lives in one place. Every send returns kafka-python's future, so a caller that must know
(the MQTT bridge acknowledges a device only then) can wait for the broker's acknowledgement; failures
are also counted in ``failed``. The producer batches (``linger_ms``), compresses (gzip) and retries;
``acks=all`` without the producer's idempotence (kafka-python 2.3's hangs on close when unused): a
retried send may duplicate, which the stream absorbs: readings overwrite by timestamp, and POS
transactions are de-duplicated by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from streams.config import KafkaSettings
from streams.schemas import Event, IotReading, PosTransaction, WebEvent, encode
from streams.topics import source_topics


def source_of(event: Event) -> str:
    """"iot", "pos" or "web" for a typed event."""
    if isinstance(event, IotReading):
        return "iot"
    if isinstance(event, PosTransaction):
        return "pos"
    if isinstance(event, WebEvent):
        return "web"
    raise TypeError(f"not an opsmon event: {type(event).__name__}")


class Publisher:
    """A thin, batched, keyed producer of opsmon events."""

    def __init__(self, settings: KafkaSettings, **producer_overrides: object) -> None:
        self.topics = source_topics(settings)
        config = {
            **settings.kafka_client_config(),
            "acks": "all",
            "linger_ms": 20,
            "batch_size": 256 * 1024,
            "compression_type": "gzip",
            "retries": 10,
            "max_in_flight_requests_per_connection": 1,  # keeps order per partition across retries
            "client_id": "opsmon-publisher",
            **producer_overrides,
        }
        self._producer = KafkaProducer(**config)
        self.sent = 0
        self.failed = 0  # messages the broker did not take, even after retries
        self.last_error: BaseException | None = None

    def send(self, event: Event) -> None:
        """Queue one typed event."""
        self.send_raw(source_of(event), event.entity, encode(event))

    def send_raw(self, source: str, key: str | bytes | None, value: bytes) -> FutureRecordMetadata:
        """Queue raw bytes to a source topic (also for testing the dead-letter path); returns the send future."""
        return self.send_to(self.topics[source], key, value)

    def send_to(self, topic: str, key: str | bytes | None, value: bytes,
                headers: Mapping[str, bytes] | None = None) -> FutureRecordMetadata:
        """Queue raw bytes to any topic, with optional headers; the future resolves when the broker has it."""
        k = key.encode() if isinstance(key, str) else key
        future = self._producer.send(topic, key=k, value=value,
                                     headers=list(headers.items()) if headers else None)
        future.add_errback(self._count_failure)
        self.sent += 1
        return future

    def _count_failure(self, exc: BaseException) -> None:
        # Runs on the producer's I/O thread; an int increment is atomic enough for a counter.
        self.failed += 1
        self.last_error = exc

    def send_many(self, events: Iterable[Event]) -> int:
        """Queue many events; returns how many."""
        n = 0
        for ev in events:
            self.send(ev)
            n += 1
        return n

    def flush(self, timeout: float | None = 30.0) -> None:
        """Block until every queued message is acknowledged by the broker."""
        self._producer.flush(timeout=timeout)

    def close(self) -> None:
        """Flush and close."""
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
