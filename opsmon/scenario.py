"""Run a simulated scenario with injected faults through the real pipeline and score what it detected.

The simulator backfills a period (the first part is the models' warm-up) into Kafka and writes its ground
truth; a real worker processes it; the alerts it raised are read back from the alerts topic and matched to
the truth (``models.detection_eval``). The alert measurement in the time-series server is read too, so the
report shows that the topic and the server agree.

With on-call staff (``Scenario.on_call``), the period is backfilled in steps of ``respond_minutes``: after
each, the worker catches up, simulated staff answer the new pages from the ground truth (``opsmon.sim.on_call``)
through the worker's feedback endpoint, as people do with ``opsmon alerts ack|false-positive``, and the next
step waits until the worker has applied what they said. The events are the same as without staff; only the
feedback differs, so the two reports show what people's answers change.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
from pydantic import SecretStr

from deploy.stack import Stack
from models.detection_eval import DetectionReport, evaluate, pages
from opsmon.feedback import send_feedback
from opsmon.settings import Settings
from opsmon.sim.engine import Simulator
from opsmon.sim.faults import TruthWriter, read_truth
from opsmon.sim.on_call import OnCall
from opsmon.sim.replay import replay
from opsmon.worker_process import WorkerProcess
from streams.publisher import Publisher
from streams.schemas import decode_alert
from streams.topics import create_topics, reader, scan


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
    limits: bool = True  # and the limits it would set (food safety, machine temperature, page latency)
    on_call: bool = False  # simulated staff answer each page: acknowledged if real, a false positive if not
    respond_minutes: float = 60.0  # ... within this much simulated time


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
    on_call: OnCall | None = None  # what the simulated staff said, when there were any
    feedback_to_models: int = 0  # of their answers, those that changed a model


PORT_OFFSET = 300  # a stack of its own, beside the demo's (19092, ...) and the tests' (29092, ...)


def scenario_settings(base: Settings, out: Path) -> Settings:
    """A stack, consumer group and worker port of its own, so a run never mixes with other data."""
    ports = {k: getattr(base, k) + PORT_OFFSET for k in type(base).model_fields
             if k.startswith("stack_") and k.endswith("_port") and getattr(base, k)}
    return base.model_copy(update={
        **ports, "kafka_bootstrap": f"127.0.0.1:{ports['stack_kafka_port']}",
        "influx_url": f"http://127.0.0.1:{ports['stack_influxdb_port']}",
        # The run's stack makes this InfluxDB user; the worker writes with it as its v2 token.
        "influx_token": SecretStr(f"opsmon-writer:{secrets.token_urlsafe(12)}"),
        "app_id": "opsmon-scenario", "worker_web_port": base.worker_web_port + PORT_OFFSET,
        "data_dir": out / "data", "alertmanager_url": None, "idle_close_seconds": 2.0})


def read_new(consumer: Any, topic: str, after: dict[int, int]) -> list:
    """The records of ``topic`` past ``after`` (partition -> next offset, advanced here), up to its end as of now."""
    parts = consumer.partitions_for_topic(topic) or set()
    records = list(scan(consumer, topic, start={p: after.get(p, 0) for p in parts}))
    for r in records:
        after[r.partition] = r.offset + 1
    return records


def read_to_end(settings: Settings, topic: str) -> list:
    """Every record of a topic, from its beginning to its end offsets as they are now."""
    consumer = reader(settings, "opsmon-scenario")
    try:
        return list(scan(consumer, topic))
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
    stack.up(["kafka", "influxdb"])
    create_topics(s)
    end = sc.end if sc.end is not None else float(int(started) // 60 * 60 - 120)
    start = end - sc.days * 86400
    truth_path = out / "truth.jsonl"
    sim = Simulator(seed=sc.seed, sites=sc.sites, devices_per_site=sc.devices_per_site, stores=sc.stores,
                    web_sites=sc.web_sites, rate=sc.rate, faults_per_hour=sc.faults_per_hour)
    if sc.calendars:
        s = s.model_copy(update={"calendars": {**sim.calendars(), **s.calendars}})
    if sc.limits:
        s = s.model_copy(update={"limits": {**sim.limits(), **s.limits}})
    staff = OnCall(s.boards_only_severities) if sc.on_call else None
    if staff is not None:
        # windows close with the next step's events, not by idling between steps: what people say is applied
        # between two steps, never in a race with the flush of a step's last windows
        s = s.model_copy(update={"feedback_token": SecretStr(secrets.token_urlsafe(24)), "idle_close_seconds": 30.0})
    worker = WorkerProcess(s, out / "worker.log")
    try:
        with TruthWriter(truth_path) as truth, Publisher(s) as pub:
            sim.on_fault = truth
            send = lambda src, key, value: pub.send_raw(src, key, value)  # noqa: E731
            if staff is None:
                events = replay(sim, send, mode="backfill", start=start, end=end, on_progress=lambda t, st: progress(
                    "simulate", (t - start) / (end - start))).events
                pub.flush()
                worker.start()
                _wait_delivered(worker, events, lambda share: progress("process", share))
            else:
                worker.start()
                events = _backfill_with_staff(s, sim, send, pub.flush, worker, staff, start, end,
                                              sc.respond_minutes * 60.0, progress)
        time.sleep(s.idle_close_seconds + 3)  # idle partitions write and settle their last windows
        alerts = [msgspec.to_builtins(decode_alert(r.value)) for r in read_to_end(s, s.topic_alerts)]
        (out / "alerts.jsonl").write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in alerts))
        in_tsdb = _alerts_in_tsdb(s)
        to_models = ((worker.stats() or {}).get("alerts") or {}).get("feedback_to_models", 0)
    finally:
        worker.stop()
        if not keep_stack:
            stack.down(wipe=True)
    rows = read_truth(truth_path)
    scored = (start + sc.warmup_hours * 3600, end)
    report = evaluate(rows, alerts, *scored)
    paged = evaluate(rows, pages(alerts, s.boards_only_severities), *scored)
    firing = sum(1 for a in alerts if a["status"] == "firing")
    return ScenarioResult(report, paged, events, sum(1 for r in rows if r.get("fault", True)), firing, in_tsdb,
                          time.time() - started, staff, to_models)


def _backfill_with_staff(s: Settings, sim: Simulator, send: Callable[[str, bytes, bytes], object],
                         flush: Callable[[], None], worker: WorkerProcess, staff: OnCall, start: float, end: float,
                         step: float, progress: Callable[[str, float], None]) -> int:
    """Backfill in steps; after each, the worker catches up and the staff answer the pages it sent.

    Pages announced in the last few minutes of a step wait for the next one, so every step sees the same
    pages however fast the worker was (a step's last windows close only with the next step's events).
    """
    consumer = reader(s, "opsmon-scenario")
    read: dict[int, int] = {}
    alerts: list[dict] = []
    events = said = 0
    t = start
    try:
        while t < end:
            t_next = min(end, t + step)
            events += replay(sim, send, mode="backfill", start=t, end=t_next).events
            flush()
            sent = _wait_delivered(worker, events, lambda _share: None, poll_s=0.05)
            progress("simulate", (t_next - start) / (end - start))
            progress("process", (t_next - start) / (end - start))
            deadline = time.monotonic() + ALERTS_TIMEOUT_S
            while len(alerts) < sent:  # every alert of the step, not just those the producer has sent so far
                alerts += [msgspec.to_builtins(decode_alert(r.value)) for r in read_new(consumer, s.topic_alerts, read)]
                worker.check_alive()
                if time.monotonic() > deadline:  # (another worker in the same group, say, took some of the events)
                    raise RuntimeError(f"the worker says it sent {sent} alerts, the topic holds {len(alerts)} after "
                                       f"{ALERTS_TIMEOUT_S:.0f}s:\n{worker.log_tail()}")
            answers = staff.answer(alerts, (f.record() for f in sim.truth), before=t_next - SETTLE_S)
            for alert_id, kind in answers:
                _answer(s, alert_id, kind)
            said += len(answers)
            if answers:
                _wait_feedback(worker, said)
            t = t_next
    finally:
        consumer.close()
    return events


ALERTS_TIMEOUT_S = 120.0  # how long the alerts a worker says it sent may take to be read back from the topic
SETTLE_S = 300.0  # pages announced this close to the end of a backfill step are answered after the next one


def _answer(s: Settings, alert_id: str, kind: str, timeout_s: float = 30.0) -> None:
    """Send one answer; an alert read from the topic may not be in the worker's alert index yet (404): retry."""
    deadline = time.monotonic() + timeout_s
    while True:
        resp = send_feedback(s, alert_id, kind, user="on-call (simulated)")
        if resp.status_code == 202:
            return
        if resp.status_code != 404 or time.monotonic() > deadline:
            raise RuntimeError(f"the worker refused feedback on {alert_id}: {resp.text}")
        time.sleep(0.2)


