"""A store whose state outgrows Kafka's default 1 MB record is still changelogged, and restored after a kill."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import pos, raw
from tests.integration.harness import WorkerProcess, committed_lag, read_topic
from tests.tsdb import eventually

N_SALES = 30_000
STORE = "big-store"


def test_a_state_larger_than_a_default_kafka_record_is_checkpointed_and_restored(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings
    t0 = float(int(time.time()) // 60 * 60 - 1800)
    # Random 64-character transaction ids: the store remembers every one (de-duplication), and they do not compress,
    # so its state is a record of about 2 MB.
    txns = [secrets.token_hex(32) for _ in range(N_SALES)]
    first = worker_factory()
    with Publisher(s) as pub:
        for i, txn in enumerate(txns):
            pub.send_raw("pos", STORE, raw(pos(t0 + i * 0.05, txn, store=STORE)))
            if i % 2000 == 1999:
                pub.flush()
    assert pub.failed == 0

    def settled() -> tuple[int, int]:
        return ((first.stats() or {}).get("pos", {}).get("events", 0),
                sum(committed_lag(s, [s.topic_pos]).values()))

    # Offsets are committed only after the checkpoint's changelog records were accepted by the broker.
    done = eventually(settled, lambda r: r == (N_SALES, 0), timeout=120, every=1.0)
    assert done == (N_SALES, 0), first.log_tail()
    assert first.stats() is not None, "the worker is still serving after its checkpoint"
    changelog = read_topic(s, f"{s.app_id}-state-pos-changelog", expect=1)
    biggest = max(len(r.value) for r in changelog if r.key and STORE.encode() in r.key)
    assert biggest > 1_048_576, f"the store's state was {biggest} bytes: not beyond Kafka's default"

    first.kill()
    second = worker_factory()
    assert eventually(second.stats, lambda st: st is not None, timeout=60) is not None, second.log_tail()
    with Publisher(s) as pub:  # the first sale again: only a restored state knows it was accepted
        pub.send_raw("pos", STORE, raw(pos(t0, txns[0], store=STORE)))
    dead = read_topic(s, s.dlq_topics[s.topic_pos], expect=1)
    kinds = [dict(r.headers).get("opsmon-kind") for r in dead]
    assert kinds == [b"duplicate"], (kinds, second.log_tail())
