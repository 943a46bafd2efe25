"""Workers join and leave mid-stream (a clean stop and a SIGKILL): no partition is left behind.

faust-streaming has been seen leaving a partition unfetched for minutes after a rebalance (faust#629). Here
a second and a third worker join a running one while readings stream in; then one is stopped (SIGTERM) and
one killed (SIGKILL). Within 30 s of that last membership change every partition's committed lag must be 0
and the time-series server must hold every reading exactly once.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, raw
from tests.integration.harness import WorkerProcess, committed_lag
from tests.tsdb import eventually, influx_points

N = 9_000
RATE = 150.0  # readings per second: a minute of stream while the membership changes
DEVICES = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _produce(settings: Settings, t0: float, sent: list[int]) -> None:
    with Publisher(settings) as pub:
        for i in range(N):
            dev = f"d{i % DEVICES}"
            pub.send_raw("iot", f"rb-site/{dev}", raw(iot(t0 + i, "rb-site", dev, power=float(i))))
            if i % 50 == 49:
                pub.flush()
                sent.append(i + 1)
                time.sleep(50 / RATE)
        pub.flush()
    sent.append(N)


def _stored(settings: Settings) -> list[float]:
    return sorted(influx_points(settings, '{__name__="iot_reading_power",site="rb-site"}').values())


def _holds(worker: WorkerProcess, topic: str) -> list[int]:
    return ((worker.stats() or {}).get("feed") or {}).get(topic, {}).get("partitions", [])


def test_workers_joining_and_leaving_mid_stream_leave_no_partition_behind(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    s = pipeline_settings
    t0 = float(int(time.time()) // 3600 * 3600 - 6 * 3600)

    def another(i: int) -> Settings:
        return s.model_copy(update={"worker_web_port": _free_port(), "data_dir": tmp_path / f"worker-{i}"})

    first = worker_factory()
    sent: list[int] = []
    producer = threading.Thread(target=_produce, args=(s, t0, sent), daemon=True)
    producer.start()
    assert eventually(lambda: len(_stored(s)), lambda n: n >= 500, timeout=60) >= 500, first.log_tail()
    second = worker_factory(another(2))
    third = worker_factory(another(3))
    # All three hold source partitions (4 partitions: one holds two).
    held = eventually(lambda: [_holds(w, s.topic_iot) for w in (first, second, third)],
                      lambda h: all(h) and sorted(p for ps in h for p in ps) == list(range(s.kafka_partitions)),
                      timeout=90)
    assert all(held), f"partitions per worker after the joins: {held}"
    assert (sent or [0])[-1] < N, "the joins happened mid-stream"
    second.stop()  # SIGTERM: a clean leave
    producer.join(timeout=180)
    assert sent[-1] == N
    third.kill()  # SIGKILL: its partitions move once its session times out
    last_change = time.monotonic()

    def settled() -> tuple[dict, list[int]]:
        return committed_lag(s, [s.topic_iot]), _holds(first, s.topic_iot)

    # Taken over (the remaining worker fetches every partition) and caught up (nothing left uncommitted).
    lag, holds = eventually(settled, lambda r: not any(r[0].values()) and r[1] == list(range(s.kafka_partitions)),
                            timeout=30.0, every=1.0)
    waited = time.monotonic() - last_change
    assert holds == list(range(s.kafka_partitions)), \
        f"the remaining worker holds {holds} {waited:.0f}s after the last membership change\n{first.log_tail()}"
    assert lag == dict.fromkeys(lag, 0) and len(lag) == s.kafka_partitions, \
        f"committed lag per partition {waited:.0f}s after the last membership change: {lag}\n{first.log_tail()}"
    stored = eventually(lambda: _stored(s), lambda v: len(v) >= N, timeout=30)
    assert stored == [float(i) for i in range(N)], "every reading stored exactly once"