def _wait_delivered(worker: WorkerProcess, events: int, progress: Callable[[float], None], stall_s: float = 120.0,
                    poll_s: float = 1.0) -> int:
    """Until the worker has delivered the outputs of ``events`` events, and indexed the alerts among them (so
    feedback on them is accepted); returns the alerts it has sent in all."""
    last, last_change = -1, time.monotonic()
    while True:
        st = worker.stats() or {}
        done = sum((st.get("delivered") or {}).get(src, 0) for src in ("iot", "pos", "web"))
        alerts = st.get("alerts") or {}
        progress(min(1.0, done / events) if events else 1.0)
        if done >= events and alerts.get("delivered", 0) >= alerts.get("sent", 0):
            return int(alerts.get("sent", 0))
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            raise RuntimeError(f"the worker stalled at {done} of {events} events:\n{worker.log_tail()}")
        worker.check_alive()
        time.sleep(poll_s)


def _wait_feedback(worker: WorkerProcess, count: int, timeout_s: float = 60.0) -> None:
    """Until the worker has applied ``count`` pieces of feedback in all."""
    deadline = time.monotonic() + timeout_s
    while ((worker.stats() or {}).get("alerts") or {}).get("feedback_applied", 0) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker applied no feedback in {timeout_s:.0f}s:\n{worker.log_tail()}")
        time.sleep(0.05)


def _alerts_in_tsdb(settings: Settings) -> int:
    """Firing alert points the worker wrote to the run's own InfluxDB (InfluxQL, the writer's credential)."""
    user, _, password = settings.influx_token.get_secret_value().partition(":")
    resp = httpx.post(f"{settings.influx_url.rstrip('/')}/query", auth=(user, password), timeout=30,
                      data={"db": settings.influx_bucket.split("/", 1)[0],
                            "q": """SELECT count("open") FROM "alert" WHERE "state" = 'firing'"""})
    resp.raise_for_status()
    series = resp.json()["results"][0].get("series") or [{"values": [[0, 0]]}]
    return int(series[0]["values"][0][1])
