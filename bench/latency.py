"""Event-to-InfluxDB latency at a fixed offered load.

A fresh worker writes through :mod:`bench.proxy`, which records when each ``iot_reading`` point was
acknowledged by the time-series server. The bench then offers ``rate`` events/s for ``duration_s``
seconds on a fixed schedule (open loop: event ``i`` is due at ``T0 + i / rate`` whatever happened
before), each stamped with its due time as its event ``time``. Latency of an IoT reading = the
acknowledgement of its point - its due time, so producer lateness, Kafka, the worker's queue, its
processing and the write all count. POS and web events load the worker too, but are written as
60-second window aggregates, so their latency is the window by design and is not measured here.

The traffic is the preload's events (the same mix and entities) in order, re-stamped; POS transaction
ids get a per-cycle prefix when the preload has to be replayed more than once, so no duplicate is
dead-lettered. Readings not acknowledged within ``drain_s`` after the last send count as infinitely
late: a p99 of ``inf`` means more than 1% were still queued when the bench stopped looking.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from bench.env import BENCH_PORTS, with_topics, worker_settings
from bench.metrics import percentiles
from bench.pipeline import Profiler, Worker
from bench.workload import RawEvent, aio_config
from opsmon.settings import Settings
from streams.topics import source_topics

PROXY_PORT = BENCH_PORTS["stack_influxdb_port"] + 2  # + 1 is the RPC listener
_PREFIX = b'{"v":1,"time":"'


class Stamper:
    """Rewrites the ``time`` of a simulator message (fixed layout: ``{"v":1,"time":"<24 chars>"``)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, t: float) -> bytes:
        """``YYYY-MM-DDTHH:MM:SS.mmmZ`` of ``t`` (seconds cached: most events share one)."""
        s = int(t)
        if s != self._second:
            self._second, self._prefix = s, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        return f"{self._prefix}.{int((t - s) * 1000):03d}Z".encode()

    def stamp(self, value: bytes, t: float) -> bytes:
        """``value`` with event time ``t``."""
        if not value.startswith(_PREFIX) or value[38:40] != b'Z"':
            raise ValueError(f"not a simulator message with a fixed-width time: {value[:60]!r}")
        return value[:15] + self.iso(t) + value[39:]


def replayed(events: list[RawEvent], n: int) -> list[RawEvent]:
    """``n`` events from ``events`` in order, cycling; POS transaction ids made unique per cycle.

    >>> ev = [("pos", b"s", b'{"txn_id":"a"}'), ("iot", b"d", b"{}")]
    >>> [v for _, _, v in replayed(ev, 4)]
    [b'{"txn_id":"a"}', b'{}', b'{"txn_id":"c1-a"}', b'{}']
    """
    out: list[RawEvent] = []
    cycle = 0
    while len(out) < n:
        for source, key, value in events:
            if len(out) == n:
                break
            if cycle and source == "pos":
                value = value.replace(b'"txn_id":"', b'"txn_id":"c%d-' % cycle, 1)
            out.append((source, key, value))
        cycle += 1
    return out


