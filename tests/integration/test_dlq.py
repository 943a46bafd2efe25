"""``opsmon dlq inspect|replay`` against a real broker and worker: grouping, and replays that never duplicate."""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from opsmon.cli import app as cli_app
from opsmon.settings import Settings
from streams import dlq
from streams.schemas import decode
from streams.topics import source_topics
from tests.events import iot, iso, pos, raw, web
from tests.integration.harness import WorkerProcess, read_topic
from tests.tsdb import eventually, influx_points


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _end_offsets(s: Settings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(**s.kafka_client_config(), group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _cli(s: Settings, *args: str) -> str:
    result = CliRunner().invoke(cli_app, ["dlq", *args], env={**s.to_env(), "COLUMNS": "250"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _dead_headers(s: Settings, origin_offset: int, kind: str, reason: str) -> list[tuple[str, bytes]]:
    return [("opsmon-reason", reason.encode()), ("opsmon-kind", kind.encode()),
            ("opsmon-source-topic", s.topic_iot.encode()), ("opsmon-source-partition", b"0"),
            ("opsmon-source-offset", str(origin_offset).encode()), ("producer", b"gw-clock")]


def test_inspect_groups_and_replay_reinjects_each_dead_letter_once(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings.model_copy(update={"worker_web_port": _free_port()})
    worker = worker_factory(s)
    tag = f"dlq{uuid.uuid4().hex[:6]}"
    now = time.time()
    producer = KafkaProducer(**s.kafka_client_config(), acks="all", max_in_flight_requests_per_connection=1)
    topics = source_topics(s)
    sale = pos(now - 120, "t1", store=f"{tag}-store")
    sends = [
        ("iot", b"gw-a", b"{not json", [("producer", b"gw-a")]),
        ("iot", b"gw-a", b'{"v":1,"site":"\x1b[2J', [("producer", b"gw-a")]),  # a terminal escape in it
        ("iot", f"{tag}/d1".encode(), raw({**iot(now - 60, tag, "d1"), "v": 2}), []),
        ("pos", sale["store"].encode(), raw(sale), []),
        ("pos", sale["store"].encode(), raw(sale), []),  # a retrying till: duplicate
        ("pos", sale["store"].encode(), raw(pos(now - 3 * 3600, "t0", store=sale["store"])), []),  # too late
        ("web", b"shop", raw({**web(now - 30, "s1", site=f"{tag}-shop"), "status": 999}), []),
    ]
    for source, key, value, headers in sends:
        producer.send(topics[source], key=key, value=value, headers=headers)
    producer.flush()
    expect_dead = {"iot": 3, "pos": 2, "web": 1}

    def counts() -> dict:
        st = worker.stats() or {}
        return {src: (st.get(src, {}).get("events", 0), st.get(src, {}).get("dead_lettered", 0))
                for src in ("iot", "pos", "web")}

    assert eventually(counts, lambda c: c == {"iot": (0, 3), "pos": (1, 2), "web": (0, 1)}, timeout=60) == \
        {"iot": (0, 3), "pos": (1, 2), "web": (0, 1)}

    # A dead letter whose cause is gone (a device clock that ran ahead), in the DLQ twice: a worker that
    # crashed before committing sends the same dead letter again.
    reading = iot(now - 600, tag, "clock", temperature=42.5)
    for _ in range(2):
        producer.send(s.dlq_topics[s.topic_iot], key=f"{tag}/clock".encode(), value=raw(reading), partition=0,
                      headers=_dead_headers(s, 10_000, "time", f"time: {iso(now - 600)} is more than 300s ahead"))
    producer.flush()
    producer.close()

    # inspect: the functions...
    records = dlq.read_dead_letters(s)
    assert len(records) == sum(expect_dead.values()) + 2
    by_reason: Counter = Counter()
    for g in dlq.group_by_reason(records, dlq.topic_sources(s)):
        by_reason[(g.source, g.key[0])] += g.count  # one group per kind and reason pattern
    assert by_reason == {("iot", "json"): 2, ("iot", "version"): 1, ("iot", "time"): 2, ("pos", "duplicate"): 1,
                         ("pos", "late"): 1, ("web", "value"): 1}
    by_producer = {(g.source, g.key[0]): g.count for g in dlq.group_by_producer(records, dlq.topic_sources(s))}
    assert by_producer[("iot", "gw-a")] == 2 and by_producer[("iot", "gw-clock")] == 2
    assert by_producer[("pos", f"{tag}-store")] == 2 and by_producer[("web", "shop")] == 1
    # ... and the command.
    out = _cli(s, "inspect")
    # The DLQ twin is one rejected message: counted once, and the header says so.
    assert "7 dead letter(s)" in out and "read all 8 held; 1 re-sent after a restart counted once" in out
    assert "by reason" in out and "by producer" in out
    for text in ("gw-a", "gw-clock", "schema version # is not supported", "already accepted", "\\x1b[2J"):
        assert text in out, text
    assert "\x1b[2J" not in out  # escaped, never written to the terminal
    assert "1 dead letter(s): pos 1 (read the first 1 of the 2 held (at most 1 per topic" in _cli(
        s, "inspect", "--source", "pos", "--limit", "1")

    # A dry run sends nothing.
    before = {t: _end_offsets(s, t) for t in topics.values()}
    assert "would replay 7 message(s)" in _cli(s, "replay", "--dry-run")  # the DLQ twin counts once
    assert {t: _end_offsets(s, t) for t in topics.values()} == before

    # Replay: everything once. The clock reading is processed now; the rest fails again and goes back.
    results = {src: dlq.replay(s, src) for src in ("iot", "pos", "web")}
    assert {src: dict(r.sent) for src, r in results.items()} == {
        "iot": {"json": 2, "version": 1, "time": 1}, "pos": {"duplicate": 1, "late": 1}, "web": {"value": 1}}
    assert results["iot"].skipped == {"duplicate in DLQ": 1}
    after = {t: _end_offsets(s, t) for t in topics.values()}
    assert {t: sum(after[t].values()) - sum(before[t].values()) for t in topics.values()} == {
        s.topic_iot: 4, s.topic_pos: 2, s.topic_web: 1}
    final = {"iot": (1, 6), "pos": (1, 4), "web": (0, 2)}
    assert eventually(counts, lambda c: c == final, timeout=60) == final

    # Copies that failed again are back in the DLQ, marked as replays of their origin.
    again = [r for r in dlq.read_dead_letters(s) if r.replay_of is not None]
    assert len(again) == 6
    assert {r.replay_of for r in again} == {o for res in results.values() for o in res.copies} - {
        f"{s.topic_iot}:0:10000"}
    assert all(r.header("opsmon-replay-root") == r.replay_of for r in again)
    assert {r.producer for r in again if r.topic == s.dlq_topics[s.topic_iot]} >= {"gw-a"}

    # A second replay re-injects nothing (what was sent is in the ledger; failures are not retried).
    out = _cli(s, "replay")
    assert "replayed 0 message(s)" in out, out
    assert {t: _end_offsets(s, t) for t in topics.values()} == after
    second = dlq.replay(s, "iot")
    assert not second.sent and second.skipped == {"already replayed": 5, "failed again (replay with --again)": 3}
    time.sleep(3)
    assert counts() == final  # still processed exactly once

    # The replayed reading is in the time-series server, once, with its own event time.
    pts = eventually(lambda: influx_points(s, f'iot_reading_temperature{{site="{tag}"}}'),
                     lambda p: len(p) == 1, timeout=30)
    ts_ms = int(round(decode("iot", raw(reading)).ts * 1000))
    assert pts == {("iot_reading_temperature", ("device", "clock"), ("site", tag), ts_ms): 42.5}


def test_replay_after_a_crash_mid_run_sends_each_origin_exactly_once(pipeline_settings: Settings) -> None:
    s = pipeline_settings
    dlq_topic, ledger = s.dlq_topics[s.topic_iot], dlq.ledger_topic(s.dlq_topics[s.topic_iot])
    producer = KafkaProducer(**s.kafka_client_config(), acks="all")
    for i in range(3):  # three dead letters, origins 100..102
        producer.send(dlq_topic, key=b"k", value=f"bad {i}".encode(), partition=0,
                      headers=_dead_headers(s, 100 + i, "json", "json: broken"))
    producer.flush()
    # What a run that crashed while sending leaves behind: pending entries for all three, and only the
    # first copy in the source topic.
    dlq._ensure_ledger(s, dlq_topic)
    start = _end_offsets(s, s.topic_iot)[0]
    for i in range(3):
        origin = f"{s.topic_iot}:0:{100 + i}"
        entry = dlq.LedgerEntry("pending", s.topic_iot, 0, start, f"{dlq_topic}:0:{i}", time.time())
        producer.send(ledger, key=origin.encode(), value=entry.encode())
    producer.flush()
    producer.send(s.topic_iot, key=b"k", value=b"bad 0", partition=0,
                  headers=[("opsmon-replay-of", f"{s.topic_iot}:0:100".encode())])
    producer.flush()
    producer.close()

    res = dlq.replay(s, "iot")
    assert res.settled == 1  # the first copy was found: not sent again
    assert sorted(res.copies) == [f"{s.topic_iot}:0:101", f"{s.topic_iot}:0:102"]
    copies = read_topic(s, s.topic_iot, expect=3, timeout=20)
    assert sorted(r.value for r in copies) == [b"bad 0", b"bad 1", b"bad 2"]
    assert {dict(r.headers)["opsmon-replay-of"].decode() for r in copies} == {
        f"{s.topic_iot}:0:{o}" for o in (100, 101, 102)}
    entries = dlq.read_ledger(s, dlq_topic)
    assert {o: e.state for o, e in entries.items()} == {f"{s.topic_iot}:0:{o}": "done" for o in (100, 101, 102)}
    assert not dlq.replay(s, "iot").sent
