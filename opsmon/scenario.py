"""Run a simulated scenario with injected faults through the real pipeline and score what it detected.

The simulator backfills a period (the first part is the models' warm-up) into Kafka and writes its ground
truth; a real worker processes it; the alerts it raised are read back from the alerts topic and matched to
the truth (``models.detection_eval``). The alert measurement in the time-series server is read too, so the
report shows that the topic and the server agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import orjson
from kafka import KafkaConsumer, TopicPartition

from deploy.stack import Stack
from models.detection_eval import DetectionReport, evaluate, pages
from opsmon.settings import Settings
from opsmon.sim.engine import Simulator
from opsmon.sim.faults import TruthWriter, read_truth
from opsmon.sim.replay import replay
from opsmon.worker_process import WorkerProcess
from streams.publisher import Publisher
from streams.schemas import decode_alert
from streams.topics import create_topics


@dataclass(frozen=True)
class Scenario:
    """What to simulate."""

    days: float = 2.5
    warmup_hours: float = 36.0
    rate: float = 2.0  # average events per simulated second, all sources
    faults_per_hour: float = 0.5
    seed: int = 1
    sites: int = 1
    devices_per_site: int = 4
    stores: int = 1
    web_sites: int = 1
    end: float | None = None  # epoch seconds of the last simulated moment; None: two minutes ago
    calendars: bool = True  # configure the simulated opening hours and shifts, as the business would


@dataclass
class ScenarioResult:
    """The detection reports (all alerts, the boards; pages, on-call) plus the cross-checks."""

    report: DetectionReport
    pages: DetectionReport
    events: int
    faults: int
    alerts_on_topic: int
    alerts_in_tsdb: int
    wall_seconds: float


PORT_OFFSET = 300  # a stack of its own, beside the demo's (19092, ...) and the tests' (29092, ...)


def scenario_settings(base: Settings, out: Path) -> Settings:
    """A stack, consumer group and worker port of its own, so a run never mixes with other data."""
    ports = {k: getattr(base, k) + PORT_OFFSET for k in type(base).model_fields
             if k.startswith("stack_") and k.endswith("_port") and getattr(base, k)}
    return base.model_copy(update={
        **ports, "kafka_bootstrap": f"127.0.0.1:{ports['stack_kafka_port']}",
        "influx_url": f"http://127.0.0.1:{ports['stack_victoria_port']}",
        "app_id": "opsmon-scenario", "worker_web_port": base.worker_web_port + PORT_OFFSET,
        "data_dir": out / "data", "alertmanager_url": None, "idle_close_seconds": 2.0})


def read_to_end(settings: Settings, topic: str) -> list:
    """Every record of a topic, from its beginning to its end offsets as they are now."""
    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        records: list = []
        while any(consumer.position(tp) < end[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def run_scenario(base: Settings, sc: Scenario, out: Path,
                 progress: Callable[[str, float], None] = lambda what, share: None,
                 keep_stack: bool = False) -> ScenarioResult:
    """Simulate, process with a real worker, and score; ``progress(what, share)`` reports each phase."""
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    s = scenario_settings(base, out)
    stack = Stack(s)
    stack.down(wipe=True)  # a fresh stack: the counts read back are this run's alone
    stack.up(["kafka", "victoria"])
    create_topics(s)
    end = sc.end if sc.end is not None else float(int(started) // 60 * 60 - 120)
    start = end - sc.days * 86400
    truth_path = out / "truth.jsonl"
    sim = Simulator(seed=sc.seed, sites=sc.sites, devices_per_site=sc.devices_per_site, stores=sc.stores,
                    web_sites=sc.web_sites, rate=sc.rate, faults_per_hour=sc.faults_per_hour)
    with TruthWriter(truth_path) as truth, Publisher(s) as pub:
        sim.on_fault = truth
        if sc.calendars:
            s = s.model_copy(update={"calendars": {**sim.calendars(), **s.calendars}})
        stats = replay(sim, lambda src, key, value: pub.send_raw(src, key, value), mode="backfill", start=start,
                       end=end, on_progress=lambda t, st: progress("simulate", (t - start) / (end - start)))
    worker = WorkerProcess(s, out / "worker.log").start()
    try:
        _wait_processed(worker, stats.events, lambda share: progress("process", share))
        time.sleep(s.idle_close_seconds + 3)  # idle partitions write and settle their last windows
        alerts = [msgspec.to_builtins(decode_alert(r.value)) for r in read_to_end(s, s.topic_alerts)]
        in_tsdb = _alerts_in_tsdb(s)
    finally:
        worker.stop()
        if not keep_stack:
            stack.down(wipe=True)
    rows = read_truth(truth_path)
    scored = (start + sc.warmup_hours * 3600, end)
    report = evaluate(rows, alerts, *scored)
    paged = evaluate(rows, pages(alerts, s.boards_only_severities), *scored)
    firing = sum(1 for a in alerts if a["status"] == "firing")
    return ScenarioResult(report, paged, stats.events, sum(1 for r in rows if r.get("fault", True)), firing, in_tsdb,
                          time.time() - started)


def _wait_processed(worker: WorkerProcess, events: int, progress: Callable[[float], None],
                    stall_s: float = 120.0) -> None:
    last, last_change = -1, time.monotonic()
    while True:
        st = worker.stats() or {}
        done = sum(st.get(src, {}).get(k, 0) for src in ("iot", "pos", "web") for k in ("events", "dead_lettered"))
        progress(min(1.0, done / events) if events else 1.0)
        if done >= events:
            return
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            raise RuntimeError(f"the worker stalled at {done} of {events} events:\n{worker.log_tail()}")
        if not worker.running():
            raise RuntimeError(f"the worker stopped:\n{worker.log_tail()}")
        time.sleep(1.0)


def _alerts_in_tsdb(settings: Settings) -> int:
    """Firing alerts the worker wrote to the run's own time-series server (VictoriaMetrics export API)."""
    base = settings.influx_url.rstrip("/")
    httpx.get(f"{base}/internal/force_flush", timeout=10)
    resp = httpx.get(f"{base}/api/v1/export", timeout=30,
                     params={"match[]": '{__name__="alert_open",state="firing"}', "start": "0"})
    resp.raise_for_status()
    return sum(len(orjson.loads(line)["values"]) for line in resp.content.splitlines())
