"""SIGKILL the worker mid-stream and restart it: nothing accepted is lost, nothing is counted twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, pos, raw
from tests.integration.harness import WorkerProcess
from tests.tsdb import eventually, influx_points

N_SALES = 3000
N_READINGS = 3000
STORES = ("crash-a", "crash-b", "crash-c")


def _produce(settings: Settings, t0: float, rate: float, failed: list[int]) -> None:
    with Publisher(settings) as pub:
        for i in range(max(N_SALES, N_READINGS)):
            if i < N_SALES:
                store = STORES[i % 3]
                pub.send_raw("pos", store, raw(pos(t0 + i * 0.6, f"txn-{i}", store=store, lines=(("X", 1, 1.0),))))
            if i < N_READINGS:
                dev = f"dev-{i % 10}"
                reading = iot(t0 + i * 0.6, "crash-site", dev, temperature=float(i))
                pub.send_raw("iot", f"crash-site/{dev}", raw(reading))
            if i % 100 == 99:
                pub.flush()
                time.sleep(100 / rate)
    failed.append(pub.failed)


def test_sigkill_mid_stream_loses_nothing_and_double_counts_nothing(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings
    t0 = float(int(time.time()) // 3600 * 3600 - 2 * 3600)
    failed: list[int] = []
    producer = threading.Thread(target=_produce, args=(s, t0, 500.0, failed))
    first = worker_factory()
    producer.start()
    progress = eventually(lambda: (first.stats() or {}).get("pos", {}).get("events", 0), lambda n: n >= 600,
                          timeout=60, every=0.2)
    assert progress >= 600, first.log_tail()
    first.kill()
    killed_at = progress
    second = worker_factory()  # same app id: same consumer group and changelogs
    producer.join(timeout=120)
    assert failed == [0], "every message was accepted by the broker"

    def totals() -> tuple[float, float, int]:
        windows = influx_points(s, '{__name__="pos_window_transactions",store=~"crash-.*"}')
        revenue = influx_points(s, '{__name__="pos_window_revenue",store=~"crash-.*"}')
        readings = influx_points(s, '{__name__="iot_reading_temperature",site="crash-site"}')
        return sum(windows.values()), sum(revenue.values()), len(readings)

    final = eventually(totals, lambda t: t == (N_SALES, float(N_SALES), N_READINGS), timeout=120)
    assert killed_at < N_SALES, "the kill happened mid-stream"
    readings = influx_points(s, '{__name__="iot_reading_temperature",site="crash-site"}')
    missing = sorted(set(range(N_READINGS)) - {int(v) for v in readings.values()})
    assert final == (N_SALES, float(N_SALES), N_READINGS), \
        (f"(transactions, revenue, readings) = {final}; killed after {killed_at} sales; readings missing: "
         f"{missing[:40]}; the restarted worker's feed: {(second.stats() or {}).get('feed')}")
    assert sorted(readings.values()) == [float(i) for i in range(N_READINGS)]
    feed = (second.stats() or {})["feed"]
    assert feed[s.topic_iot]["holes"] == feed[s.topic_pos]["holes"] == 0, "every offset after the resume was read"