class Proxy:
    """The acknowledging proxy (:mod:`bench.proxy`) as a child process."""

    def __init__(self, upstream: str, port: int = PROXY_PORT, log: Path | None = None) -> None:
        self.port, self.upstream, self.log = port, upstream, log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Where the worker should write."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> Proxy:
        """Spawn and wait until it answers."""
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.proxy", "--listen", str(self.port),
                                      "--upstream", self.upstream], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"latency proxy exited with {self.proc.returncode}")
            try:
                httpx.get(f"{self.url}/__bench/latency?since_ms=9999999999999", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("latency proxy did not start")

    def samples(self, since_ms: int) -> tuple[list[int], list[int]]:
        """(timestamps, acknowledgement times) in ms of the readings stamped at or after ``since_ms``."""
        body = httpx.get(f"{self.url}/__bench/latency", params={"since_ms": since_ms}, timeout=60).json()
        return body["ts"], body["ack"]

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _offer(settings: Settings, events: list[RawEvent], rate: float, t0: float,
                 on_progress: Callable[[int], None] | None) -> dict:
    """Send ``events`` on schedule (event ``i`` at ``t0 + i / rate``), stamped with their due times."""
    topics = source_topics(settings)
    prod = AIOKafkaProducer(**aio_config(settings), acks="all", linger_ms=5, max_batch_size=512 * 1024,
                            client_id="opsmon-bench-latency")
    await prod.start()
    stamper = Stamper()
    lateness: list[float] = []
    acks: list[asyncio.Future] = []
    try:
        await asyncio.sleep(max(0.0, t0 - time.time()))
        i, n = 0, len(events)
        while i < n:
            now = time.time()
            due = min(n, int((now - t0) * rate) + 1)
            if due > i:
                lateness.append(now - (t0 + i / rate))  # the most overdue event of this burst
            while i < due:
                source, key, value = events[i]
                ts = t0 + i / rate
                acks.append(await prod.send(topics[source], value=stamper.stamp(value, ts), key=key))
                i += 1
            if on_progress is not None:
                on_progress(i)
            await asyncio.sleep(0.001)
        last_send = time.time()
        await asyncio.gather(*acks)
    finally:
        await prod.stop()
    pct = percentiles(lateness, (50, 99))
    return {"sent": len(events), "offered_per_s": round(len(events) / max(1e-9, last_send - t0), 1),
            "send_lateness_ms": {k: round(v * 1000, 1) for k, v in pct.items()} | {
                "max": round(max(lateness, default=0.0) * 1000, 1)}}


def run_latency(base: Settings, template: list[RawEvent], rate: float, duration_s: float, tag: str, run_dir: Path,
                drain_s: float = 20.0, on_progress: Callable[[str, int, int], None] | None = None,
                profile_to: Path | None = None) -> dict:
    """One latency run at ``rate`` events/s for ``duration_s`` seconds on fresh topics and a fresh worker.

    With ``profile_to``, py-spy samples the worker from the first offered event to the end of the drain
    (so the throughput runs are measured without a profiler attached).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    proxy = Proxy(base.influx_url.rstrip("/"), log=run_dir / "proxy.log").start()
    settings = with_topics(base.model_copy(update={"influx_url": proxy.url}), f"{tag}")
    worker = Worker(worker_settings(settings, tag, 10, run_dir / "worker"), run_dir / "worker.log")
    n = int(rate * duration_s)
    traffic = replayed(template, n + 2000)
    warm, measured = traffic[:2000], traffic[2000:]
    iot = sum(1 for src, _, _ in measured if src == "iot")
    profiler: Profiler | None = None
    try:
        worker.start()
        worker.wait_ready()
        # Warm-up: a second's worth of traffic, until the worker consumes it (partitions assigned, loop hot).
        asyncio.run(_offer(settings, warm, max(rate, 2000.0), time.time(), None))
        deadline = time.monotonic() + 90
        while (worker.consumed() or 0) < len(warm):
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"latency worker did not start consuming:\n{worker.log_tail()}")
            time.sleep(0.2)
        t0 = time.time() + 1.0
        if profile_to is not None:
            assert worker.proc is not None
            profiler = Profiler(worker.proc.pid, profile_to)
            profiler.start()
        offered = asyncio.run(_offer(settings, measured, rate, t0, None if on_progress is None else
                                     (lambda i: on_progress("offer", i, n))))
        sent_end = time.time()
        consumed_at_end = (worker.consumed() or 0) - len(warm)
        drained = False
        while time.time() - sent_end < drain_s:
            c = (worker.consumed() or 0) - len(warm)
            if on_progress is not None:
                on_progress("drain", c, n)
            if c >= n:
                drained = True
                break
            time.sleep(0.2)
        time.sleep(0.5)  # the last batch's write is acknowledged just after it is counted
        ts, ack = proxy.samples(int(t0 * 1000))
        worker.sample_rss()
    finally:
        if profiler is not None:
            profiler.stop()
        worker.stop()
        proxy.stop()
    lat = [(a - t) / 1000 for t, a in zip(ts, ack, strict=True)]
    missing = max(0, iot - len(lat))
    pct = percentiles(lat + [float("inf")] * missing)
    return {
        "rate_target": rate, "duration_s": duration_s, **offered,
        "iot_readings": iot, "acknowledged": min(len(lat), iot), "not_acknowledged_in_time": missing,
        "lag_at_end_of_offer": max(0, n - consumed_at_end), "drained": drained, "drain_wait_s": drain_s,
        "latency_s": {k: (round(v, 3) if v != float("inf") else None) for k, v in pct.items()},
        "latency_max_s": round(max(lat), 3) if lat else None,
        "peak_rss_mib": round(worker.rss_peak / 2**20, 1),
        "profile_error": profiler.error if profiler is not None else "",
    }
