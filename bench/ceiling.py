"""The ceiling: a plain aiokafka consumer that fetches the source topics and decodes every event, nothing else.

It reads the same preloaded events the pipeline reads, with big fetches (``getmany``) and msgspec's typed
decoders (the pipeline's own schemas, without its validation), so the ratio pipeline / ceiling says how
much of what Python can take off Kafka on this machine the pipeline keeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaConsumer

from opsmon.settings import Settings
from streams.schemas import IotReading, PosTransaction, WebEvent
from streams.topics import source_topics

_DECODERS = {"iot": msgspec.json.Decoder(IotReading), "pos": msgspec.json.Decoder(PosTransaction),
             "web": msgspec.json.Decoder(WebEvent)}


async def _consume(settings: Settings, total: int, on_progress: Callable[[int], None] | None,
                   timeout_s: float) -> tuple[int, float]:
    topics = source_topics(settings)
    source_of = {t: s for s, t in topics.items()}
    cfg = settings.kafka_client_config()
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg["bootstrap_servers"],
                                security_protocol=cfg["security_protocol"], group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
                                client_id="opsmon-bench-ceiling")
    await consumer.start()
    try:
        # Without a group, a subscription gets every partition; no committed offsets, so it starts at the beginning.
        consumer.subscribe(list(topics.values()))
        n = 0
        deadline = time.monotonic() + timeout_s
        first = time.perf_counter()  # the first fetch counts: with a small preload it brings most of it
        while n < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for tp, records in batches.items():
                decoder = _DECODERS[source_of[tp.topic]]
                for rec in records:
                    decoder.decode(rec.value)
                n += len(records)
            if on_progress is not None:
                on_progress(n)
        elapsed = time.perf_counter() - first
        return n, elapsed
    finally:
        await consumer.stop()


def ceiling(settings: Settings, total: int, on_progress: Callable[[int], None] | None = None,
            timeout_s: float = 300.0) -> dict:
    """Fetch and decode ``total`` events of the source topics; events/s from the first fetch request to the last."""
    n, elapsed = asyncio.run(_consume(settings, total, on_progress, timeout_s))
    return {"events": n, "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed, 1) if elapsed else 0.0}
