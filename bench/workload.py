"""The bench's workload: a seeded mix of IoT, web and POS events from the project's simulator, and the preload.

The simulator's stores and web shops follow daily and weekly seasons, and its web sessions take
minutes to build up, so the same ``rate`` gives a different mix at different times. :class:`SteadyMix`
calibrates and warms the simulator up, so the mix is the target one (60% IoT, 30% web, 10% POS by
default) at any simulated time, reproducibly: calibration and warm-up are seeded like the rest.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from opsmon.settings import Settings
from opsmon.simulator import Mix, Simulator
from streams.topics import source_topics

RawEvent = tuple[str, bytes, bytes]  # (source, key, wire JSON)
TARGET_MIX = {"iot": 0.6, "web": 0.3, "pos": 0.1}
ALWAYS_OPEN = "mon-sun 00:00-24:00"  # the bench's stores never close, so POS traffic exists at any hour
# A Tuesday, 10:00 UTC: the throughput runs replay the same half hour every time.
PRELOAD_START = 1_793_700_000.0
_TIME_AT = slice(15, 39)  # the simulator writes '{"v":1,"time":"<24 chars>"' first


@dataclass(frozen=True)
class Fleet:
    """How many entities the workload has; IoT devices report every ``device_interval_s``."""

    sites: int = 20
    devices_per_site: int = 100
    stores: int = 20
    web_sites: int = 5
    skus: int = 200
    device_interval_s: float = 10.0

    @property
    def devices(self) -> int:
        """IoT devices in all sites."""
        return self.sites * self.devices_per_site

    def natural_rate(self, mix: dict[str, float] = TARGET_MIX) -> float:
        """Events per second of the whole mix when each device reports at its interval."""
        return self.devices / self.device_interval_s / mix["iot"]


class SteadyMix:
    """Events of the fleet at ``rate`` events/s split as ``mix`` from ``start`` on, with the sources in steady state.

    The simulator's web sessions take minutes to build up (each visitor's steps are spread over think
    times) and its stores and shops follow daily seasons. So: the POS and web share of the simulator
    is calibrated on a cheap low-rate probe (shares do not depend on the rate), and the POS and web
    generator is warmed up for ``warmup_s`` before ``start``. IoT readings need neither; they come
    from a second simulator of the same seed (each source has its own random stream, so this is the
    traffic one simulator would make).
    """

    def __init__(self, fleet: Fleet, rate: float, start: float, seed: int = 42,
                 mix: dict[str, float] = TARGET_MIX, warmup_s: float = 240.0) -> None:
        self.fleet, self.rate, self.mix, self.seed = fleet, rate, mix, seed
        probe_rate = min(rate, 500.0)
        shops = self._sim(Mix(iot=0.0, pos=mix["pos"], web=mix["web"]), probe_rate)
        probe = 300.0
        _drain(shops, start - warmup_s, start)
        counts = Counter(src for src, _, _ in raw_events(shops, start, start + probe))
        scale = {src: mix[src] * probe_rate * probe / counts[src] if counts[src] else 1.0 for src in ("pos", "web")}
        self.iot = self._sim(Mix(iot=mix["iot"], pos=0.0, web=0.0), rate)
        self.shops = self._sim(Mix(iot=0.0, pos=mix["pos"] * scale["pos"], web=mix["web"] * scale["web"]), rate)
        _drain(self.shops, start - warmup_s, start)
        self.cursor = start

    def _sim(self, mix: Mix, rate: float) -> Simulator:
        f = self.fleet
        return Simulator(seed=self.seed, sites=f.sites, devices_per_site=f.devices_per_site, stores=f.stores,
                         web_sites=f.web_sites, skus=f.skus, mix=mix, rate=rate, hours=ALWAYS_OPEN)

    def until(self, end: float, step: float = 10.0) -> Iterator[RawEvent]:
        """Every event up to ``end``, in chunks of ``step`` simulated seconds; each source in time order."""
        while self.cursor < end:
            t1 = min(end, self.cursor + step)
            yield from raw_events(self.iot, self.cursor, t1)
            yield from raw_events(self.shops, self.cursor, t1)
            self.cursor = t1


def _drain(sim: Simulator, start: float, end: float) -> None:
    for _ in raw_events(sim, start, end):
        pass


def raw_events(sim: Simulator, start: float, end: float) -> Iterator[RawEvent]:
    """Every event in [start, end) as wire bytes (the simulator's fast raw path when it has one)."""
    fast = getattr(sim, "raw_events", None)
    if fast is not None:
        yield from fast(start, end)
        return
    from streams.publisher import source_of  # an older simulator: typed events, encoded here
    from streams.schemas import encode

    n = int(math.ceil((end - start) * getattr(sim, "rate", 200.0)))
    for ev in sim.events(start, n):
        yield source_of(ev), ev.entity.encode(), encode(ev)


def event_time(value: bytes) -> float:
    """The event time (Unix seconds) of a simulator message, read without decoding the whole message."""
    if value.startswith(b'{"v":1,"time":"'):
        return datetime.fromisoformat(value[_TIME_AT].decode()).timestamp()
    import msgspec

    return datetime.fromisoformat(msgspec.json.decode(value)["time"]).timestamp()


def preload_events(fleet: Fleet, n: int, seed: int = 42, now: float | None = None) -> tuple[list[RawEvent], float]:
    """About ``n`` events (exactly ``n`` if the period has that many) of the fleet at its natural rate.

    Returns the events, each source in time order, and the simulated start. The period is a fixed
    Tuesday morning unless that is too recent for the period to lie in the past.
    """
    rate = fleet.natural_rate()
    span = n / rate
    now = time.time() if now is None else now
    start = min(PRELOAD_START, math.floor((now - span - 3600) / 86400) * 86400 + 36000)
    events: list[RawEvent] = []
    for ev in SteadyMix(fleet, rate, start, seed=seed).until(start + span * 1.05 + 1):
        events.append(ev)
        if len(events) >= n:
            break
    return events, start


async def preload_async(settings: Settings, events: list[RawEvent],
                        on_progress: Callable[[int], None] | None = None) -> float:
    """Produce every event to its source topic, keyed by entity; returns the seconds until all were acked.

    Records are appended straight into per-partition batches (aiokafka's batch API, the same murmur2
    partitioner as its ``send``), uncompressed: about ten times faster than one ``send`` per event.
    """
    topics = source_topics(settings)
    prod = AIOKafkaProducer(**aio_config(settings), acks="all", linger_ms=50, max_batch_size=1024 * 1024,
                            max_request_size=8 * 1024 * 1024, client_id="opsmon-bench-preload")
    await prod.start()
    try:
        parts = {src: sorted(await prod.partitions_for(t)) for src, t in topics.items()}
        partitioner = DefaultPartitioner()
        partition_of: dict[tuple[str, bytes], int] = {}
        batches: dict[tuple[str, int], BatchBuilder] = {}
        acks: list[asyncio.Future] = []
        t0 = time.perf_counter()
        for i, (source, key, value) in enumerate(events):
            part = partition_of.get((source, key))
            if part is None:
                part = partition_of[(source, key)] = partitioner(key, parts[source], parts[source])
            batch = batches.get((source, part))
            if batch is None:
                batch = batches[(source, part)] = prod.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next
                acks.append(await prod.send_batch(batch, topics[source], partition=part))
                batch = batches[(source, part)] = prod.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            if on_progress is not None and i % 20_000 == 0:
                on_progress(i)
        for (source, part), batch in batches.items():
            acks.append(await prod.send_batch(batch, topics[source], partition=part))
        await asyncio.gather(*acks)
        elapsed = time.perf_counter() - t0
        if on_progress is not None:
            on_progress(len(events))
        return elapsed
    finally:
        await prod.stop()


def preload(settings: Settings, events: list[RawEvent], on_progress: Callable[[int], None] | None = None) -> float:
    """:func:`preload_async` from synchronous code."""
    return asyncio.run(preload_async(settings, events, on_progress))


def aio_config(settings: Settings) -> dict:
    """Connection settings for aiokafka clients (PLAINTEXT or SASL/SSL as configured)."""
    cfg = settings.kafka_client_config()
    out = {"bootstrap_servers": cfg["bootstrap_servers"], "security_protocol": cfg["security_protocol"]}
    for k in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        if k in cfg:
            out[k] = cfg[k]
    if "ssl_cafile" in cfg:
        import ssl

        out["ssl_context"] = ssl.create_default_context(cafile=cfg["ssl_cafile"])
    return out


def by_source(events: list[RawEvent]) -> dict[str, int]:
    """How many events of each source."""
    return dict(Counter(src for src, _, _ in events))
