"""Committed offsets catch up with the stored work, and a worker reads every offset of its partitions.

An earlier consumer path could leave the group's committed offsets stuck (all 10,000 readings stored, the
committed offsets at ~85 of each partition for minutes), so every restart replayed everything since. Here a
worker starts on empty topics, stores 10,000 readings spread over every partition, and the committed lag
must reach 0 within a few checkpoints; a worker killed after that and replaced must replay nothing, read
every later offset (no holes) and store exact totals.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, raw
from tests.integration.harness import WorkerProcess, committed_lag
from tests.tsdb import eventually, influx_points

DEVICES = 40  # keys over every partition


def _publish(settings: Settings, t0: float, first: int, n: int) -> None:
    with Publisher(settings) as pub:
        for i in range(first, first + n):
            dev = f"d{i % DEVICES}"
            pub.send_raw("iot", f"lag-site/{dev}", raw(iot(t0 + i, "lag-site", dev, power=float(i))))
            if i % 1000 == 999:
                pub.flush()


def _stored(settings: Settings) -> list[float]:
    return sorted(influx_points(settings, '{__name__="iot_reading_power",site="lag-site"}').values())


def test_committed_lag_returns_to_zero_once_the_work_is_stored(
        pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings
    t0 = float(int(time.time()) // 3600 * 3600 - 5 * 3600)
    first = worker_factory()
    _publish(s, t0, 0, 10_000)
    assert eventually(lambda: len(_stored(s)), lambda n: n >= 10_000, timeout=120) == 10_000, first.log_tail()
    # Stored: within two checkpoints (and the commit round trip) nothing is left to replay.
    lag = eventually(lambda: committed_lag(s, [s.topic_iot]), lambda lag: not any(lag.values()),
                     timeout=2 * s.checkpoint_seconds + 10)
    assert lag == dict.fromkeys(lag, 0), f"committed lag per partition once everything was stored: {lag}"
    assert len(lag) == s.kafka_partitions
    feed = (first.stats() or {})["feed"][s.topic_iot]
    assert (feed["fetched"], feed["holes"]) == (10_000, 0)

    first.kill()  # no final checkpoint: the committed offsets are all the next worker has
    second = worker_factory()
    _publish(s, t0, 10_000, 2_000)
    assert eventually(lambda: len(_stored(s)), lambda n: n >= 12_000, timeout=120) == 12_000, second.log_tail()
    assert _stored(s) == [float(i) for i in range(12_000)], "every reading stored exactly once"
    lag = eventually(lambda: committed_lag(s, [s.topic_iot]), lambda lag: not any(lag.values()),
                     timeout=2 * s.checkpoint_seconds + 10)
    assert lag == dict.fromkeys(lag, 0), f"committed lag after the restart: {lag}"
    stats = second.stats() or {}
    assert stats["iot"].get("replayed", 0) == 0, "the restarted worker replayed nothing that was committed"
    assert (stats["feed"][s.topic_iot]["fetched"], stats["feed"][s.topic_iot]["holes"]) == (2_000, 0)
