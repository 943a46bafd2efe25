"""Hypothesis-generated bad input, mixed with valid events, through a real broker and a real worker.

Each example sends one generated batch per source (random bytes, invalid UTF-8, null values, wrong types,
missing and extra fields, NaN and huge numbers, >64 KiB payloads, unknown versions, bad times, re-sent
POS transactions) and waits until the worker has seen all of it. The worker must stay up, and its counters
must equal what ``SourcePipeline`` itself says about the same messages: processed + dead-lettered == sent,
the DLQ holds exactly the dead-lettered messages (original bytes, a reason each), and every processed event
shows up in VictoriaMetrics.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from opsmon.settings import Settings
from streams.pipeline import Record, SourcePipeline, WindowConfig
from streams.schemas import SOURCES, decode
from streams.topics import source_topics
from tests.badinput import Case, mixed_batch
from tests.integration.harness import WorkerProcess, read_topic
from tests.tsdb import eventually, influx_points

EXAMPLES = 3  # the first one Hypothesis tries is its simplest; the others are random


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Model:
    """What the worker should have done, from the same pipeline code run in-process."""

    def __init__(self, cfg: WindowConfig) -> None:
        self.pipelines = {s: SourcePipeline(s, {}, cfg) for s in SOURCES}
        self.offsets: Counter = Counter()
        self.sent: Counter = Counter()
        self.counts: dict[str, Counter] = {s: Counter() for s in SOURCES}
        self.dead: dict[str, Counter] = {s: Counter() for s in SOURCES}  # (value, kind) -> n
        self.accepted: list[tuple[str, bytes]] = []

    def add(self, cases: list[Case], now: float) -> None:
        """Fold a sent batch in (per source in send order; no lateness in these batches, so partitions do
        not matter)."""
        for source in SOURCES:
            recs = []
            for c in cases:
                if c.source == source:
                    recs.append(Record(0, self.offsets[source], c.key, c.value))
                    self.offsets[source] += 1
            out = self.pipelines[source].process(recs, now)
            self.sent[source] += len(recs)
            self.counts[source].update(out.counts)
            dead = {d.record.offset for d in out.dead}
            self.dead[source].update((d.record.value, d.kind) for d in out.dead)
            self.accepted += [(source, r.value) for r in recs if r.offset not in dead]


def test_generated_bad_input_never_stops_the_worker_and_every_message_is_accounted_for(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings.model_copy(update={"worker_web_port": _free_port()})
    worker = worker_factory(s)
    topics = source_topics(s)
    prefix = f"bad{uuid.uuid4().hex[:6]}"
    base = (int(time.time()) // 60) * 60 - 1800  # each example gets its own minute, half an hour ago
    model = Model(WindowConfig(s.window_seconds, s.grace_seconds, s.late_retention_seconds, s.idle_close_seconds))
    producer = KafkaProducer(**s.kafka_client_config(), acks="all", max_in_flight_requests_per_connection=1,
                             max_request_size=2 * 1024 * 1024, client_id="bad-input-test")
    rounds = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one_round(data: st.DataObject) -> None:
        t0 = base + 60 * rounds["n"]
        rounds["n"] += 1
        cases = data.draw(mixed_batch(t0, prefix, max_each=20))
        for c in cases:
            producer.send(topics[c.source], key=c.key, value=c.value, headers=list(c.headers))
        producer.flush(timeout=30)
        model.add(cases, time.time())

        def seen(stats: dict | None) -> bool:
            return stats is not None and all(
                stats.get(src, {}).get("events", 0) + stats.get(src, {}).get("dead_lettered", 0) >= model.sent[src]
                for src in SOURCES)

        stats = eventually(worker.stats, seen, timeout=60)
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        assert stats is not None, f"the worker stopped answering:\n{worker.log_tail()}"
        for src in SOURCES:
            got = stats.get(src, {})
            want = model.counts[src]
            assert (got.get("events", 0), got.get("dead_lettered", 0), got.get("replayed", 0)) == \
                (want["events"], want["dead_lettered"], 0), (src, got, dict(want), [c.what for c in cases])
            assert got.get("events", 0) + got.get("dead_lettered", 0) == model.sent[src]

    try:
        one_round()
    finally:
        producer.close()

    # The batches held every kind of input, and the worker is still alive after all of them.
    assert all(model.counts[src]["events"] and model.counts[src]["dead_lettered"] for src in SOURCES)
    assert worker.proc is not None and worker.proc.poll() is None and worker.stats() is not None
    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Crashed" not in log, worker.log_tail()

    # The DLQ holds exactly the dead-lettered messages, original bytes, each with its reason.
    for src in SOURCES:
        dlq = s.dlq_topics[topics[src]]
        records = read_topic(s, dlq, expect=model.counts[src]["dead_lettered"], timeout=30)
        got = Counter((r.value, dict(r.headers)["opsmon-kind"].decode()) for r in records)
        assert got == model.dead[src], src
        for r in records:
            h = dict(r.headers)
            assert h["opsmon-reason"].decode().startswith(h["opsmon-kind"].decode() + ": ")
            assert h["opsmon-source-topic"].decode() == topics[src]

    # Every processed event is in the time-series server: readings one by one, POS and web in windows.
    expect_readings: set[tuple] = set()
    expect_windows = Counter()
    for src, value in model.accepted:
        ev = decode(src, value, time.time())
        if src == "iot":
            expect_readings.add((ev.site, ev.device, int(round(ev.ts * 1000))))
        else:
            expect_windows[src] += 1

    def readback() -> tuple[set, Counter]:
        pts = influx_points(s, f'{{__name__=~"iot_reading_.*|pos_window_(transactions|refunds|voids)'
                                            f'|web_window_events",site=~"{prefix}.*|",store=~"{prefix}.*|"}}')
        readings = {(dict(k[1:-1])["site"], dict(k[1:-1])["device"], k[-1]) for k in pts
                    if k[0].startswith("iot_reading_")}
        windows = Counter()
        for k, v in pts.items():
            if not k[0].startswith("iot_"):
                windows[k[0].split("_")[0]] += int(v)
        return readings, windows

    readings, windows = eventually(readback, lambda r: r == (expect_readings, +expect_windows), timeout=60)
    assert readings == expect_readings
    assert windows == +expect_windows
