"""Dependencies go away mid-stream and come back: the pipeline resumes by itself and loses nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from deploy.stack import Stack
from opsmon.settings import Settings
from streams.publisher import Publisher
from tests.events import iot, raw
from tests.integration.harness import WorkerProcess
from tests.tsdb import eventually, influx_points

OUTAGE_S = 60.0


def _readings(settings: Settings, site: str, t0: float, n: int, rate: float, pause_at: int = -1,
              resume: threading.Event | None = None) -> None:
    with Publisher(settings) as pub:
        for i in range(n):
            if i == pause_at and resume is not None:
                pub.flush()
                resume.wait(timeout=180)
            pub.send_raw("iot", f"{site}/d{i % 5}", raw(iot(t0 + i * 0.5, site, f"d{i % 5}", power=float(i))))
            if i % 50 == 49:
                pub.flush()
                time.sleep(50 / rate)


def _count(settings: Settings, site: str) -> int:
    return len(influx_points(settings, f'{{__name__="iot_reading_power",site="{site}"}}'))


def test_time_series_server_down_for_a_minute_loses_no_point(
        stack: Stack, pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings
    n = 2000
    t0 = float(int(time.time()) // 3600 * 3600 - 3 * 3600)
    worker = worker_factory()
    producer = threading.Thread(target=_readings, args=(s, "outage-tsdb", t0, n, 200.0))
    producer.start()
    assert eventually(lambda: _count(s, "outage-tsdb"), lambda c: c >= 200, timeout=60) >= 200
    stack.stop("influxdb")
    try:
        time.sleep(OUTAGE_S)  # events keep arriving in Kafka; the worker retries and stops consuming
        during = worker.stats() or {}
        assert during["sink"]["retries"] > 0, "the worker noticed the outage"
    finally:
        stack.start("influxdb")
    producer.join(timeout=120)
    readings = eventually(lambda: influx_points(s, '{__name__="iot_reading_power",site="outage-tsdb"}'),
                          lambda p: len(p) >= n, timeout=120)
    assert sorted(readings.values()) == [float(i) for i in range(n)]


def test_kafka_broker_restart_mid_stream_resumes_by_itself(
        stack: Stack, pipeline_settings: Settings, worker_factory: Callable[..., WorkerProcess]) -> None:
    s = pipeline_settings
    n = 1000
    t0 = float(int(time.time()) // 3600 * 3600 - 4 * 3600)
    worker = worker_factory()
    resume = threading.Event()
    producer = threading.Thread(target=_readings, args=(s, "outage-kafka", t0, n, 200.0, n // 2, resume))
    producer.start()
    assert eventually(lambda: _count(s, "outage-kafka"), lambda c: c >= n // 2, timeout=60) == n // 2
    stack.stop("kafka")
    time.sleep(5)
    stack.start("kafka")
    resume.set()
    producer.join(timeout=180)
    assert eventually(lambda: _count(s, "outage-kafka"), lambda c: c >= n, timeout=180) == n, worker.log_tail()
    assert worker.proc is not None and worker.proc.poll() is None, "the same worker carried on"
